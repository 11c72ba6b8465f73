"""Training-data sources: aligned crops, neighbour sub-sampling, held-out stripes, and the noisy-target reward."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_pixelrl.core.actions import box_filter
from napari_pixelrl.core.config import NoiseModel
from napari_pixelrl.core.data import ImageSet
from napari_pixelrl.core.noise import degrade
from napari_pixelrl.core.sources import (
    ImagePairs,
    NeighbourPairs,
    SyntheticNoise,
    neighbour_subsample,
    paired_crops,
    split_rows,
)
from napari_pixelrl.core.trainer import step_reward


def test_noisy_target_reward_is_unbiased():
    """E over the target's noise of 255((y - s)² - (y - s')²) equals the clean reward, y = x + n, n independent."""
    rng = np.random.default_rng(0)
    clean = rng.random((64, 64)).astype(np.float32)
    state = degrade(clean, NoiseModel(sigma=25.0), rng)
    after = box_filter(torch.from_numpy(state)[None, None])[0, 0].numpy()
    x, s, s_next = (torch.from_numpy(a).double()[None, None] for a in (clean, state, after))
    clean_reward = step_reward(x, s, s_next)
    draws = 400
    noise = NoiseModel(kind="poisson-gaussian", gain=0.05, sigma=5.0)  # signal-dependent, zero-mean
    total = torch.zeros_like(clean_reward)
    for _ in range(draws):
        target = torch.from_numpy(degrade(clean, noise, rng)).double()[None, None]
        total += step_reward(target, s, s_next)
    mean_noisy = total / draws
    # Per pixel the difference is 255 · 2n(s' - s): standard error of the pixel-and-draw mean.
    sigma_n = np.sqrt(0.05 * clean + (5 / 255) ** 2)
    stderr = 255 * 2 * np.sqrt(np.mean(sigma_n**2 * (after - state) ** 2) / (draws * clean.size))
    assert abs(float(mean_noisy.mean() - clean_reward.mean())) < 4 * stderr
    # ...and pixel by pixel, within 5 standard errors of each pixel's mean.
    per_pixel = 255 * 2 * sigma_n * np.abs(after - state) / np.sqrt(draws)
    assert (np.abs((mean_noisy - clean_reward).numpy()) <= 5 * per_pixel + 1e-9).mean() > 0.999


def test_paired_crops_cut_the_same_place_of_input_and_target():
    rng = np.random.default_rng(1)
    image = rng.random((40, 50)).astype(np.float32)
    inputs, targets = paired_crops([image], [2 * image], 12, 16, rng)
    assert inputs.shape == targets.shape == (12, 1, 16, 16)
    np.testing.assert_allclose(targets, 2 * inputs)
    # Each crop is a flipped/turned window of the image: its sorted values appear in the image.
    assert np.isin(inputs[0], image).all()


def test_neighbour_subsample_takes_two_different_adjacent_pixels_of_each_cell():
    height, width = 6, 8
    rows, cols = np.mgrid[:height, :width]
    positions = (rows * 100 + cols).astype(np.float32)[None, None]  # each value encodes its pixel
    first, second = neighbour_subsample(positions, np.random.default_rng(2))
    assert first.shape == second.shape == (1, 1, 3, 4)
    r1, c1, r2, c2 = first // 100, first % 100, second // 100, second % 100
    cell_r, cell_c = np.mgrid[:3, :4]
    assert ((r1 // 2 == cell_r) & (c1 // 2 == cell_c) & (r2 // 2 == cell_r) & (c2 // 2 == cell_c)).all()
    assert (np.abs(r1 - r2) + np.abs(c1 - c2) == 1).all()  # horizontal or vertical neighbours, never the same


def test_split_rows_holds_out_a_bottom_stripe():
    image = np.arange(100 * 3, dtype=np.float32).reshape(100, 3)
    train, held = split_rows(image, 0.1)
    assert train.shape == (90, 3) and held.shape == (10, 3)
    np.testing.assert_array_equal(np.concatenate([train, held]), image)
    with pytest.raises(ValueError, match="too small"):
        split_rows(image[:12], 0.1)


def test_image_pairs_from_frames_pair_neighbours_both_ways():
    frames = np.stack([np.full((40, 30), k, np.float32) for k in range(3)])
    pairs = ImagePairs.from_frames(frames)
    starts = [(float(a[0, 0]), float(b[0, 0])) for a, b in zip(pairs.inputs, pairs.targets, strict=True)]
    assert sorted(starts) == [(0, 1), (1, 0), (1, 2), (2, 1)]
    assert all(not v.reference_is_clean for v in pairs.validation(16, 0))
    with pytest.raises(ValueError, match="at least 2 frames"):
        ImagePairs.from_frames(frames[:1])


def test_sources_give_inputs_and_targets_of_the_requested_size():
    rng = np.random.default_rng(3)
    clean = rng.random((64, 64)).astype(np.float32)
    noisy = degrade(clean, NoiseModel(sigma=25.0), rng)
    sources = [
        SyntheticNoise(ImageSet([clean], [clean], "x", "arrays"), NoiseModel(sigma=25.0)),
        ImagePairs([(noisy, clean)], target_is_clean=True),
        NeighbourPairs([noisy]),
    ]
    for source in sources:
        inputs, targets = source.batch(4, 16, rng)
        assert inputs.shape == targets.shape == (4, 1, 16, 16) and inputs.dtype == np.float32
        assert source.validation(16, 0) and source.record()["kind"]
