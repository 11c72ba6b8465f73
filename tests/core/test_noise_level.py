"""Noise estimates against the noise that was added, and the default intensity range of lazy arrays."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from skimage import data as skdata

from napari_pixelrl import api
from napari_pixelrl.core.config import NoiseModel
from napari_pixelrl.core.noise import degrade
from napari_pixelrl.core.noise_level import estimate_poisson_gaussian, estimate_sigma

CLEAN = skdata.camera()[100:400, 100:400] / 255.0


@pytest.mark.parametrize("sigma", [5, 15, 25, 50])
def test_sigma_estimate_is_within_ten_percent_of_the_added_noise(sigma):
    noisy = CLEAN + np.random.default_rng(sigma).normal(0, sigma / 255, CLEAN.shape)
    assert abs(255 * estimate_sigma(noisy) - sigma) < 0.1 * sigma + 1.5  # texture adds about 1


def test_pure_noise_gives_its_sigma_whatever_the_units():
    noise = np.random.default_rng(0).normal(0, 7.0, (300, 300))  # σ = 7 in arbitrary units
    assert abs(estimate_sigma(noise) - 7.0) < 0.2


@pytest.mark.parametrize("gain", [0.01, 0.05, 0.2])
def test_poisson_gaussian_gain_is_within_twenty_percent(gain):
    clean = CLEAN.astype(np.float32)
    noisy = degrade(clean, NoiseModel(kind="poisson-gaussian", gain=gain, sigma=2.0), np.random.default_rng(0))
    found, _ = estimate_poisson_gaussian(noisy)
    assert abs(found - gain) < 0.2 * gain


def test_lazy_arrays_read_in_bands_get_the_in_memory_default_range():
    rng = np.random.default_rng(1)
    image = rng.integers(500, 3000, (2, 45, 37)).astype(np.uint16)
    image[1, 20, 5] = 65535  # a hot pixel on a band's edge row (bands of 10 rows)
    image[0, 29:31, 7] = 4000  # a two-pixel structure across two bands
    stored = zarr.array(image, chunks=(1, 10, 37))
    assert api.default_intensity_range(stored) == api.default_intensity_range(image)
    assert api.default_intensity_range(image)[1] == 4000.0
    floats = (CLEAN + rng.normal(0, 25 / 255, CLEAN.shape)).astype(np.float32)
    assert api.default_intensity_range(zarr.array(floats, chunks=(7, 300))) == (0.0, 1.0)
