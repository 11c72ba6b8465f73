"""Reading and writing image files for the CLI and benchmarks (TIFF via tifffile, other formats via Pillow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

__all__ = ["IMAGE_SUFFIXES", "list_images", "read_image", "write_tiff"]

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
