"""Restoring arrays of any size and dimensionality with a policy: layout, intensity mapping, exact tiles, batches.

An n-D array is a set of 2-D *planes* (its last two non-channel axes) indexed by all its other axes. Every plane
is cut into tiles that fit a memory budget (:mod:`.tiling`; one tile when the plane fits), tiles of equal shape
are run together as a batch, and each tile's core is written into the output. The source is read one window at
a time (``source[index]``), so dask and zarr arrays are never loaded whole, and the output can be any array that
takes slice assignment (NumPy by default, zarr for results larger than memory).
"""

from __future__ import annotations

import math
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from itertools import product
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from .checkpoint import Policy
from .config import PRECISIONS, InferenceConfig
from .environment import resolve_device, usable_precision
from .memory import available_bytes, episode_bytes, release_free_memory, reuse_large_buffers
from .noise_level import centre_window, estimate_sigma
from .rollout import Step, collect_episode, episode_steps
from .tiling import Tile, halo_width, plan_tiles, tile_side_for_budget

__all__ = [
    "MIN_SIZE",
    "Layout",
    "Restoration",
    "RestoreProgress",
    "check_image",
    "default_intensity_range",
    "default_memory_budget",
    "image_layout",
    "restore_steps",
]

MIN_SIZE = 3
MAX_BATCH = 16
"""Most planes or tiles run in one batch."""
_CPU_BUDGET = 3 * 2**29  # 1.5 GiB: an 8k x 8k CLI restore peaks at 1.9 GiB in all (docs/benchmarks.md)
RGB = 3  # colour channels of a joint plane; a fourth (alpha) is passed through
# How torch's CUDA, MPS and CPU allocators word an allocation failure.
_OUT_OF_MEMORY = ("out of memory", "not enough memory", "can't allocate memory")


@dataclass(frozen=True)
class Restoration:
    """Result of :func:`napari_pixelrl.api.restore`.

    Attributes
    ----------
    image : array
        Restored image, float32, the input's shape and intensity units.
    actions : array
        Action index chosen per pixel at each step, ``uint8`` (names in ``policy.action_set.names``):
        ``(steps, H, W)`` for a 2-D image, ``(*stack, steps, H, W)`` for an n-D array, where ``stack`` is the
        shape of its other axes in order (the channel axis included, e.g. ``(3, steps, H, W)`` for RGB).
    values : array or None
        Value map ``V(s_t)`` per step, shaped like ``actions``, float32, when ``return_values=True``.
    intensity_ranges : dict
        The ``(low, high)`` that was mapped to [0, 1], per channel index (key ``None`` when one range served the
        whole image, or all colour channels together).
    """

    image: Any
    actions: Any
    values: Any | None
    intensity_ranges: dict[int | None, tuple[float, float]] = field(default_factory=dict)

    def first_plane_range(self, layout: Layout) -> tuple[float, float]:
        """The range of the first plane (of the first channel) of an image of ``layout``: the one that the noise
        check reads."""
        return self.intensity_ranges[layout.channel(next(layout.planes()))]


@dataclass(frozen=True)
class RestoreProgress:
    """Progress of :func:`restore_steps`: ``done`` of ``total`` units of work (one step of one plane or tile)."""

    done: int
    total: int


@dataclass(frozen=True)
class Layout:
    """Which axes of an n-D array form its 2-D planes (``Y, X``: the last two that are not the channel axis).

    With ``joint_channels`` (a colour policy) a plane is the RGB image ``(3, Y, X)``: the channel axis is part of
    every plane instead of indexing planes of its own (a fourth, alpha, channel is passed through unchanged).
    """

    shape: tuple[int, ...]
    channel_axis: int | None = None
    joint_channels: bool = False

    @property
    def plane_axes(self) -> tuple[int, int]:
        """Axes ``(Y, X)`` of each plane."""
        spatial = [axis for axis in range(len(self.shape)) if axis != self.channel_axis]
        return spatial[-2], spatial[-1]

    @property
    def stack_axes(self) -> tuple[int, ...]:
        """All other axes, in order (Z, T, channel, ...); the channel axis is not one with ``joint_channels``."""
        own = (*self.plane_axes, self.channel_axis) if self.joint_channels else self.plane_axes
        return tuple(axis for axis in range(len(self.shape)) if axis not in own)

    @property
    def range_keys(self) -> list[int | None]:
        """What intensity ranges are kept per: each channel, or (``None``) the whole array."""
        if self.channel_axis is None or self.joint_channels:
            return [None]
        return list(range(self.shape[self.channel_axis]))

    def to_planes(self, window: np.ndarray) -> np.ndarray:
        """A window read with :meth:`index` as ``(C, h, w)`` (``C = 1`` for grayscale planes)."""
        if not self.joint_channels:
            return window[None]
        return np.moveaxis(window, sorted((*self.plane_axes, self.channel_axis)).index(self.channel_axis), 0)

    def from_planes(self, planes: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`to_planes`: ``(C, h, w)`` back to the axes order of a window."""
        if not self.joint_channels:
            return planes[0]
        return np.moveaxis(planes, 0, sorted((*self.plane_axes, self.channel_axis)).index(self.channel_axis))

    @property
    def plane_shape(self) -> tuple[int, int]:
        """``(H, W)``."""
        y, x = self.plane_axes
        return self.shape[y], self.shape[x]

    @property
    def stack_shape(self) -> tuple[int, ...]:
        """Sizes of :attr:`stack_axes`; ``()`` for a 2-D image."""
        return tuple(self.shape[axis] for axis in self.stack_axes)

    @property
    def pixels(self) -> int:
        """Pixels restored: ``H x W`` of every plane (an RGB plane of a colour policy counts once)."""
        return math.prod(self.stack_shape) * math.prod(self.plane_shape)

    def map_shape(self, steps: int) -> tuple[int, ...]:
        """Shape of the action and value maps: ``(*stack_shape, steps, H, W)``."""
        return (*self.stack_shape, steps, *self.plane_shape)

    def planes(self) -> Iterator[tuple[int, ...]]:
        """Index of every plane within :attr:`stack_shape`, in C order."""
        return iter(np.ndindex(*self.stack_shape))

    def index(self, plane: tuple[int, ...], rows: slice, cols: slice) -> tuple:
        """Full index into the array of a window ``rows x cols`` of one plane."""
        index: list[Any] = [None] * len(self.shape)
        for axis, i in zip(self.stack_axes, plane, strict=True):
            index[axis] = i
        y, x = self.plane_axes
        index[y], index[x] = rows, cols
        if self.joint_channels:
            index[self.channel_axis] = slice(None)
        return tuple(index)

    def channel(self, plane: tuple[int, ...]) -> int | None:
        """Channel of a plane, or ``None`` without a channel axis (or with ``joint_channels``)."""
        if self.channel_axis is None or self.joint_channels:
            return None
        return plane[self.stack_axes.index(self.channel_axis)]


def looks_rgb(shape: tuple[int, ...]) -> bool:
    """``(..., H, W, 3 or 4)`` with the last axis shorter than both before it: how napari tells RGB(A) apart."""
    return len(shape) >= 3 and shape[-1] in (3, 4) and shape[-1] < min(shape[-3], shape[-2])


def image_layout(
    shape: tuple[int, ...], *, channel_axis: int | None = None, rgb: bool | None = None, channels: int = 1
) -> Layout:
    """The :class:`Layout` of an array of ``shape``.

    Parameters
    ----------
    shape : tuple of int
        The array's shape, at least 2-D.
    channel_axis : int, optional
        An axis of channels, each restored as its own grayscale image with its own default intensity range.
    rgb : bool, optional
        Whether the last axis holds RGB(A) colour (a channel axis); ``None`` guesses it like napari does.
    channels : int
        Channels of the policy's states: 1 (grayscale planes) or 3 (RGB planes: the channel axis, of 3 or 4
        channels, is restored jointly).
    """
    shape = tuple(int(n) for n in shape)
    ndim = len(shape)
    if ndim < 2:
        raise ValueError(f"restore needs an image with at least 2 dimensions (H, W); got shape {shape}")
    if channel_axis is None and (rgb or (rgb is None and looks_rgb(shape))):
        channel_axis = ndim - 1
    if channel_axis is not None:
        if not -ndim <= channel_axis < ndim or ndim < 3:
            raise ValueError(f"channel_axis {channel_axis} does not fit an array of shape {shape} (needs 3-D or more)")
        channel_axis %= ndim
    if channels == 1:
        return Layout(shape, channel_axis)
    if channel_axis is None or shape[channel_axis] not in (3, 4):
        raise ValueError(
            f"a colour policy restores RGB images (H, W, 3) or RGBA; got shape {shape}"
            + ("" if channel_axis is None else f" with {shape[channel_axis]} channels on axis {channel_axis}")
            + ". For a grayscale image pick a grayscale policy; for channels elsewhere pass channel_axis."
        )
    return Layout(shape, channel_axis, joint_channels=True)


def check_image(image: Any, *, channel_axis: int | None = None, rgb: bool | None = None, channels: int = 1) -> Layout:
    """Raise ``ValueError`` with the fix when ``image`` cannot be restored; return its :class:`Layout`.

    ``image`` is a NumPy array or any array with ``shape``, ``dtype`` and slicing (dask, zarr). NaN and infinite
    values are looked for here in NumPy arrays, and tile by tile while restoring lazy ones. ``channels`` is the
    policy's (``policy.action_set.channels``: 3 for colour, which needs an RGB(A) image).
    """
    dtype = np.dtype(image.dtype)
    if dtype.kind not in "uif":
        hint = " (a mask? convert it with image.astype(np.float32))" if dtype.kind == "b" else ""
        raise ValueError(f"restore needs a real-valued image (integer or float); got dtype {dtype}{hint}")
    layout = image_layout(tuple(image.shape), channel_axis=channel_axis, rgb=rgb, channels=channels)
    if 0 in layout.shape or min(layout.plane_shape) < MIN_SIZE:
        raise ValueError(
            f"image of shape {layout.shape} is too small: PixelRL needs planes of at least {MIN_SIZE}x{MIN_SIZE} "
            f"pixels, these are {layout.plane_shape[0]}x{layout.plane_shape[1]}"
        )
    if isinstance(image, np.ndarray) and dtype.kind == "f":
        bad = int(np.count_nonzero(~np.isfinite(image)))
        if bad:
            raise ValueError(f"image has {bad} NaN or infinite pixel(s); replace them first, e.g. np.nan_to_num(image)")
    return layout


def default_intensity_range(image: Any) -> tuple[float, float]:
    """The ``(low, high)`` that restore maps to [0, 1] by default for the whole array (see the README's table).

    * ``uint8``: ``(0, 255)``.
    * Floats that are [0, 1] data, noise included: ``(0, 1)``. They count as such when their extremes (below)
      lie within [0, 1] or outside it by no more than five times their own noise level (:func:`estimate_sigma`),
      as ``clean + N(0, σ)`` does: mapping them by their extremes would shrink the noise that the policy sees.
    * Anything else: the extremes, where isolated outliers (hot or dead pixels) do not count: the largest value
      that at least two pixels of some 3x3 neighbourhood reach, and likewise the smallest. One hot pixel then
      neither compresses the image nor its noise; it is clipped to the range like everything outside it.
    """
    return _default_ranges(image, Layout(tuple(image.shape)))[None]


def _extremes(band: np.ndarray, inner: slice) -> tuple[float, float]:
    """Second smallest and second largest value of each 3x3 neighbourhood, at their extremes over the rows
    ``inner`` of ``band`` (the rows around them are context, so that bands give the whole plane's result)."""
    low = ndimage.rank_filter(band, rank=1, size=3, mode="nearest")[inner]
    high = ndimage.rank_filter(band, rank=-2, size=3, mode="nearest")[inner]
    return float(low.min()), float(high.max())


def _default_ranges(source: Any, layout: Layout) -> dict[int | None, tuple[float, float]]:
    """Default intensity range per range key, in one pass over the array band by band (NumPy, dask or zarr)."""
    dtype = np.dtype(source.dtype)
    channels = layout.range_keys
    if dtype == np.uint8:
        return dict.fromkeys(channels, (0.0, 255.0))
    low, high = dict.fromkeys(channels, np.inf), dict.fromkeys(channels, -np.inf)
    sigma: dict[int | None, float] = {}
    height, width = layout.plane_shape
    colours = RGB if layout.joint_channels else 1
    for plane in layout.planes():
        channel = layout.channel(plane)
        if channel not in sigma and dtype.kind == "f":  # the noise of the channel's first plane
            window = layout.to_planes(_window(source, layout.index(plane, *centre_window(layout.plane_shape))))
            sigma[channel] = estimate_sigma(window[0])
        for rows in _bands(layout, source):
            top, bottom = max(0, rows.start - 1), min(height, rows.stop + 1)  # a row of context on either side
            band = _window(source, layout.index(plane, slice(top, bottom), slice(0, width)))
            _check_finite(band, plane, rows)
            for colour in layout.to_planes(band)[:colours]:
                a, b = _extremes(colour, slice(rows.start - top, rows.stop - top))
                low[channel], high[channel] = min(low[channel], a), max(high[channel], b)
    ranges = {}
    for c in channels:
        slack = 5.0 * sigma.get(c, 0.0) + 1e-6
        if dtype.kind == "f" and low[c] >= -slack and high[c] <= 1.0 + slack:
            ranges[c] = (0.0, 1.0)
        else:
            ranges[c] = (low[c], high[c]) if high[c] > low[c] else (low[c], low[c] + 1.0)
    return ranges


def _window(source: Any, index: tuple) -> np.ndarray:
    return np.asarray(source[index])


def _bands(layout: Layout, source: Any) -> list[slice]:
    """Row bands to read a plane in: the array's own chunk rows when it has chunks, else about 16 M pixels."""
    height, width = layout.plane_shape
    chunks = getattr(source, "chunks", None)
    rows = 0
    if isinstance(chunks, tuple) and len(chunks) == len(layout.shape):
        rows = chunks[layout.plane_axes[0]]  # zarr: ints; dask: a tuple per axis (not used)
    rows = rows if isinstance(rows, int) and rows > 0 else max(1, 2**24 // width)
    return [slice(y, min(height, y + rows)) for y in range(0, height, rows)]


def _intensity_ranges(
    source: Any, layout: Layout, given: tuple[float, float] | None
) -> dict[int | None, tuple[float, float]]:
    """``(low, high)`` per channel (key ``None`` without a channel axis, or for all channels together)."""
    channels = layout.range_keys
    if given is not None:
        low, high = map(float, given)
        if not high > low:
            raise ValueError(f"intensity_range must have high > low, got ({low}, {high})")
        return dict.fromkeys(channels, (low, high))
    return _default_ranges(source, layout)


def noise_window(image: Any, layout: Layout, intensity_range: tuple[float, float] | None = None) -> np.ndarray:
    """The centre window (at most 512x512) of the first plane, mapped to [0, 1] as restore maps it: what the
    noise check (:mod:`~napari_pixelrl.core.noise_level`) looks at."""
    ranges = _intensity_ranges(image, layout, intensity_range)
    plane = next(layout.planes())
    low, high = ranges[layout.channel(plane)]
    window = layout.to_planes(_window(image, layout.index(plane, *centre_window(layout.plane_shape))))[0]
    return (window.astype(np.float64) - low) / (high - low)


def _check_finite(window: np.ndarray, plane: tuple[int, ...], rows: slice) -> None:
    if window.dtype.kind == "f" and not np.isfinite(window).all():
        raise ValueError(
            f"image has NaN or infinite pixel(s) in plane {plane}, rows {rows.start}-{rows.stop}; "
            "replace them first, e.g. with np.nan_to_num"
        )


def default_memory_budget(device: torch.device) -> int:
    """Bytes that one batch of tiles may use: on a CPU a quarter of the free memory, at most 1.5 GiB; on a GPU
    half of its free memory."""
    free = available_bytes(device)
    if device.type == "cpu":
        return _CPU_BUDGET if free is None else min(_CPU_BUDGET, free // 4)
    return 2 * 2**30 if free is None else free // 2


def _memory_advice(what: str, device: torch.device, problem: str, fix: str) -> str:
    return f"restoring {what} on {device}: {problem}. {fix}"


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def _check_output_memory(layout: Layout, steps: int, with_values: bool, device: torch.device) -> None:
    maps = int(np.prod(layout.map_shape(steps)))
    needed = 4 * int(np.prod(layout.shape)) + maps * (5 if with_values else 1)
    free = available_bytes(torch.device("cpu"))
    if free is not None and needed > free:
        raise MemoryError(
            _memory_advice(
                f"an image of shape {layout.shape}",
                device,
                f"the results need about {_gib(needed)} but only {_gib(free)} of memory is free",
                "Write them to disk instead: pass out=napari_pixelrl.api.zarr_restoration(path, ...) (the "
                "command line does so for zarr inputs), or restore a part of the array at a time.",
            )
        )


def _check_out(out: Restoration, layout: Layout, steps: int, with_values: bool) -> None:
    expected = {"image": layout.shape, "actions": layout.map_shape(steps)}
    if with_values:
        expected["values"] = layout.map_shape(steps)
    for name, shape in expected.items():
        array = getattr(out, name)
        if array is None or tuple(array.shape) != shape:
            got = None if array is None else tuple(array.shape)
            raise ValueError(f"out.{name} must have shape {shape} for this image and {steps} steps, got {got}")


@dataclass(frozen=True)
class _Work:
    plane: tuple[int, ...]
    tile: Tile


def _batches(layout: Layout, tiles: list[Tile], budget: int, channels: int) -> list[list[_Work]]:
    """Every (plane, tile) in order, grouped into batches of equal read shape that fit ``budget``."""
    batches: list[list[_Work]] = []
    for plane, tile in product(layout.planes(), tiles):
        limit = int(np.clip(budget // episode_bytes(*tile.read_shape, channels), 1, MAX_BATCH))
        last = batches[-1] if batches else None
        if last and len(last) < limit and last[0].tile.read_shape == tile.read_shape:
            last.append(_Work(plane, tile))
        else:
            batches.append([_Work(plane, tile)])
    return batches


def restore_steps(
    image: Any,
    policy: Policy,
    config: InferenceConfig,
    *,
    intensity_range: tuple[float, float] | None = None,
    channel_axis: int | None = None,
    rgb: bool | None = None,
    out: Restoration | None = None,
) -> Generator[RestoreProgress, None, Restoration]:
    """Restore ``image``, yielding a :class:`RestoreProgress` after every step of every batch of tiles.

    See :func:`napari_pixelrl.api.restore` for the arguments. Closing the generator abandons the work at the
    next step. Everything that can be checked (image, ranges, memory, ``out``) is checked before the first step.
    """
    layout = check_image(image, channel_axis=channel_axis, rgb=rgb, channels=policy.action_set.channels)
    steps = policy.steps if config.steps is None else config.steps
    target = resolve_device(config.device)
    network_dtype = PRECISIONS[usable_precision(config.precision, target)]
    ranges = _intensity_ranges(image, layout, intensity_range)
    channels = policy.model.config.width
    halo = halo_width(policy.model.config, steps, policy.action_set.radius)
    budget = default_memory_budget(target) if config.memory_budget is None else config.memory_budget
    height, width = layout.plane_shape
    if config.tile_size is not None:
        core = config.tile_size
    elif episode_bytes(height, width, channels) <= budget:
        core = max(height, width)  # the whole plane fits: one tile, no halo to compute twice
    else:
        core = tile_side_for_budget(budget, channels, halo)
    tiles = plan_tiles(height, width, core, halo)
    largest = max(tiles, key=lambda tile: tile.read_shape[0] * tile.read_shape[1]).read_shape
    needed, free = episode_bytes(*largest, channels), available_bytes(target)
    what = f"a {height}x{width} image" if len(tiles) == 1 else f"{largest[0]}x{largest[1]} tiles"
    if free is not None and needed > free:
        raise MemoryError(
            _memory_advice(
                what,
                target,
                f"needs about {_gib(needed)} but only {_gib(free)} is available",
                "Pass a smaller tile_size (the CLI's --tile-size) or use a device with more memory.",
            )
        )
    if out is None:
        _check_output_memory(layout, steps, config.return_values, target)
        out = Restoration(
            image=np.empty(layout.shape, np.float32),
            actions=np.empty(layout.map_shape(steps), np.uint8),
            values=np.empty(layout.map_shape(steps), np.float32) if config.return_values else None,
        )
    else:
        _check_out(out, layout, steps, config.return_values)

    if target.type == "cpu":
        reuse_large_buffers()
    model = policy.model.to(device=target, memory_format=torch.channels_last).eval()
    batches = _batches(layout, tiles, budget, channels)
    total, done = sum(len(batch) for batch in batches) * steps, 0
    for batch in batches:
        states, extras = [], []
        for work in batch:
            window = _window(image, layout.index(work.plane, *work.tile.read))
            if not isinstance(image, np.ndarray):
                _check_finite(window, work.plane, work.tile.read[0])
            low, high = ranges[layout.channel(work.plane)]
            planes = layout.to_planes(window)  # (C, h, w); an RGBA image's alpha is passed through
            channels_in = policy.action_set.channels
            mapped = (planes[:channels_in].astype(np.float64) - low) / (high - low)
            if (low, high) != (0.0, 1.0):  # outliers (hot pixels) would bleed into their neighbours through filters
                mapped = np.clip(mapped, 0.0, 1.0)  # [0, 1] floats keep their noise excursions (the paper's protocol)
            states.append(mapped.astype(np.float32))
            extras.append(planes[channels_in:])
        state = torch.from_numpy(np.stack(states)).to(target).contiguous(memory_format=torch.channels_last)
        episode = episode_steps(
            model, state, policy.action_set, steps, with_value=config.return_values, network_dtype=network_dtype
        )
        finished: list[Step] = []
        while True:
            # Inference mode is entered per step, never held across a yield (it is thread-local state that would
            # otherwise leak into the caller's code while this generator is suspended).
            try:
                with torch.inference_mode():
                    step = next(episode, None)
            except RuntimeError as err:  # torch.OutOfMemoryError is a RuntimeError too
                if not any(marker in str(err).lower() for marker in _OUT_OF_MEMORY):
                    raise
                fix = "Pass a smaller tile_size or memory_budget, or use a device with more memory."
                raise MemoryError(_memory_advice(what, target, f"the {target.type} ran out of memory", fix)) from err
            if step is None:
                break
            finished.append(step)
            done += len(batch)
            yield RestoreProgress(done=done, total=total)
        _write(out, layout, batch, collect_episode(finished), ranges, extras)
        del episode, finished, state
        release_free_memory()
    out.intensity_ranges.clear()  # ``out`` itself is the result (a caller's zarr arrays): say what it holds
    out.intensity_ranges.update(ranges)
    return out


def _write(
    out: Restoration,
    layout: Layout,
    batch: list[_Work],
    episode: Any,
    ranges: dict[int | None, tuple[float, float]],
    extras: list[np.ndarray],
) -> None:
    """Write each tile's core of a finished episode into the outputs, the image back in its intensity units
    (with ``extras``, channels the policy does not change such as alpha, as they were read)."""
    images = episode.image.cpu().numpy()  # (B, C, h, w)
    actions = episode.actions.to(torch.uint8).cpu().numpy()  # (T, B, h, w)
    values = None if episode.values is None else episode.values.float().cpu().numpy()
    for b, work in enumerate(batch):
        rows, cols = work.tile.inner
        low, high = ranges[layout.channel(work.plane)]
        core = images[b, :, rows, cols].astype(np.float64) * (high - low) + low
        core = np.concatenate([core, extras[b][:, rows, cols]]).astype(np.float32)
        out.image[layout.index(work.plane, *work.tile.write)] = layout.from_planes(core)
        maps = (*work.plane, slice(None), *work.tile.write)
        out.actions[maps] = actions[:, b, rows, cols]
        if values is not None and out.values is not None:
            out.values[maps] = values[:, b, rows, cols]
