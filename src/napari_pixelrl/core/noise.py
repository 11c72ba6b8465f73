"""Synthetic degradations, drawn from a seeded NumPy generator so benchmarks are reproducible."""

from __future__ import annotations

import numpy as np

__all__ = ["add_gaussian_noise"]


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
