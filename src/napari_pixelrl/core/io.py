"""Reading and writing image files for the CLI and benchmarks (TIFF via tifffile, other formats via Pillow), and
zarr outputs for results larger than memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from .inference import Restoration, image_layout

__all__ = ["IMAGE_SUFFIXES", "list_images", "read_image", "write_tiff", "zarr_restoration"]

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as a NumPy array in its stored dtype (8-bit grey JPEG/PNG stay ``uint8``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    if path.suffix.lower() in (".tif", ".tiff"):
        return tifffile.imread(path)
    with Image.open(path) as image:
        return np.asarray(image)


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly in ``folder``, in sorted name order (the order noise is drawn in)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"not a folder: {folder}")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def write_tiff(path: str | Path, data: np.ndarray) -> Path:
    """Write ``data`` as a grayscale TIFF (a 3-D array is a stack of planes, never RGB), creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, data, photometric="minisblack")
    return path


def zarr_restoration(
    path: str | Path,
    shape: tuple[int, ...],
    steps: int,
    *,
    values: bool = False,
    channel_axis: int | None = None,
    rgb: bool | None = None,
    chunk: int = 1024,
    channels: int = 1,
) -> Restoration:
    """Empty zarr arrays on disk for ``restore(..., out=...)``: a group at ``path`` with ``image``, ``actions``
    and (when ``values``) ``values``, chunked plane by plane in ``chunk x chunk`` pieces.

    ``shape``, ``channel_axis`` and ``rgb`` describe the input as for :func:`napari_pixelrl.api.restore`;
    ``channels`` is the policy's (``policy.action_set.channels``: 3 for colour policies, whose maps have no channel
    axis). An existing group at ``path`` is replaced.
    """
    import zarr  # only needed here

    layout = image_layout(shape, channel_axis=channel_axis, rgb=rgb, channels=channels)
    whole = (*layout.plane_axes, layout.channel_axis) if layout.joint_channels else layout.plane_axes
    image_chunks = tuple(min(n, chunk) if axis in whole else 1 for axis, n in enumerate(layout.shape))
    height, width = layout.plane_shape
    map_chunks = (*(1 for _ in layout.stack_shape), steps, min(height, chunk), min(width, chunk))
    group = zarr.open_group(str(path), mode="w")
    maps = layout.map_shape(steps)
    return Restoration(
        image=group.create_array("image", shape=layout.shape, chunks=image_chunks, dtype="float32"),
        actions=group.create_array("actions", shape=maps, chunks=map_chunks, dtype="uint8"),
        values=group.create_array("values", shape=maps, chunks=map_chunks, dtype="float32") if values else None,
    )
