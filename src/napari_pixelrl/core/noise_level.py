"""How noisy an image is, and whether a policy was trained for that much noise.

A policy trained for σ = 50 smooths a σ = 5 image away; one trained for σ = 15 leaves most of σ = 50 in place. The
estimates here work on the image as the network sees it (mapped to [0, 1]) and say, in the policy's own units,
when the noise lies outside what the policy was trained for, with the shipped policy that fits as the advice.

* Gaussian σ: Immerkær's Laplacian-difference operator (J. Immerkær, "Fast noise variance estimation", CVIU
  1996), with the median of its absolute response instead of the mean, so that edges and texture count little.
* Poisson-Gaussian (``var = gain · x + (σ/255)²``): the same operator's noise level in bins of local brightness,
  and a least-squares line through the variances (the idea of Foi et al., IEEE TIP 2008, in its simplest form).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .config import Level, NoiseModel

__all__ = ["NoiseCheck", "centre_window", "check_noise", "estimate_poisson_gaussian", "estimate_sigma"]

_LAPLACIAN_DIFFERENCE = np.array([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])
_MAD_TO_SIGMA = 1.0 / (0.6745 * 6.0)  # median |N(0, 36 σ²)| = 0.6745 · 6σ
_TOLERANCE = 1.5
"""A level counts as trained for when it is within this factor of the policy's level (or range)."""
_WINDOW = 512
"""Side of the centre window the estimates look at (enough pixels; bounded time on huge planes)."""


def centre_window(shape: tuple[int, int]) -> tuple[slice, slice]:
    """Rows and columns of the centre window (at most 512x512) of a plane of ``shape`` that the estimates use."""
    rows, cols = (slice(max(0, (n - _WINDOW) // 2), max(0, (n - _WINDOW) // 2) + _WINDOW) for n in shape[-2:])
    return rows, cols


def _centre(plane: np.ndarray) -> np.ndarray:
    if plane.ndim != 2 or min(plane.shape) < 3:
        raise ValueError(f"noise estimation needs a 2-D plane of at least 3x3 pixels, got shape {plane.shape}")
    return np.asarray(plane[centre_window(plane.shape)], dtype=np.float64)


def _noise_response(plane: np.ndarray) -> np.ndarray:
    """``|I ∗ M| / (0.6745 · 6)`` on the valid interior: for pure noise its median is σ."""
    return np.abs(ndimage.correlate(plane, _LAPLACIAN_DIFFERENCE)[1:-1, 1:-1]) * _MAD_TO_SIGMA


def estimate_sigma(plane: np.ndarray) -> float:
    """Gaussian noise σ of a 2-D plane, in the plane's own units (multiply by 255 for a [0, 1] plane's σ/255).

    Parameters
    ----------
    plane : np.ndarray
        ``(H, W)``, at least 3x3; a centre window of at most 512x512 pixels is looked at.
    """
    return float(np.median(_noise_response(_centre(plane))))


def estimate_poisson_gaussian(plane: np.ndarray, bins: int = 8) -> tuple[float, float]:
    """``(gain, sigma)`` of Poisson-Gaussian noise in a [0, 1] plane: ``var = gain · x + (sigma/255)²``.

    ``gain`` is the intensity of one photon on the [0, 1] scale, ``sigma`` the read noise on the 0-255 scale (as
    in :class:`~napari_pixelrl.core.config.NoiseModel`); both are clipped at 0.
    """
    window = _centre(plane)
    response = _noise_response(window)
    brightness = ndimage.uniform_filter(window, 3)[1:-1, 1:-1]
    edges = np.quantile(brightness, np.linspace(0.0, 1.0, bins + 1))
    which = np.clip(np.searchsorted(edges, brightness, side="right") - 1, 0, bins - 1)
    means, variances = [], []
    for b in range(bins):
        inside = which == b
        if inside.sum() >= 50:
            means.append(float(brightness[inside].mean()))
            variances.append(float(np.median(response[inside])) ** 2)
    if len(means) < 2 or np.ptp(means) <= 0:
        return 0.0, 255.0 * float(np.sqrt(np.mean(variances)))
    slope, intercept = np.polyfit(means, variances, 1)
    return max(float(slope), 0.0), 255.0 * float(np.sqrt(max(float(intercept), 0.0)))


@dataclass(frozen=True)
class NoiseCheck:
    """What :func:`check_noise` found."""

    estimate: dict[str, float]
    """The image's noise, by parameter: ``{"sigma": ...}`` (0-255 scale), plus ``"gain"`` for Poisson-Gaussian."""
    trained: dict[str, Level]
    """The policy's noise levels, by the same parameters."""
    fits: bool
    """Whether the estimate lies within a factor 1.5 of what the policy was trained for (σ; for Poisson-Gaussian
    the gain, since the read noise is estimated poorly beside shot noise)."""
    advice: str
    """One sentence for the user: the estimate, and when it does not fit, what to use instead."""


def _fits(value: float, level: Level) -> bool:
    low, high = level if isinstance(level, tuple) else (level, level)
    return low / _TOLERANCE <= value <= high * _TOLERANCE


def _describe(level: Level) -> str:
    return f"{level[0]:g}-{level[1]:g}" if isinstance(level, tuple) else f"{level:g}"


def check_noise(plane: np.ndarray, noise_model: NoiseModel, shipped: dict[str, NoiseModel]) -> NoiseCheck | None:
    """Estimate the noise of a plane mapped to [0, 1] and compare it with what a policy was trained for.

    Parameters
    ----------
    plane : np.ndarray
        ``(H, W)`` in [0, 1] as the network sees it (after the intensity mapping).
    noise_model : NoiseModel
        The policy's (``policy.noise_model``).
    shipped : dict
        Shipped policy name → its noise model, to name the one that fits.

    Returns
    -------
    NoiseCheck or None
        ``None`` for policies whose degradation has no noise level (salt-and-pepper, text, fading).
    """
    if noise_model.kind == "gaussian" and noise_model.sigma is not None:
        estimate = {"sigma": 255.0 * estimate_sigma(plane)}
        trained: dict[str, Level] = {"sigma": noise_model.sigma}
    elif noise_model.kind == "poisson-gaussian" and noise_model.sigma is not None and noise_model.gain is not None:
        gain, sigma = estimate_poisson_gaussian(plane)
        estimate = {"gain": gain, "sigma": sigma}
        trained = {"gain": noise_model.gain, "sigma": noise_model.sigma}
    else:
        return None
    found = ", ".join(f"{name} ≈ {value:.3g}" for name, value in estimate.items())
    wanted = ", ".join(f"{name} {_describe(level)}" for name, level in trained.items())
    # Poisson-Gaussian: the gain decides (read noise is estimated poorly beside shot noise, and matters less)
    decisive = "gain" if "gain" in estimate else "sigma"
    fits = _fits(estimate[decisive], trained[decisive])
    if fits:
        return NoiseCheck(estimate, trained, True, f"noise {found}: within what the policy was trained for ({wanted})")
    if noise_model.kind == "gaussian":
        candidates = [
            (abs(np.log(estimate["sigma"] / _middle(model.sigma))), name)
            for name, model in shipped.items()
            if model.kind == "gaussian" and model.sigma is not None and _fits(estimate["sigma"], model.sigma)
        ]
        names = sorted(candidates)[:2]
        instead = " or ".join(name for _, name in names) if names else ""
        fix = f"try {instead}, or fine-tune a policy on your data" if instead else "fine-tune a policy on your data"
    else:
        fix = "fine-tune the policy on your own noisy images (Train panel or api.fine_tune)"
    return NoiseCheck(estimate, trained, False, f"noise {found}, but the policy was trained for {wanted}: {fix}")


def _middle(level: Level) -> float:
    return float(np.sqrt(level[0] * level[1])) if isinstance(level, tuple) else float(level)
