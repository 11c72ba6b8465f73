"""Synthetic degradations, drawn from a seeded NumPy generator so that training and benchmarks are reproducible
and independent of the device the network runs on."""

from __future__ import annotations

import numpy as np

from .config import Level, NoiseModel

__all__ = ["add_gaussian_noise", "degrade"]


def add_gaussian_noise(clean: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """``clean + N(0, sigma/255)`` as float32, not clipped (the paper's test protocol).

    Parameters
    ----------
    clean : np.ndarray
        Image in [0, 1].
    sigma : float
        Standard deviation on the 0-255 scale.
    rng : np.random.Generator
        Source of the noise; draw images in a fixed order for reproducible results.
    """
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    noise = rng.normal(0.0, sigma, size=np.shape(clean)) / 255.0
    return (np.asarray(clean, dtype=np.float32) + noise.astype(np.float32)).astype(np.float32)


def _draw(level: Level, rng: np.random.Generator) -> float:
    if isinstance(level, tuple):
        low, high = level
        return low if low == high else float(rng.uniform(low, high))
    return level


def _degrade_one(clean: np.ndarray, noise: NoiseModel, rng: np.random.Generator) -> np.ndarray:
    if noise.kind == "salt-and-pepper":
        density = _draw(noise.density, rng)
        hit = rng.random(clean.shape) < density
        salt = rng.random(clean.shape) < 0.5
        return np.where(hit, salt.astype(np.float32), clean).astype(np.float32)
    signal = np.asarray(clean, dtype=np.float32)
    if noise.kind == "poisson-gaussian":
        gain = _draw(noise.gain, rng)
        if gain > 0:
            signal = (gain * rng.poisson(np.clip(signal, 0.0, None) / gain)).astype(np.float32)
    return add_gaussian_noise(signal, _draw(noise.sigma or 0.0, rng), rng)


def degrade(clean: np.ndarray, noise: NoiseModel, rng: np.random.Generator) -> np.ndarray:
    """Apply ``noise`` to clean images in [0, 1]; the result is float32 and not clipped.

    Parameters
    ----------
    clean : np.ndarray
        One image ``(H, W)``, or a batch ``(B, H, W)`` / ``(B, 1, H, W)`` whose images each draw their own
        parameters when the model has ranges (a blind policy's training data).
    noise : NoiseModel
        What to apply. A fixed-σ Gaussian on one image draws exactly as :func:`add_gaussian_noise`.
    rng : np.random.Generator
        Source of all randomness.
    """
    clean = np.asarray(clean, dtype=np.float32)
    if clean.ndim == 2:
        return _degrade_one(clean, noise, rng)
    if clean.ndim not in (3, 4):
        raise ValueError(f"expected (H, W), (B, H, W) or (B, 1, H, W) images, got shape {clean.shape}")
    return np.stack([_degrade_one(image, noise, rng) for image in clean])
