"""Restoring many files: in this process, in ``N`` worker processes, or on a ``dask.distributed`` cluster.

Each file is one task, :func:`restore_file`, which reads the file, restores it with :func:`napari_pixelrl.api.restore`
(tiled, every plane of a stack) and writes the results beside each other in the output folder:

* TIFF, PNG, JPEG, BMP: ``<stem>_restored.tif`` (float32, the input's units; a TIFF's resolution and ImageJ
  metadata are kept), ``<stem>_actions.tif`` (uint8) and, with ``values``, ``<stem>_values.tif``;
* zarr (an array, or a group whose array ``"0"`` is the full resolution, as in OME-Zarr): ``<stem>_restored.zarr``,
  a group with arrays ``image``, ``actions`` (and ``values``), written tile by tile without loading the input.

Channels: a TIFF's ``C`` axis (ImageJ hyperstacks, OME-TIFF) and an OME-Zarr's ``channel`` axis are restored
channel by channel (each with its own intensity range) unless ``channel_axis`` is given.

A task never raises for a bad file: its :class:`FileResult` carries the error, and the others go on.
"""

from __future__ import annotations

import glob
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import torch

from . import api
from .core.checkpoint import Policy
from .core.inference import Restoration, RestoreProgress, default_memory_budget, image_layout, looks_rgb
from .core.io import IMAGE_SUFFIXES, read_image, zarr_restoration

__all__ = ["FileResult", "RestoreJob", "expand_inputs", "restore_file", "restore_files"]

Progress = Callable[[RestoreProgress], None]

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
    sharing: int = 1
    """Tasks running at once on one device: each sizes its tiles to this share of the default memory budget."""


@dataclass(frozen=True)
class FileResult:
    """What became of one input file."""

    path: Path
    outputs: tuple[Path, ...] = ()
    megapixels: float = 0.0
    """Pixels restored (all planes; an RGB pixel under a colour policy counts once), in millions."""
    seconds: float = 0.0
    error: str | None = None
    noise: str | None = None
    """The noise check's advice when the file's noise lies outside what the policy was trained for."""


def expand_inputs(inputs: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Files to restore from command-line inputs: image files and zarr arrays or groups as given, folders as the
    images and zarr folders directly in them, and glob patterns (``"data/*.tif"``, ``"**"`` too) as what they
    match. Order kept, duplicates dropped.

    Raises
    ------
    FileNotFoundError
        For an input that is neither an existing path nor a pattern that matches something, and a folder with
        nothing to restore.
    ValueError
        When two inputs would write results of the same name (``a/x.tif`` and ``b/x.tif``).
    """
    found: list[Path] = []
    for item in map(str, inputs):
        path = Path(item)
        if path.is_dir() and not is_zarr(path):
            inside = sorted(p for p in path.iterdir() if _restorable(p))
            if not inside:
                raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) or zarr arrays in the folder {path}")
            found += inside
        elif path.exists():
            found.append(path)
        elif any(magic in item for magic in "*?["):
            matches = sorted(Path(p) for p in glob.glob(item, recursive=True) if _restorable(Path(p)))
            if not matches:
                raise FileNotFoundError(f"no images match {item!r}")
            found += matches
        else:
            raise FileNotFoundError(f"no such file or folder: {item}")
    found = list(dict.fromkeys(found))
    by_name: dict[str, Path] = {}
    for path in found:
        other = by_name.setdefault(output_stem(path), path)
        if other != path:
            raise ValueError(
                f"{other} and {path} would both write {output_stem(path)}_restored...; restore them into different "
                "output folders (one command each)"
            )
    return found


def is_zarr(path: Path) -> bool:
    """A zarr array or group: a folder named ``*.zarr`` or holding zarr's metadata (v3 or v2)."""
    markers = ("zarr.json", ".zarray", ".zgroup")
    return path.is_dir() and (path.suffix.lower() == ZARR_SUFFIX or any((path / m).is_file() for m in markers))


def output_stem(path: Path) -> str:
    """Name the results of ``path`` start with: the file name without ``.tif``, ``.ome.tif``, ``.zarr``, ..."""
    name = path.name
    for suffix in (".ome.tiff", ".ome.tif", ".ome.zarr", path.suffix):
        if suffix and name.lower().endswith(suffix.lower()):
            return name[: -len(suffix)]
    return name


def _restorable(path: Path) -> bool:
    return (path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES) or is_zarr(path)


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


def _ome_channel_axis(path: Path) -> int | None:
    """The channel axis that an OME-Zarr group's ``multiscales`` metadata names, if any."""
    import zarr

    attrs = dict(zarr.open(str(path), mode="r").attrs)
    multiscales = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales") or [{}]
    kinds = [axis.get("type") if isinstance(axis, dict) else None for axis in multiscales[0].get("axes", [])]
    return kinds.index("channel") if "channel" in kinds else None


def _tiff_metadata(path: Path) -> tuple[dict[str, Any], int | None]:
    """What to keep of a TIFF (resolution, its unit and ImageJ's axes, spacing and units), and the ``C`` axis of
    its first series (ImageJ hyperstacks, OME-TIFF), if any."""
    with tifffile.TiffFile(path) as tif:
        axes = tif.series[0].axes
        page = tif.pages.first
        kept: dict[str, Any] = {}
        tags = page.tags
        if "XResolution" in tags and "YResolution" in tags:
            kept["resolution"] = (tags["XResolution"].value, tags["YResolution"].value)
            if "ResolutionUnit" in tags:
                kept["resolutionunit"] = tags["ResolutionUnit"].value
        if tif.is_imagej and tif.imagej_metadata:
            meta = {k: v for k, v in tif.imagej_metadata.items() if k in ("spacing", "unit", "finterval")}
            meta["axes"] = axes
            kept["imagej"], kept["metadata"] = True, meta
    return kept, axes.index("C") if "C" in axes else None


def _write(path: Path, data: np.ndarray, kept: dict[str, Any], *, rgb: bool = False) -> Path:
    options = _resolution_only(kept) if rgb else dict(kept)
    if not options.get("imagej"):
        options["photometric"] = "rgb" if rgb else "minisblack"
    tifffile.imwrite(path, data, **options)
    return path


def _restore(image: Any, policy: Policy, on_progress: Progress | None, **options: Any) -> Restoration:
    """:func:`napari_pixelrl.api.restore`, telling ``on_progress`` after every step of every plane or tile."""
    work = api.restore_steps(image, policy, **options)
    while True:
        try:
            progress = next(work)
        except StopIteration as finished:
            return finished.value
        if on_progress is not None:
            on_progress(progress)


def restore_file(
    path: str | os.PathLike[str],
    outdir: str | os.PathLike[str],
    job: RestoreJob,
    on_progress: Progress | None = None,
) -> FileResult:
    """Restore one file into ``outdir`` (module docstring).

    Any error (an unreadable file, a bad policy, a full disk, ...) comes back in the result instead of being
    raised, so that one bad file does not stop a batch. ``on_progress`` is called with a
    :class:`~napari_pixelrl.core.inference.RestoreProgress` after every step of every plane or tile.
    """
    path, outdir = Path(path), Path(outdir)
    start = time.perf_counter()
    if job.threads is not None:
        torch.set_num_threads(job.threads)
    try:
        policy = _policy(job.policy)
        options: dict[str, Any] = {
            "steps": job.steps,
            "device": job.device,
            "precision": job.precision,
            "return_values": job.values,
            "tile_size": job.tile_size,
        }
        if job.sharing > 1 and job.tile_size is None:
            options["memory_budget"] = default_memory_budget(api.resolve_device(job.device)) // job.sharing
        stem = output_stem(path)
        if is_zarr(path):
            source = _open_zarr(path)
            outdir.mkdir(parents=True, exist_ok=True)  # only once there is something to write
            channel_axis = job.channel_axis if job.channel_axis is not None else _ome_channel_axis(path)
            steps = policy.steps if job.steps is None else job.steps
            target = outdir / f"{stem}_restored.zarr"
            out = zarr_restoration(
                target,
                source.shape,
                steps,
                values=job.values,
                channel_axis=channel_axis,
                channels=policy.action_set.channels,
            )
            result = _restore(source, policy, on_progress, out=out, channel_axis=channel_axis, **options)
            outputs: tuple[Path, ...] = (target,)
            layout = image_layout(source.shape, channel_axis=channel_axis, channels=policy.action_set.channels)
            image = source
        else:
            image = read_image(path)
            outdir.mkdir(parents=True, exist_ok=True)
            tiff = path.suffix.lower() in (".tif", ".tiff")
            kept, channels = _tiff_metadata(path) if tiff else ({}, None)
            channel_axis = job.channel_axis if job.channel_axis is not None else channels
            result = _restore(image, policy, on_progress, channel_axis=channel_axis, **options)
            layout = image_layout(image.shape, channel_axis=channel_axis, channels=policy.action_set.channels)
            rgb = looks_rgb(image.shape) and layout.channel_axis == image.ndim - 1
            outputs = (
                _write(outdir / f"{stem}_restored.tif", result.image, kept, rgb=rgb),
                _write(outdir / f"{stem}_actions.tif", result.actions, _resolution_only(kept)),
            )
            if result.values is not None:
                outputs += (_write(outdir / f"{stem}_values.tif", result.values, _resolution_only(kept)),)
        # The ranges that restoring used: no second pass over the whole image (a full read of a large zarr).
        used = result.first_plane_range(layout) if policy.action_set.channels == 1 else None
        check = api.check_noise(image, policy, channel_axis=channel_axis, intensity_range=used)
    except Exception as err:
        return FileResult(path, error=f"{type(err).__name__}: {err}", seconds=time.perf_counter() - start)
    noise = None if check is None or check.fits else check.advice
    return FileResult(path, outputs, layout.pixels / 1e6, time.perf_counter() - start, noise=noise)


def _resolution_only(kept: dict[str, Any]) -> dict[str, Any]:
    """Maps have a step axis that the image's ImageJ axes do not describe: keep the pixel size only."""
    return {k: v for k, v in kept.items() if k.startswith("resolution")}


def restore_files(
    paths: Sequence[Path],
    outdir: str | os.PathLike[str],
    job: RestoreJob,
    *,
    workers: int = 1,
    scheduler: str | None = None,
    on_progress: Progress | None = None,
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
        workers need napari-pixelrl installed and must see ``paths`` and ``outdir`` at the same paths. Each task
        uses ``job.threads`` torch threads (default 1: start one single-threaded worker per core, or one per GPU).
    on_progress : callable, optional
        Called after every step of every plane or tile with a
        :class:`~napari_pixelrl.core.inference.RestoreProgress` of the current file, when files are restored in
        this process (one worker, or one file); worker processes and clusters report whole files only.

    A worker process that dies (e.g. killed for memory) fails its file, not the batch. Stopping the iteration
    early cancels the files not yet started.
    """
    if scheduler is not None:
        yield from _on_cluster(paths, outdir, replace(job, threads=job.threads or 1), scheduler)
        return
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if workers == 1 or len(paths) <= 1:
        for path in paths:
            yield restore_file(path, outdir, job, on_progress)
        return
    threads = job.threads or max(1, (os.cpu_count() or 1) // workers)
    job = replace(job, threads=threads, sharing=workers)
    # "spawn": a forked child would inherit torch's OpenMP thread pool in a broken state.
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(workers, mp_context=context)  # each task sets its torch threads (job.threads)
    try:
        futures = {pool.submit(restore_file, path, outdir, job): path for path in paths}
        for future in as_completed(futures):
            yield _result(future, futures[future])
    finally:
        pool.shutdown(cancel_futures=True)


def _result(future: Future | Any, path: Path) -> FileResult:
    """The task's result, or a failed result when its worker died."""
    try:
        return future.result()
    except Exception as err:
        return FileResult(Path(path), error=f"the worker restoring it failed: {type(err).__name__}: {err}")


def _on_cluster(paths: Sequence[Path], outdir: str | os.PathLike[str], job: RestoreJob, address: str) -> Iterator:
    try:
        from distributed import Client
        from distributed import as_completed as completed
    except ImportError as err:
        raise ValueError("--scheduler needs dask.distributed: pip install 'napari-pixelrl[distributed]'") from err
    with Client(address) as client:
        futures = client.map(restore_file, list(paths), outdir=str(outdir), job=job, pure=False)
        where = dict(zip(futures, paths, strict=True))
        try:
            for future in completed(futures):
                yield _result(future, where[future])
        finally:
            client.cancel([future for future in futures if not future.done()])
