"""Our restore with the authors' release equals an independent NumPy + OpenCV episode on BSD68 crops."""

from __future__ import annotations

import numpy as np
import pytest
import reference_pixelrl
from conftest import BSD68

from napari_pixelrl import api
from napari_pixelrl.core.io import read_image
from napari_pixelrl.core.metrics import psnr
from napari_pixelrl.core.noise import add_gaussian_noise

CROPS = [("101085.jpg", 40, 60), ("102061.jpg", 150, 200), ("108005.jpg", 10, 10)]
SIZE = 72


@pytest.mark.parametrize("sigma", [15, 25, 50])
def test_restore_with_release_equals_numpy_opencv_episode(release_dir, sigma):
    policy = api.load_policy(release_dir / f"pretrained_{sigma}.npz")
    with np.load(release_dir / f"pretrained_{sigma}.npz") as npz:
        weights = {key: npz[key] for key in npz.files}
    rng = np.random.default_rng(0)
    ours_psnr, reference_psnr, agreement = [], [], []
    for name, top, left in CROPS:
        clean = read_image(BSD68 / name)[top : top + SIZE, left : left + SIZE].astype(np.float32) / 255
        noisy = add_gaussian_noise(clean, sigma, rng)
        ours = api.restore(noisy, policy, device="cpu", intensity_range=(0, 1))
        expected, expected_actions = reference_pixelrl.run_episode(weights, noisy)
        ours_psnr.append(psnr(ours.image, clean))
        reference_psnr.append(psnr(expected, clean))
        agreement.append(np.mean(ours.actions == expected_actions))
    print(
        f"sigma {sigma}: ours {np.mean(ours_psnr):.4f} dB, reference {np.mean(reference_psnr):.4f} dB, "
        f"action agreement {np.min(agreement):.5f}"
    )
    assert abs(np.mean(ours_psnr) - np.mean(reference_psnr)) < 0.02
    assert min(agreement) > 0.99, agreement
    assert np.mean(ours_psnr) > psnr(noisy, clean) + 3  # the release really denoises
