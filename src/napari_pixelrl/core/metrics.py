"""Image quality metrics with the paper's protocol: clip to [0, 1], round to 8 bits, compare with peak 255."""

from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity

__all__ = ["psnr", "ssim", "to_uint8"]


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Clip a [0, 1] image and round it to 8 bits as the paper's test script does: ``uint8(x·255 + 0.5)``."""
    return (np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def psnr(restored: np.ndarray, clean: np.ndarray) -> float:
    """PSNR in dB between two [0, 1] images after :func:`to_uint8`, peak 255 (``inf`` when equal)."""
    a, b = to_uint8(restored).astype(np.float64), to_uint8(clean).astype(np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    mse = np.mean((a - b) ** 2)
    return float("inf") if mse == 0 else float(10.0 * np.log10(255.0**2 / mse))


def ssim(restored: np.ndarray, clean: np.ndarray) -> float:
    """SSIM (scikit-image defaults, 7x7 window) between two [0, 1] images after :func:`to_uint8`."""
    return float(structural_similarity(to_uint8(restored), to_uint8(clean), data_range=255))
