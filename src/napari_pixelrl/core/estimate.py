"""Beyond the paper: the paper's nine denoising actions plus one learned estimate that each pixel may take.

Our policies trained with the paper's nine actions stay below BM3D (docs/training.md), while the residual denoiser
we train as their trunk beats BM3D on its own. The action sets here add a tenth action, *CNN estimate*: the image
that such a denoiser (the paper's 7-layer dilated network, trunk → value branch → head, trained for one σ or one
noise kind; :func:`~.model.denoised`) makes of the current state. At the first step the state is the noisy input,
so the action gives the denoiser's estimate of it; the policy then chooses, pixel by pixel and step by step, between
that estimate, the paper's filters and its ±1 corrections, and every choice is named in the action map as before.

The action is a pure function of the current state like every other (so tiles still give the untiled result: it
looks :func:`estimate_radius` pixels away), and runs in float32 whatever the policy network's precision; training
treats its result as a fixed image (no gradient flows through the denoiser, whose weights never change). The
denoisers' weights ship in ``weights/estimators/``, each a checkpoint with its own training record, and are read
the first time the action runs. These sets are shipped beside the paper's ``denoise`` set, never instead of it.
"""

from __future__ import annotations

import itertools
import re
import threading
from pathlib import Path

import torch
import torch.nn.functional as F

from .actions import DENOISE, Action, ActionSet, get_action_set, register_action_set
from .config import ModelConfig
from .model import ORIENTATIONS, PixelRLNet, denoised

__all__ = [
    "ESTIMATORS_DIR",
    "LEVELS",
    "MEASURED_LEVELS",
    "SELF_ENSEMBLES",
    "CNNEstimate",
    "MeasuredEstimate",
    "cnn_action_set",
    "cnn_levels_action_set",
    "estimate_action",
    "estimate_radius",
    "estimator_file",
    "level_weights",
    "measured_action_set",
]

ESTIMATORS_DIR = Path(__file__).parent / "weights" / "estimators"
"""Shipped denoisers: ``trunk-<σ>.safetensors`` and ``trunk-<noise kind>.safetensors``, made by
``recipes/trunk-<σ>.json`` and ``recipes/trunk-<noise kind>.json``; a later, better denoiser for the same noise
ships beside the first as ``trunk-<noise>.v<N>.safetensors`` (:func:`estimator_file`)."""


def estimator_file(noise: int | str, version: int = 1) -> Path:
    """The shipped denoiser behind version ``version`` of the set ``denoise-cnn-<noise>``.

    Version 1 is ``trunk-<noise>.safetensors``; version ``N > 1`` is ``trunk-<noise>.v<N>.safetensors``. A new
    denoiser changes what the action does, so it comes as a new version of the set beside the old one: policies
    trained with the old denoiser keep loading and running with it.
    """
    return ESTIMATORS_DIR / (f"trunk-{noise}.safetensors" if version == 1 else f"trunk-{noise}.v{version}.safetensors")


def _parse_estimator_file(path: Path) -> tuple[str, int]:
    """``trunk-15.safetensors`` → ``("15", 1)``, ``trunk-15.v2.safetensors`` → ``("15", 2)``."""
    match = re.fullmatch(r"trunk-(.+?)(?:\.v(\d+))?", path.stem)
    if match is None:
        raise ValueError(f"{path.name} is not named trunk-<noise>[.v<N>].safetensors")
    return match[1], int(match[2] or 1)


def estimate_radius(config: ModelConfig) -> int:
    """How far (pixels) a pixel of :func:`~.model.denoised` looks: every 3x3 convolution adds its dilation."""
    return sum(config.trunk_dilations) + sum(config.branch_dilations) + 1


class CNNEstimate:
    """The action "take the denoiser's estimate": ``state ↦ denoised(denoiser, state)``, float32, frozen weights.

    Parameters
    ----------
    path : path-like
        A checkpoint whose last stage trained the denoiser (``objective="denoiser"``). Read on first use; one copy
        of the network is kept per device.
    impulses_only : bool
        Replace only the pixels at an impulse value (0 or 1 and beyond) by the estimate and keep every other pixel,
        as a switching median filter does: for salt-and-pepper noise, which leaves the other pixels exact.
    orientations : int
        Average the denoiser's estimates of the state in this many orientations (1, 2, 4 or 8; quarter turns and
        mirror images, :func:`~.model.denoised`): a better estimate for ``orientations`` times the cost.
    """

    def __init__(self, path: str | Path, impulses_only: bool = False, orientations: int = 1) -> None:
        if orientations not in ORIENTATIONS:
            raise ValueError(f"orientations must be one of {ORIENTATIONS}, got {orientations}")
        self.path = Path(path)
        self.impulses_only = impulses_only
        self.orientations = orientations
        self._models: dict[torch.device, PixelRLNet] = {}
        self._lock = threading.Lock()

    def _model(self, device: torch.device) -> PixelRLNet:
        with self._lock:
            if device not in self._models:
                from .checkpoint import load_checkpoint  # checkpoint.py looks action sets up: import it late

                model = load_checkpoint(self.path).model.to(device, memory_format=torch.channels_last).eval()
                model.requires_grad_(False)
                self._models[device] = model
            return self._models[device]

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        model = self._model(image.device)
        with torch.no_grad(), torch.autocast(image.device.type, enabled=False):
            state = image.float().contiguous(memory_format=torch.channels_last)
            estimate = denoised(model, state, self.orientations)
        estimate = estimate.to(image.dtype).contiguous()
        if self.impulses_only:
            estimate = torch.where((image <= 0) | (image >= 1), estimate, image)
        return estimate


_COLORS = {
    "15": (158, 218, 229),
    "25": (23, 190, 207),
    "50": (0, 105, 125),
    "blind": (255, 200, 0),
    "measured": (0, 200, 120),
}
"""Action-map colours of the estimates (by ``str(noise)``: one colour per denoiser in every set, distinct within
:func:`cnn_levels_action_set`); other kinds take the σ = 25 one's cyan."""


_TRAINED_FOR = {"blind": "blind Gaussian (σ 5-55)", "text": "overlaid-text"}
"""How a set's description names a denoiser trained for something other than one σ or one noise kind."""


def _trained_for(noise: int | str) -> str:
    if str(noise).isdigit():
        return f"σ={noise}"
    return _TRAINED_FOR.get(str(noise), f"{noise} noise")


def estimate_action(noise: int | str, path: str | Path | None = None, orientations: int = 1) -> Action:
    """The action "take the estimate of our denoiser for ``noise``" (``cnn estimate sigma=25``, ``... blind``).

    Parameters
    ----------
    noise : int or str
        What the denoiser was trained for: a Gaussian σ (0-255 scale, e.g. ``25``), ``"blind"`` (Gaussian σ 5-55) or
        a noise kind (e.g. ``"salt-and-pepper"``, ``"text"``). For ``"salt-and-pepper"`` the estimate replaces only
        the pixels at an impulse value (``CNNEstimate(impulses_only=True)``).
    path : path-like, optional
        The denoiser's checkpoint; default ``estimator_file(noise)``.
    orientations : int
        Orientations the estimate averages (:class:`CNNEstimate`).
    """
    path = Path(path) if path is not None else estimator_file(noise)
    what = f"sigma={noise}" if str(noise).isdigit() else str(noise)
    estimate = CNNEstimate(path, impulses_only=noise == "salt-and-pepper", orientations=orientations)
    return Action(f"cnn estimate {what}", estimate, _COLORS.get(str(noise), _COLORS["25"]))


def _estimate_set(
    name: str, estimates: tuple[Action, ...], trained_for: str, version: int = 1, orientations: int = 1
) -> ActionSet:
    plural = "s" if len(estimates) > 1 else ""
    averaged = f", averaged over {orientations} orientations" if orientations > 1 else ""
    return ActionSet(
        name=name,
        version=version,
        actions=(*DENOISE.actions, *estimates),
        radius=max(DENOISE.radius, estimate_radius(ModelConfig())),
        description=f"the paper's nine denoising actions and the estimate{plural} of our {trained_for} CNN "
        f"denoiser{plural}{averaged} (beyond the paper)",
    )


SELF_ENSEMBLES: dict[str, dict[int, int]] = {"15": {4: 3}, "50": {3: 2}}
"""Versions of ``denoise-cnn-<noise>`` whose estimate is a shipped denoiser averaged over its eight orientations
(:func:`~.model.denoised`), by noise: ``{set version: the denoiser's version}``. On BSD68 the σ-15 denoiser v3
scores 31.38 dB once and 31.46 dB averaged over eight orientations, the σ-50 denoiser v2 25.98 and 26.04 dB
(docs/training.md)."""


def _denoiser_of(noise: int | str, version: int) -> tuple[Path, int]:
    """The shipped denoiser file behind version ``version`` of ``denoise-cnn-<noise>``, and its orientations."""
    denoiser = SELF_ENSEMBLES.get(str(noise), {}).get(version)
    if denoiser is None:
        return estimator_file(noise, version), 1
    return estimator_file(noise, denoiser), max(ORIENTATIONS)


def cnn_action_set(noise: int | str, path: str | Path | None = None, version: int = 1) -> ActionSet:
    """The paper's nine denoising actions and the estimate of one of our trunks (``denoise-cnn-<noise>``).

    Parameters
    ----------
    noise : int or str
        What the denoiser was trained for (:func:`estimate_action`); names the set (``denoise-cnn-25``).
    path : path-like, optional
        The denoiser's checkpoint; default ``estimator_file(noise, version)``, or for a version in
        :data:`SELF_ENSEMBLES` the file of the denoiser it averages.
    version : int
        The set's version: one per shipped denoiser for ``noise`` (:func:`estimator_file`), and one per
        self-ensemble of a shipped denoiser (:data:`SELF_ENSEMBLES`, eight orientations).
    """
    denoiser_path, orientations = _denoiser_of(noise, version)
    estimate = estimate_action(noise, path if path is not None else denoiser_path, orientations)
    return _estimate_set(f"denoise-cnn-{noise}", (estimate,), _trained_for(noise), version, orientations)


LEVELS: tuple[int | str, ...] = (15, 25, 50, "blind")
"""The Gaussian denoisers of :func:`cnn_levels_action_set`."""


def cnn_levels_action_set(noises: tuple[int | str, ...] = LEVELS) -> ActionSet:
    """The paper's nine actions and the estimates of several Gaussian denoisers, for a policy blind to σ.

    By default each pixel may take the estimate of the σ = 15, 25 or 50 denoiser or of the blind one
    (``denoise-cnn-15-25-50-blind``, v1): a blind policy that tells the noise level from the image can then take the
    matched denoiser's estimate, and between levels the blind one's, each choice named in the action map.

    Parameters
    ----------
    noises : tuple of int or str
        The denoisers, in channel order after the paper's nine; they name the set. Each estimate is the action of
        version 1 of the registered one-estimate set ``denoise-cnn-<noise>`` (the denoisers the first
        ``gaussian-blind-cnn`` was trained with, session 20), so both sets share one loaded copy of each denoiser.
    """
    name = "denoise-cnn-" + "-".join(str(noise) for noise in noises)
    trained_for = ", ".join(_trained_for(noise) for noise in noises)
    estimates = tuple(get_action_set(f"denoise-cnn-{noise}", 1).actions[-1] for noise in noises)
    return _estimate_set(name, estimates, trained_for)


def level_weights(sigma: torch.Tensor, levels: tuple[float, ...]) -> torch.Tensor:
    """Linear interpolation weights of ``sigma`` between the sorted ``levels`` (clamped at both ends).

    ``sigma`` of any shape gives ``(len(levels), *sigma.shape)`` weights, each in [0, 1], summing to 1 along the first
    axis: ``Σ_i w_i · f(levels[i])`` is ``numpy.interp(sigma, levels, f(levels))`` for any ``f``.
    """
    if len(levels) < 2 or any(b <= a for a, b in itertools.pairwise(levels)):
        raise ValueError(f"levels must be at least two increasing values, got {levels}")
    sigma = sigma.clamp(levels[0], levels[-1])
    weights = []
    for i, level in enumerate(levels):
        rising = (sigma - levels[i - 1]) / (level - levels[i - 1]) if i > 0 else torch.ones_like(sigma)
        falling = (levels[i + 1] - sigma) / (levels[i + 1] - level) if i < len(levels) - 1 else torch.ones_like(sigma)
        weights.append(torch.minimum(rising, falling).clamp(0, 1))
    return torch.stack(weights)


class MeasuredEstimate:
    """The action "take the estimate of the denoiser matched to the noise measured around the pixel".

    The noise level around each pixel is measured as ``scale`` times the root mean square, over a
    ``window x window`` neighbourhood, of the noise that the blind denoiser (``meter``) finds in the state; each
    pixel then takes the per-σ denoisers' estimates blended by :func:`level_weights` at that level. A policy blind
    to the noise level thereby has the matched denoiser's estimate as one action. The measurement is local, so the
    action looks ``estimate_radius + window // 2`` pixels away and tiles still give the untiled result.

    The blind denoiser leaves a little of the noise in its estimate, so the raw measure is 2-8% below the true σ,
    and a denoiser for too low a σ leaves noise behind: the default ``scale`` and ``window`` are those that gave the
    best estimate, summed over σ = 15, 25 and 50, on the last 16 training images of BSD432 (docs/training.md).

    Parameters
    ----------
    levels : dict of float to CNNEstimate
        The per-σ denoisers, by the σ (0-255 scale) they were trained for.
    meter : CNNEstimate
        A blind denoiser whose residual measures the noise.
    window : int
        Side (pixels, odd) of the neighbourhood the level is measured over.
    scale : float
        Calibration of the measure.
    """

    def __init__(
        self, levels: dict[float, CNNEstimate], meter: CNNEstimate, window: int = 33, scale: float = 1.05
    ) -> None:
        if window < 1 or window % 2 == 0:
            raise ValueError(f"window must be an odd number of pixels, got {window}")
        self.levels = dict(sorted(levels.items()))
        self.meter, self.window, self.scale = meter, window, scale

    def noise_level(self, image: torch.Tensor) -> torch.Tensor:
        """The measured noise level of ``image`` (``(B, C, H, W)`` in [0, 1]) at each pixel, on the 0-255 scale."""
        residual = (image - self.meter(image)).float()
        mean_square = F.avg_pool2d(
            residual.square(), self.window, stride=1, padding=self.window // 2, count_include_pad=False
        )
        return 255.0 * self.scale * mean_square.sqrt()

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        weights = level_weights(self.noise_level(image), tuple(self.levels))
        # A level of weight zero at every pixel adds nothing, so its denoiser is not run (on an image of one noise
        # level, most of them). The weights sum to one at each pixel, so at least one level runs.
        pairs = zip(weights, self.levels.values(), strict=True)
        blend = sum(w * estimate(image).float() for w, estimate in pairs if w.any())
        return blend.to(image.dtype)


MEASURED_LEVELS: dict[int, dict[int, int]] = {
    1: {15: 3, 25: 3, 50: 1},
    2: {5: 1, 15: 3, 25: 3, 35: 1, 50: 1},
    3: {5: 1, 15: 4, 25: 3, 35: 1, 50: 1},
}
"""By version of ``denoise-cnn-measured``: the per-σ denoisers (σ → version of ``denoise-cnn-<σ>``) that
:func:`measured_action_set` blends. Version 2 adds σ = 5 and 35: between two levels the blend of an estimate that
leaves noise and one that smooths too much is worse than either (v1 at σ = 37: 24.76 dB, the σ-50 denoiser 24.87, the
blind one 25.47), and below σ = 15 v1 had only the σ-15 denoiser (at σ = 5 2.4 dB below the blind one). Version 3
takes the σ-15 estimate averaged over eight orientations (``denoise-cnn-15`` v4, :data:`SELF_ENSEMBLES`): put in for
v2's without training, it raised the blind policy by 0.05-0.07 dB on each of the first BSD68 images at σ = 15."""


def measured_action_set(version: int = max(MEASURED_LEVELS)) -> ActionSet:
    """The paper's nine actions and the matched estimate at the noise level measured around each pixel.

    ``denoise-cnn-measured``: for a policy blind to σ. The tenth action is ``cnn estimate sigma measured``
    (:class:`MeasuredEstimate`: the per-σ denoisers of :data:`MEASURED_LEVELS` for this version, blended by the
    noise level that the blind denoiser measures around each pixel), so a blind policy has one strong estimate to
    take, as the matched ``denoise-cnn-<σ>`` policies do (offered the blind estimate beside it, a policy took that one
    first: docs/training.md). The denoisers are those of the registered one-estimate sets (one loaded copy each).

    Parameters
    ----------
    version : int
        Which levels (:data:`MEASURED_LEVELS`); a policy keeps the version it was trained with.
    """
    blind = get_action_set("denoise-cnn-blind", 1).actions[-1].apply
    chosen = MEASURED_LEVELS[version]
    levels = {s: get_action_set(f"denoise-cnn-{s}", v).actions[-1].apply for s, v in chosen.items()}
    estimate = MeasuredEstimate(levels, blind)
    averaged = [s for s, level in levels.items() if level.orientations > 1]
    sigmas = ", ".join(str(s) for s in chosen)
    if averaged:
        sigmas += f" (σ={', '.join(str(s) for s in averaged)} averaged over {max(ORIENTATIONS)} orientations)"
    return ActionSet(
        name="denoise-cnn-measured",
        version=version,
        actions=(*DENOISE.actions, Action("cnn estimate sigma measured", estimate, _COLORS["measured"])),
        radius=max(DENOISE.radius, estimate_radius(ModelConfig()) + estimate.window // 2),
        description=f"the paper's nine denoising actions and the estimate of our σ={sigmas} CNN denoisers matched "
        "to the noise level that our blind one measures around each pixel (beyond the paper)",
    )


for _file in sorted(ESTIMATORS_DIR.glob("trunk-*.safetensors")):
    _noise, _version = _parse_estimator_file(_file)
    register_action_set(cnn_action_set(_noise, _file, _version))
for _noise, _versions in SELF_ENSEMBLES.items():
    for _version, _denoiser in _versions.items():
        if estimator_file(_noise, _denoiser).is_file():
            register_action_set(cnn_action_set(_noise, version=_version))
if all(estimator_file(noise).is_file() for noise in LEVELS):
    register_action_set(cnn_levels_action_set())
for _version, _levels in MEASURED_LEVELS.items():
    if estimator_file("blind").is_file() and all(_denoiser_of(s, v)[0].is_file() for s, v in _levels.items()):
        register_action_set(measured_action_set(_version))
