"""Sample data for napari's *File > Open Sample*: images bundled with scikit-image (no download), degraded with
seeded synthetic noise, each with its clean reference.

The noisy images are stored as 8-bit (rounded and clipped, as a camera would), so that the Restore widget's
default intensity mapping (0-255 for ``uint8``) is the one the policies were trained with.
"""

from __future__ import annotations

import numpy as np
from skimage import data

from ..core.config import NoiseModel
from ..core.noise import degrade_image

__all__ = [
    "CAMERA_NOISE",
    "CELL_NOISE",
    "CHELSEA_FADING",
    "COINS_TEXT",
    "MOON_IMPULSES",
    "camera_gaussian",
    "cell_poisson_gaussian",
    "chelsea_faded",
    "coins_text",
    "moon_salt_and_pepper",
]

CAMERA_NOISE = NoiseModel(kind="gaussian", sigma=25.0)
"""Noise of the natural-image sample: what the ``gaussian-25`` policy was trained for."""
CELL_NOISE = NoiseModel(kind="poisson-gaussian", gain=0.03, sigma=3.0)
"""Noise of the microscopy sample: about 33 photons at full brightness plus camera read noise of 3 grey levels,
inside the range that the ``poisson-gaussian`` policy was trained for."""
MOON_IMPULSES = NoiseModel(kind="salt-and-pepper", density=0.5)
"""Half the pixels black or white: for the ``salt-and-pepper`` policy."""
COINS_TEXT = NoiseModel(kind="text", density=0.15)
"""Random text over 15% of the image: for the ``text-removal`` policy."""
CHELSEA_FADING = NoiseModel(kind="fading", strength=0.15)
"""Faded colours (lower saturation and contrast, warm cast, lifted blacks): for the ``fading`` policy."""


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


def _noisy_and_clean(clean: np.ndarray, noise: NoiseModel, name: str, seed: int) -> list[tuple]:
    unit = clean.astype(np.float32) / 255.0
    noisy = _to_uint8(degrade_image(unit, noise, np.random.default_rng(seed)))
    return [
        (clean, {"name": f"{name} (clean)", "visible": False}, "image"),
        (noisy, {"name": f"{name} ({noise.describe()})"}, "image"),
    ]


def camera_gaussian() -> list[tuple]:
    """scikit-image's *camera* (512x512 grey) with Gaussian noise σ=25, and the clean image."""
    return _noisy_and_clean(data.camera(), CAMERA_NOISE, "camera", seed=0)


def cell_poisson_gaussian() -> list[tuple]:
    """scikit-image's *cell* (a light-microscopy image, 660x550) with low-light Poisson-Gaussian noise, and the
    clean image."""
    return _noisy_and_clean(data.cell(), CELL_NOISE, "cell", seed=0)


def moon_salt_and_pepper() -> list[tuple]:
    """scikit-image's *moon* (512x512 grey) with half its pixels set to black or white, and the clean image."""
    return _noisy_and_clean(data.moon(), MOON_IMPULSES, "moon", seed=0)


def coins_text() -> list[tuple]:
    """scikit-image's *coins* (303x384 grey) with random text drawn over 15% of it, and the clean image."""
    return _noisy_and_clean(data.coins(), COINS_TEXT, "coins", seed=0)


def chelsea_faded() -> list[tuple]:
    """scikit-image's *chelsea* (a 300x451 RGB photograph) with faded colours, and the original."""
    return _noisy_and_clean(data.chelsea(), CHELSEA_FADING, "chelsea", seed=0)
