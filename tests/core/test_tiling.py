"""Tile geometry and the halo: hand-computed widths, a plane covered exactly once, and tiled == untiled."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_policy

from napari_pixelrl import api
from napari_pixelrl.core import inference
from napari_pixelrl.core.config import ModelConfig
from napari_pixelrl.core.memory import episode_bytes
from napari_pixelrl.core.tiling import MIN_CORE, halo_width, plan_tiles, tile_side_for_budget


def test_halo_of_the_paper_network_by_hand():
    # Trunk 1+2+3+4 = 10, branch 3+2 = 5, convGRU 2, head 1: an action reaches 18 pixels from the state's
    # wrong border, the 5x5 filters only 2, so the wrong border moves in by 18 per step. The value map at the
    # last step t = T-1 reaches 18 (T-1) + 10 + 5 + 1, less than 18 T.
    config = ModelConfig()
    assert [halo_width(config, t) for t in (1, 2, 5, 10)] == [18, 36, 90, 180]
    # A network whose value branch reaches further than a step: trunk 1, value branch 20 (+1 head) = 22 > 1+20+2+1?
    # No: the policy path is 24 per step. With steps=1 and a filter radius of 30 the filter decides.
    assert halo_width(ModelConfig(trunk_dilations=(1,), branch_dilations=(20,)), 1) == 24
    assert halo_width(ModelConfig(trunk_dilations=(1,), branch_dilations=(1,)), 1, filter_radius=30) == 30


@pytest.mark.parametrize(("height", "width", "core", "halo"), [(67, 53, 16, 5), (10, 10, 64, 90), (33, 7, 8, 0)])
def test_tiles_cover_every_pixel_once_and_read_inside_the_plane(height, width, core, halo):
    tiles = plan_tiles(height, width, core, halo)
    covered = np.zeros((height, width), int)
    for tile in tiles:
        covered[tile.write] += 1
        rows, cols = tile.read
        assert 0 <= rows.start and rows.stop <= height and 0 <= cols.start and cols.stop <= width
        assert rows.start == max(0, tile.write[0].start - halo) and cols.stop == min(width, tile.write[1].stop + halo)
        inner_rows, inner_cols = tile.inner
        assert inner_rows.stop - inner_rows.start == tile.write[0].stop - tile.write[0].start <= core
        assert inner_cols.stop - inner_cols.start == tile.write[1].stop - tile.write[1].start <= core
    assert (covered == 1).all()


def test_tile_side_from_a_memory_budget():
    halo, channels = 90, 64
    side = tile_side_for_budget(2**30, channels, halo)
    assert episode_bytes(side + 2 * halo, side + 2 * halo, channels) <= 2**30
    assert episode_bytes(side + 2 * halo + 1, side + 2 * halo + 1, channels) > 2**30
    assert tile_side_for_budget(1, channels, halo) == MIN_CORE


def varied_policy():
    """A small random policy (width 8, 3 steps: halo 54) whose actions change from pixel to pixel."""
    policy = make_policy(seed=1)
    with torch.no_grad():
        policy.model.policy_head.weight.mul_(30.0)
    return policy


@pytest.mark.parametrize("values", [False, True])
def test_tiled_equals_untiled_at_edges_and_odd_sizes(values):
    policy = varied_policy()
    image = np.random.default_rng(2).random((151, 133)).astype(np.float32)
    whole = api.restore(image, policy, return_values=values)
    tiled = api.restore(image, policy, return_values=values, tile_size=32)  # 5 x 5 tiles of 30-31 pixels
    assert (np.bincount(whole.actions.ravel(), minlength=9) > 100).sum() >= 4  # actions vary pixel to pixel
    np.testing.assert_array_equal(tiled.actions, whole.actions)
    np.testing.assert_allclose(tiled.image, whole.image, atol=1e-6)
    if values:
        np.testing.assert_allclose(tiled.values, whole.values, atol=1e-5)


def test_a_halo_narrower_than_the_receptive_field_would_show(monkeypatch):
    """The exactness test above can fail: with a too narrow halo the tile seams differ from the whole image."""
    policy = varied_policy()
    image = np.random.default_rng(2).random((151, 133)).astype(np.float32)
    whole = api.restore(image, policy)
    monkeypatch.setattr(inference, "halo_width", lambda *args: 8)
    seams = api.restore(image, policy, tile_size=32)
    assert np.abs(seams.image - whole.image).max() > 1e-2


def test_memory_budget_picks_the_tiles_and_progress_counts_them(monkeypatch):
    policy = varied_policy()
    image = np.random.default_rng(4).random((250, 240)).astype(np.float32)
    planned = []
    monkeypatch.setattr(inference, "plan_tiles", lambda *args: planned.append(args) or plan_tiles(*args))
    budget = episode_bytes(MIN_CORE + 2 * 54, MIN_CORE + 2 * 54, 8)  # exactly one 64-pixel core
    work = api.restore_steps(image, policy, memory_budget=budget)
    progress = list(iter(lambda: next(work, None), None))
    assert planned == [(250, 240, MIN_CORE, 54)]
    assert progress[-1].done == progress[-1].total == 4 * 4 * 3  # 4 x 4 tiles, 3 steps, one tile per batch
    np.testing.assert_array_equal(
        api.restore(image, policy, memory_budget=budget).actions, api.restore(image, policy).actions
    )
    # a plane that fits the budget whole is one tile, whatever the halo (which it would otherwise compute twice)
    planned.clear()
    api.restore(image[:150, :140], policy, memory_budget=budget)
    assert planned == [(150, 140, 150, 54)]


def test_a_shipped_policy_tiled_equals_untiled_on_a_noisy_photo():
    import skimage.data

    clean = skimage.data.camera()[100:300, 150:330].astype(np.float32) / 255
    noisy = clean + np.random.default_rng(0).normal(0, 25 / 255, clean.shape).astype(np.float32)
    policy = api.load_policy("gaussian-25")  # the paper's network, 5 steps: halo 90
    whole = api.restore(noisy, policy, intensity_range=(0, 1))
    tiled = api.restore(noisy, policy, intensity_range=(0, 1), tile_size=100)  # 2 x 2 tiles
    assert (tiled.actions != whole.actions).mean() < 1e-4  # float rounding may flip a near tie, rarely
    np.testing.assert_allclose(tiled.image, whole.image, atol=1e-5)
