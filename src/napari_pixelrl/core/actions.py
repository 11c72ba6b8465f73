"""Pixel-wise actions: pure, batched torch functions on ``(B, C, H, W)`` float tensors (the paper's nine grey-level
actions here on ``C = 1``; its colour actions on RGB in :mod:`.color`).

Each action maps the whole current image to a candidate image; every pixel then takes the candidate of its own
action (:func:`apply_actions`). Only the filters that at least one pixel chose are computed, and at inference a
filter that few pixels chose only around them (``block``).

Border rule (OpenCV's defaults, which the paper's release used): the Gaussian, bilateral and box filters extend
the image by reflection *without* repeating the edge pixel (``dcb|abcd|cba``, OpenCV's ``BORDER_REFLECT_101``,
torch's ``"reflect"``); the median filter repeats the edge pixel (``aa|abcd|dd``, ``BORDER_REPLICATE``). With
these rules the filters equal OpenCV's ``GaussianBlur``, ``bilateralFilter``, ``medianBlur`` and ``boxFilter``
on float32 input everywhere, borders included, up to float rounding. Images must be at least 3x3.
"""

from __future__ import annotations

import importlib.metadata
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from .tiling import grown

__all__ = [
    "DENOISE",
    "ENTRY_POINT_GROUP",
    "Action",
    "ActionSet",
    "apply_actions",
    "bilateral_filter",
    "box_filter",
    "do_nothing",
    "gaussian_blur",
    "get_action_set",
    "median_blur",
    "register_action_set",
    "registered_action_sets",
    "shift_intensity",
]

_RADIUS = 2  # every filter of the paper is 5x5


def _check_image(image: torch.Tensor) -> None:
    if image.ndim != 4 or image.shape[1] != 1:
        raise ValueError(f"expected a (B, 1, H, W) tensor, got shape {tuple(image.shape)}")
    if not image.is_floating_point():
        raise TypeError(f"expected a floating-point tensor, got {image.dtype}")
    if min(image.shape[-2:]) <= _RADIUS:
        raise ValueError(f"the 5x5 filters need an image of at least 3x3 pixels, got {tuple(image.shape[-2:])}")


def _pad(image: torch.Tensor, mode: str) -> torch.Tensor:
    return F.pad(image, (_RADIUS, _RADIUS, _RADIUS, _RADIUS), mode=mode)


def _shifted(image: torch.Tensor, mode: str, offsets: list[tuple[int, int]]) -> list[torch.Tensor]:
    """Views of ``image`` shifted by each offset, border by ``mode``: ``out[k][..., y, x] = image[..., y+dy, x+dx]``."""
    padded = _pad(image, mode)
    height, width = image.shape[-2:]
    return [
        padded[..., _RADIUS + dy : _RADIUS + dy + height, _RADIUS + dx : _RADIUS + dx + width] for dy, dx in offsets
    ]


def shift_intensity(image: torch.Tensor, delta: float) -> torch.Tensor:
    """Add ``delta`` to every pixel (the paper's ±1/255 actions); no clipping."""
    _check_image(image)
    return image + delta


def do_nothing(image: torch.Tensor) -> torch.Tensor:
    """Identity action."""
    _check_image(image)
    return image


def gaussian_kernel1d(sigma: float, size: int = 2 * _RADIUS + 1) -> torch.Tensor:
    """Normalised sampled Gaussian of odd ``size`` (OpenCV's ``getGaussianKernel`` for ``sigma > 0``)."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    return kernel / kernel.sum()


def _separable(image: torch.Tensor, kernel1d: torch.Tensor) -> torch.Tensor:
    kernel1d = kernel1d.to(device=image.device, dtype=image.dtype)
    padded = _pad(image, "reflect")
    rows = F.conv2d(padded, kernel1d.view(1, 1, 1, -1))
    return F.conv2d(rows, kernel1d.view(1, 1, -1, 1))


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """5x5 Gaussian blur with standard deviation ``sigma`` (pixels), reflect-101 border."""
    _check_image(image)
    return _separable(image, gaussian_kernel1d(sigma))


def box_filter(image: torch.Tensor) -> torch.Tensor:
    """5x5 mean filter, reflect-101 border."""
    _check_image(image)
    return _separable(image, torch.full((2 * _RADIUS + 1,), 1.0 / (2 * _RADIUS + 1), dtype=torch.float64))


_SQUARE = [(dy, dx) for dy in range(-_RADIUS, _RADIUS + 1) for dx in range(-_RADIUS, _RADIUS + 1)]
# OpenCV's bilateralFilter with d=5 samples a disk of radius 2: 13 offsets.
_DISK = [(dy, dx) for dy, dx in _SQUARE if dy * dy + dx * dx <= _RADIUS**2]


def bilateral_filter(image: torch.Tensor, sigma_color: float, sigma_space: float) -> torch.Tensor:
    """Bilateral filter on OpenCV's d=5 disk window (13 taps), reflect-101 border.

    Weight of neighbour ``q`` of pixel ``p``: ``exp(-|p-q|² / (2 sigma_space²)) · exp(-(I_q - I_p)² / (2
    sigma_color²))``, normalised over the window. ``sigma_color`` is in image units ([0, 1] scale).
    """
    _check_image(image)
    neighbours = torch.stack(_shifted(image, "reflect", _DISK))
    spatial = torch.tensor(
        [-(dy * dy + dx * dx) / (2 * sigma_space**2) for dy, dx in _DISK], dtype=image.dtype, device=image.device
    ).view(-1, *([1] * image.ndim))
    weights = torch.exp(spatial - (neighbours - image).square() / (2 * sigma_color**2))
    return (weights * neighbours).sum(0) / weights.sum(0)


def _odd_even_merge_sort(n: int) -> list[tuple[int, int]]:
    """Batcher's odd-even merge sorting network on ``n`` (a power of two) wires, as (low, high) comparators."""
    comparators = []
    p = 1
    while p < n:
        k = p
        while k >= 1:
            for j in range(k % p, n - k, 2 * k):
                for i in range(min(k, n - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        comparators.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return comparators


def _median_network(n: int) -> tuple[list[tuple[int, int, bool, bool]], int]:
    """A comparator network that leaves the median of ``n`` (odd) values on one wire.

    Starts from a sorting network on the next power of two, with the extra wires holding +inf; drops the
    comparators that +inf makes trivial, then, working backwards from the median's wire, every comparator (or
    half of one: its min or its max) that cannot reach it. For n = 25: 113 comparators, 202 min/max operations.
    Returns ``(low, high, keep_min, keep_max)`` comparators and the wire that ends with the median.
    """
    size = 1 << (n - 1).bit_length()
    infinite = [wire >= n for wire in range(size)]
    label = list(range(size))  # physical wire currently holding each network position
    comparators = []
    for low, high in _odd_even_merge_sort(size):
        if infinite[high]:
            continue  # max(x, +inf) is already in place
        if infinite[low]:  # min(+inf, x) = x: a swap, done by relabelling
            label[low], label[high] = label[high], label[low]
            infinite[low], infinite[high] = False, True
            continue
        comparators.append((label[low], label[high]))
    median_wire = label[n // 2]
    needed, kept = {median_wire}, []
    for low, high in reversed(comparators):
        keep_min, keep_max = low in needed, high in needed
        if keep_min or keep_max:
            kept.append((low, high, keep_min, keep_max))
            needed |= {low, high}
    return kept[::-1], median_wire


_MEDIAN25, _MEDIAN25_WIRE = _median_network(len(_SQUARE))


def median_blur(image: torch.Tensor) -> torch.Tensor:
    """5x5 median filter, replicate border (OpenCV's ``medianBlur``).

    Uses a min/max selection network over the 25 shifted views (exact: it only moves values), about ten times
    faster on a CPU than sorting every window.
    """
    _check_image(image)
    wires = _shifted(image, "replicate", _SQUARE)
    for low, high, keep_min, keep_max in _MEDIAN25:
        a, b = wires[low], wires[high]
        if keep_min:
            wires[low] = torch.minimum(a, b)
        if keep_max:
            wires[high] = torch.maximum(a, b)
    return wires[_MEDIAN25_WIRE].contiguous()


@dataclass(frozen=True)
class Action:
    """One named action: a pure function from the current image to a candidate image, and its display colour."""

    name: str
    apply: Callable[[torch.Tensor], torch.Tensor]
    color: tuple[int, int, int] = (128, 128, 128)
    """RGB colour of the action in action maps (the same in every run, the CLI's PNGs, napari and the docs)."""


@dataclass(frozen=True)
class ActionSet:
    """An ordered set of actions; the index of an action is the policy's output channel.

    A policy's checkpoint records the set's name, version and action names (functions cannot be stored); loading it
    looks the set up in the registry (:func:`register_action_set`, :func:`get_action_set`).
    """

    name: str
    version: int
    actions: tuple[Action, ...]
    radius: int = _RADIUS
    """How far (pixels) any action looks from the pixel it changes; decides, with the network, a tile's halo."""
    description: str = ""
    """One line for users: what the actions are for."""
    channels: int = 1
    """Channels of the state the actions change: 1 (grayscale) or 3 (RGB)."""
    observe: Callable[[torch.Tensor], torch.Tensor] | None = None
    """What the network sees of a state (e.g. RGB → CIELAB); ``None``: the state itself."""
    error: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    """Per-pixel error ``(B, 1, H, W)`` of a state against the target, ``error(target, state)``; a step's reward is
    its decrease. ``None``: ``255 · Σ_channels (target - state)²``, the paper's denoising reward."""

    def network_input(self, state: torch.Tensor) -> torch.Tensor:
        """The network's view of ``state`` (:attr:`observe`)."""
        return state if self.observe is None else self.observe(state)

    def pixel_error(self, target: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """Per-pixel error of ``state`` against ``target``, ``(B, 1, H, W)`` (:attr:`error`)."""
        if self.error is None:
            return 255.0 * (target - state).square().sum(dim=1, keepdim=True)
        return self.error(target, state)

    def __len__(self) -> int:
        return len(self.actions)

    @property
    def names(self) -> list[str]:
        """Action names in channel order."""
        return [action.name for action in self.actions]

    @property
    def colors(self) -> list[tuple[int, int, int]]:
        """Action colours (RGB, 0-255) in channel order."""
        return [action.color for action in self.actions]

    @classmethod
    def from_functions(
        cls,
        name: str,
        functions: Mapping[str, Callable[[torch.Tensor], torch.Tensor]],
        *,
        radius: int,
        version: int = 1,
        colors: Sequence[tuple[int, int, int]] | None = None,
        description: str = "",
        channels: int = 1,
        observe: Callable[[torch.Tensor], torch.Tensor] | None = None,
        error: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ) -> ActionSet:
        """Build an action set from named tensor functions (channel order = the mapping's order).

        Parameters
        ----------
        name : str
            Name recorded in checkpoints.
        functions : Mapping[str, Callable]
            Action name -> function of the whole current image ``(B, channels, H, W)`` float to a candidate image of the
            same shape and dtype. Functions must be pure (no state between calls) and work on any device.
        radius : int
            How far (pixels) the widest action looks from the pixel it changes (2 for a 5x5 filter, 0 for a
            pointwise one); tiled restores add this to their halo, so a value too small makes tiles differ.
        version : int
            Bump it whenever an action's behaviour changes: checkpoints name the version they were trained with.
        colors : sequence of RGB triples, optional
            Colours in action maps; by default from a fixed palette.
        description : str
            One line for users.
        channels : int
            Channels of the images the functions take and return: 1 (grayscale, the default) or 3 (RGB).
        observe, error : callable, optional
            The network's view of a state and the per-pixel error that rewards measure (see the attributes).

        Raises
        ------
        ValueError
            If a name is empty or repeated, there are fewer than two actions, or a function does not map a small
            test image to an image of the same shape and dtype.
        """
        if not name:
            raise ValueError("an action set needs a name")
        if len(functions) < 2:
            raise ValueError(f"action set {name!r} needs at least two actions, got {len(functions)}")
        if not isinstance(radius, int) or radius < 0:
            raise ValueError(f"radius must be a non-negative integer (pixels), got {radius!r}")
        colors = list(colors) if colors is not None else [_PALETTE[i % len(_PALETTE)] for i in range(len(functions))]
        if len(colors) != len(functions):
            raise ValueError(f"got {len(colors)} colours for {len(functions)} actions")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")
        probe = torch.rand(2, channels, 2 * radius + 8, 2 * radius + 9, generator=torch.Generator().manual_seed(0))
        actions = []
        for (action_name, function), color in zip(functions.items(), colors, strict=True):
            if not action_name or not callable(function):
                raise ValueError(f"action {action_name!r} of {name!r} needs a name and a function")
            result = function(probe.clone())
            if not isinstance(result, torch.Tensor) or result.shape != probe.shape or result.dtype != probe.dtype:
                got = tuple(result.shape) if isinstance(result, torch.Tensor) else type(result).__name__
                raise ValueError(
                    f"action {action_name!r} of {name!r} must map a (B, {channels}, H, W) float tensor to one of "
                    f"the same shape and dtype; for {tuple(probe.shape)} float32 it returned {got}"
                )
            actions.append(Action(action_name, function, tuple(int(c) for c in color)))
        return cls(
            name=name,
            version=version,
            actions=tuple(actions),
            radius=radius,
            description=description,
            channels=channels,
            observe=observe,
            error=error,
        )


# Tableau-like colours; DENOISE's nine are among the first ten.
_PALETTE = [
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (90, 90, 90), (188, 189, 34), (23, 190, 207),
    (174, 199, 232), (255, 187, 120), (152, 223, 138), (255, 152, 150), (197, 176, 213), (196, 156, 148),
]  # fmt: skip


DENOISE = ActionSet(
    name="denoise",
    version=1,
    actions=(
        Action("pixel - 1", partial(shift_intensity, delta=-1.0 / 255.0), (31, 119, 180)),
        Action("do nothing", do_nothing, (90, 90, 90)),
        Action("pixel + 1", partial(shift_intensity, delta=1.0 / 255.0), (255, 127, 14)),
        Action("gaussian sigma=0.5", partial(gaussian_blur, sigma=0.5), (44, 160, 44)),
        Action("bilateral sigma_c=0.1", partial(bilateral_filter, sigma_color=0.1, sigma_space=5.0), (214, 39, 40)),
        Action("median 5x5", median_blur, (148, 103, 189)),
        Action("gaussian sigma=1.5", partial(gaussian_blur, sigma=1.5), (140, 86, 75)),
        Action("bilateral sigma_c=1.0", partial(bilateral_filter, sigma_color=1.0, sigma_space=5.0), (227, 119, 194)),
        Action("box 5x5", box_filter, (188, 189, 34)),
    ),
    description="the paper's nine denoising actions: grey level -1/+1, do nothing, 5x5 filters",
)
"""The paper's nine denoising actions (index = policy channel); also its salt-and-pepper and inpainting actions."""


# --- registry -------------------------------------------------------------------------------------------------------

_REGISTRY: dict[tuple[str, int], ActionSet] = {}
ENTRY_POINT_GROUP = "napari_pixelrl.action_sets"
"""Packages can provide action sets through this entry-point group (each entry an :class:`ActionSet`); they are
registered the first time a name is not found, so their policies load anywhere, napari included."""
_entry_points_loaded = False


def register_action_set(action_set: ActionSet, *, replace: bool = False) -> ActionSet:
    """Make ``action_set`` known by its name and version, so that policies trained with it can be loaded.

    Registering the same object twice is harmless; a different set under a name and version already taken is an
    error unless ``replace`` (change the version instead when the actions changed).

    Raises
    ------
    ValueError
        If the name and version are taken by another set.
    """
    key = (action_set.name, action_set.version)
    known = _REGISTRY.get(key)
    if known is not None and known is not action_set and not replace:
        raise ValueError(
            f"action set {action_set.name!r} v{action_set.version} is already registered; give yours another name "
            "or version (or pass replace=True)"
        )
    _REGISTRY[key] = action_set
    return action_set


def registered_action_sets() -> list[ActionSet]:
    """Every registered action set (the latest version of each name), sorted by name."""
    _load_entry_points()
    latest: dict[str, ActionSet] = {}
    for (name, version), action_set in _REGISTRY.items():
        if name not in latest or version > latest[name].version:
            latest[name] = action_set
    return [latest[name] for name in sorted(latest)]


def get_action_set(name: str, version: int | None = None) -> ActionSet:
    """Look up a registered action set by name and version (``None``: the latest), with a clear error for
    unknown ones."""
    found = _lookup(name, version)
    if found is None:
        _load_entry_points()
        found = _lookup(name, version)
    if found is None:
        known = ", ".join(f"{n!r} v{v}" for n, v in sorted(_REGISTRY))
        raise ValueError(
            f"unknown action set {name!r} version {version}; this napari-pixelrl knows {known}. A custom set must be "
            "registered (napari_pixelrl.api.register_action_set) before its policies are loaded or trained; a "
            "checkpoint from a newer napari-pixelrl may need an upgrade."
        )
    return found


def _lookup(name: str, version: int | None) -> ActionSet | None:
    if version is not None:
        return _REGISTRY.get((name, version))
    versions = [v for n, v in _REGISTRY if n == name]
    return _REGISTRY[(name, max(versions))] if versions else None


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            action_set = entry.load()
        except Exception as err:  # a broken third-party package must not break ours
            warnings.warn(f"could not load action set {entry.name!r} from {entry.value}: {err}", stacklevel=2)
            continue
        if isinstance(action_set, ActionSet):
            register_action_set(action_set, replace=True)
        else:
            warnings.warn(f"entry point {entry.name!r} ({entry.value}) is not an ActionSet", stacklevel=2)


register_action_set(DENOISE)


def _regions_with(mask: torch.Tensor, block: int) -> list[tuple[slice, slice]]:
    """Bounding boxes (pixels) of the groups of touching cells of a ``block``-pixel grid over ``mask`` ``(B, H, W)``
    in which any image of the batch has a pixel of the mask."""
    height, width = mask.shape[1:]
    grid = F.pad(mask.any(0)[None, None].float(), (0, -width % block, 0, -height % block))
    cells = (F.max_pool2d(grid, block)[0, 0] > 0).cpu().numpy()
    groups, _ = ndimage.label(cells, structure=np.ones((3, 3)))
    return [
        (
            slice(rows.start * block, min(rows.stop * block, height)),
            slice(cols.start * block, min(cols.stop * block, width)),
        )
        for rows, cols in ndimage.find_objects(groups)
    ]


def _apply_in_regions(
    apply: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    regions: list[tuple[slice, slice]],
    crops: list[tuple[slice, slice]],
) -> torch.Tensor:
    """``apply(image)`` in the given regions, each computed on its crop (the region and a halo around it, within the
    image: :func:`~.tiling.grown`); elsewhere ``image``. Equal to ``apply(image)`` in the regions if ``apply`` looks no
    farther than the halo: within the halo of a crop's edge the crop's own border rule differs from the image's."""
    out = image.clone()
    for (rows, cols), (crop_rows, crop_cols) in zip(regions, crops, strict=True):
        result = apply(image[..., crop_rows, crop_cols])
        top, left = rows.start - crop_rows.start, cols.start - crop_cols.start
        out[..., rows, cols] = result[..., top : top + rows.stop - rows.start, left : left + cols.stop - cols.start]
    return out


def apply_actions(
    image: torch.Tensor, action_map: torch.Tensor, action_set: ActionSet, block: int | None = None
) -> torch.Tensor:
    """Give every pixel the result of its own action.

    Parameters
    ----------
    image : torch.Tensor
        Current state, ``(B, C, H, W)`` float with ``C = action_set.channels``.
    action_map : torch.Tensor
        Action index per pixel, ``(B, H, W)`` integer, values in ``[0, len(action_set))``.
    action_set : ActionSet
        The actions the indices refer to.
    block : int, optional
        Compute an action that few pixels chose only around them: in the bounding boxes of the groups of touching
        cells of a ``block``-pixel grid that hold them, each with a halo of ``action_set.radius`` pixels (where
        those crops cover less than half the image; else on the whole image). The same result up to float
        rounding, for a fraction of the cost at inference, where a later step may send a few hundred clustered
        pixels to an expensive action such as a CNN estimate. ``None``: whole images.

    Returns
    -------
    torch.Tensor
        Next state, ``(B, C, H, W)``: ``out[b, :, y, x] = action_set[action_map[b, y, x]](image)[b, :, y, x]``.
        Candidates are computed only for the actions that appear in ``action_map``.
    """
    if image.ndim != 4 or image.shape[1] != action_set.channels:
        raise ValueError(
            f"action set {action_set.name!r} works on (B, {action_set.channels}, H, W) states, got {tuple(image.shape)}"
        )
    if action_map.shape != (image.shape[0], *image.shape[2:]):
        raise ValueError(f"action_map shape {tuple(action_map.shape)} does not match image {tuple(image.shape)}")
    chosen = torch.unique(action_map).tolist()
    if chosen[0] < 0 or chosen[-1] >= len(action_set):
        raise ValueError(f"action indices must lie in [0, {len(action_set)}), got {chosen[0]}..{chosen[-1]}")
    if len(chosen) == 1:
        return action_set.actions[chosen[0]].apply(image)
    candidates = torch.stack([_candidate(image, action_map, action_set, a, block) for a in chosen])  # (K, B, C, H, W)
    slot = torch.full((len(action_set),), -1, dtype=torch.long, device=image.device)
    slot[chosen] = torch.arange(len(chosen), device=image.device)
    index = slot[action_map.long()].unsqueeze(1).unsqueeze(0)  # (1, B, 1, H, W)
    return candidates.gather(0, index.expand(1, *image.shape)).squeeze(0)


def _candidate(
    image: torch.Tensor, action_map: torch.Tensor, action_set: ActionSet, action: int, block: int | None
) -> torch.Tensor:
    """Action ``action``'s result on ``image``, exact where ``action_map`` chose it (see :func:`apply_actions`)."""
    apply = action_set.actions[action].apply
    if block is None:
        return apply(image)
    halo = max(action_set.radius, 2)  # filters need 3x3 crops
    height, width = image.shape[-2:]
    regions = _regions_with(action_map == action, block)
    crops = [grown(region, halo, height, width) for region in regions]
    covered = sum((rows.stop - rows.start) * (cols.stop - cols.start) for rows, cols in crops)
    return _apply_in_regions(apply, image, regions, crops) if covered < height * width / 2 else apply(image)
