"""Restoring many files: in this process, in ``N`` worker processes, or on a ``dask.distributed`` cluster.

Each file is one task, :func:`restore_file`, which reads the file, restores it with :func:`napari_pixelrl.api.restore`
(tiled, every plane of a stack) and writes the results beside each other in the output folder:

* TIFF, PNG, JPEG, BMP: ``<stem>_restored.tif`` (float32, the input's units; a TIFF's resolution and ImageJ
  metadata are kept), ``<stem>_actions.tif`` (uint8) and, with ``values``, ``<stem>_values.tif``;
* zarr (an array, or a group whose array ``"0"`` is the full resolution, as in OME-Zarr): ``<stem>_restored.zarr``,
  a group with arrays ``image``, ``actions`` (and ``values``), written tile by tile without loading the input.

A task never raises for a bad file: its :class:`FileResult` carries the error, and the others go on.
"""

from __future__ import annotations

import glob
import multiprocessing
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import torch

from . import api
from .core.checkpoint import CheckpointError, Policy
from .core.inference import image_layout
from .core.io import IMAGE_SUFFIXES, read_image, zarr_restoration

__all__ = ["FileResult", "RestoreJob", "expand_inputs", "restore_file", "restore_files"]

ZARR_SUFFIX = ".zarr"


@dataclass(frozen=True)
class RestoreJob:
    """How every file of a batch is restored (arguments of :func:`napari_pixelrl.api.restore`)."""

    policy: str
    """Shipped policy name or checkpoint path, loaded once per process."""
    steps: int | None = None
    device: str = "auto"
    precision: str = "float32"
    values: bool = False
    """Also write the value maps."""
    tile_size: int | None = None
    channel_axis: int | None = None
    threads: int | None = None
    """torch CPU threads in the process that runs the task; ``None`` leaves torch's default."""


@dataclass(frozen=True)
class FileResult:
    """What became of one input file."""

    path: Path
    outputs: tuple[Path, ...] = ()
    megapixels: float = 0.0
    """Pixels restored (all planes), in millions."""
    seconds: float = 0.0
    error: str | None = None


def expand_inputs(inputs: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Files to restore from command-line inputs: image files and ``.zarr`` folders as given, folders as the
    images and ``.zarr`` folders directly in them, and glob patterns (``"data/*.tif"``, ``"**"`` too) as what
    they match. Order kept, duplicates dropped.

    Raises
    ------
    FileNotFoundError
        For an input that is neither an existing path nor a pattern that matches something.
    """
    found: list[Path] = []
    for item in map(str, inputs):
        path = Path(item)
        if path.is_dir() and path.suffix.lower() != ZARR_SUFFIX:
            found += sorted(p for p in path.iterdir() if _restorable(p))
        elif path.exists():
            found.append(path)
        elif glob.has_magic(item):
            matches = sorted(Path(p) for p in glob.glob(item, recursive=True) if _restorable(Path(p)))
            if not matches:
                raise FileNotFoundError(f"no images match {item!r}")
            found += matches
        else:
            raise FileNotFoundError(f"no such file or folder: {item}")
    return list(dict.fromkeys(found))


def _restorable(path: Path) -> bool:
    suffix = path.suffix.lower()
    return (path.is_file() and suffix in IMAGE_SUFFIXES) or (path.is_dir() and suffix == ZARR_SUFFIX)


@lru_cache(maxsize=4)
def _policy(spec: str) -> Policy:
    return api.load_policy(spec)


def _open_zarr(path: Path) -> Any:
    import zarr

    node = zarr.open(str(path), mode="r")
    if isinstance(node, zarr.Array):
        return node
    arrays = dict(node.arrays())
    if "0" in arrays:  # OME-Zarr: level 0 is the full resolution
        return arrays["0"]
    if len(arrays) == 1:
        return next(iter(arrays.values()))
    raise ValueError(f"{path} is a zarr group with arrays {sorted(arrays)}; point at one of them ({path}/<name>)")


def _tiff_metadata(path: Path) -> dict[str, Any]:
    """What to keep of a TIFF: resolution, its unit and ImageJ's axes, spacing and units."""
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        kept: dict[str, Any] = {}
        tags = page.tags
        if "XResolution" in tags and "YResolution" in tags:
            kept["resolution"] = (tags["XResolution"].value, tags["YResolution"].value)
            if "ResolutionUnit" in tags:
                kept["resolutionunit"] = tags["ResolutionUnit"].value
        if tif.is_imagej and tif.imagej_metadata:
            meta = {k: v for k, v in tif.imagej_metadata.items() if k in ("spacing", "unit", "finterval")}
            meta["axes"] = tif.series[0].axes
            kept["imagej"], kept["metadata"] = True, meta
    return kept


def _write(path: Path, data: np.ndarray, kept: dict[str, Any], *, rgb: bool = False) -> Path:
    options = dict(kept) if not rgb else {k: v for k, v in kept.items() if k.startswith("resolution")}
    if not options.get("imagej"):
        options["photometric"] = "rgb" if rgb else "minisblack"
    tifffile.imwrite(path, data, **options)
    return path


def restore_file(path: str | os.PathLike[str], outdir: str | os.PathLike[str], job: RestoreJob) -> FileResult:
    """Restore one file into ``outdir`` (module docstring); errors come back in the result, never raised."""
    path, outdir = Path(path), Path(outdir)
    start = time.perf_counter()
    if job.threads is not None:
        torch.set_num_threads(job.threads)
    try:
        policy = _policy(job.policy)
        options = {
            "steps": job.steps,
            "device": job.device,
            "precision": job.precision,
            "return_values": job.values,
            "tile_size": job.tile_size,
            "channel_axis": job.channel_axis,
        }
        outdir.mkdir(parents=True, exist_ok=True)
        if path.suffix.lower() == ZARR_SUFFIX:
            source = _open_zarr(path)
            steps = policy.steps if job.steps is None else job.steps
            target = outdir / f"{path.stem}_restored.zarr"
            out = zarr_restoration(target, source.shape, steps, values=job.values, channel_axis=job.channel_axis)
            api.restore(source, policy, out=out, **options)
            outputs: tuple[Path, ...] = (target,)
            pixels = int(np.prod(source.shape))
        else:
            image = read_image(path)
            kept = _tiff_metadata(path) if path.suffix.lower() in (".tif", ".tiff") else {}
            result = api.restore(image, policy, **options)
            rgb = job.channel_axis is None and image_layout(image.shape).channel_axis is not None
            outputs = (
                _write(outdir / f"{path.stem}_restored.tif", result.image, kept, rgb=rgb),
                _write(outdir / f"{path.stem}_actions.tif", result.actions, _resolution_only(kept)),
            )
            if result.values is not None:
                outputs += (_write(outdir / f"{path.stem}_values.tif", result.values, _resolution_only(kept)),)
            pixels = image.size
    except (OSError, ValueError, MemoryError, CheckpointError, RuntimeError) as err:
        return FileResult(path, error=str(err) or type(err).__name__, seconds=time.perf_counter() - start)
    return FileResult(path, outputs, pixels / 1e6, time.perf_counter() - start)


def _resolution_only(kept: dict[str, Any]) -> dict[str, Any]:
    """Maps have a step axis that the image's ImageJ axes do not describe: keep the pixel size only."""
    return {k: v for k, v in kept.items() if k.startswith("resolution")}


def _set_threads(threads: int) -> None:
    torch.set_num_threads(threads)


def restore_files(
    paths: Sequence[Path],
    outdir: str | os.PathLike[str],
    job: RestoreJob,
    *,
    workers: int = 1,
    scheduler: str | None = None,
) -> Iterator[FileResult]:
    """Restore every file, yielding each :class:`FileResult` as it finishes (not in input order).

    Parameters
    ----------
    paths : sequence of Path
        From :func:`expand_inputs`.
    outdir : path
        Folder for all results.
    job : RestoreJob
        Settings for every file.
    workers : int
        Worker processes on this machine (1: this process). Each gets ``cpu_count // workers`` torch threads
        unless ``job.threads`` says otherwise.
    scheduler : str, optional
        Address of a ``dask.distributed`` scheduler (``tcp://host:8786``) to run the files on instead; its
        workers need napari-pixelrl installed and must see ``paths`` and ``outdir`` at the same paths.
    """
    if scheduler is not None:
        yield from _on_cluster(paths, outdir, job, scheduler)
        return
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if workers == 1 or len(paths) <= 1:
        for path in paths:
            yield restore_file(path, outdir, job)
        return
    threads = job.threads or max(1, (os.cpu_count() or 1) // workers)
    # "spawn": a forked child would inherit torch's OpenMP thread pool in a broken state.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_set_threads, initargs=(threads,)) as pool:
        futures = [pool.submit(restore_file, path, outdir, job) for path in paths]
        for future in as_completed(futures):
            yield future.result()


def _on_cluster(paths: Sequence[Path], outdir: str | os.PathLike[str], job: RestoreJob, address: str) -> Iterator:
    try:
        from distributed import Client
        from distributed import as_completed as completed
    except ImportError as err:
        raise ValueError("--scheduler needs dask.distributed: pip install 'napari-pixelrl[distributed]'") from err
    with Client(address) as client:
        futures = client.map(restore_file, list(paths), outdir=str(outdir), job=job, pure=False)
        for future in completed(futures):
            yield future.result()
