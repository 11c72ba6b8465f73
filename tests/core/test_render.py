import numpy as np
import pytest

from napari_pixelrl.core.actions import DENOISE
from napari_pixelrl.core.render import action_montage, action_shares, color_actions


def test_every_action_has_its_own_fixed_colour():
    assert len(set(DENOISE.colors)) == len(DENOISE)
    assert DENOISE.colors[DENOISE.names.index("do nothing")] == (90, 90, 90)


def test_color_actions_looks_up_the_palette():
    actions = np.array([[0, 1], [8, 5]], np.uint8)
    rgb = color_actions(actions, DENOISE)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[1, 0]) == DENOISE.colors[8] and tuple(rgb[1, 1]) == DENOISE.colors[5]
    with pytest.raises(ValueError, match="action indices"):
        color_actions(np.array([9]), DENOISE)


def test_montage_places_steps_side_by_side_with_a_legend():
    actions = np.zeros((3, 20, 30), np.uint8)
    actions[1] = 4
    picture = np.asarray(action_montage(actions, DENOISE))
    assert picture.shape[1] >= 3 * 30 and picture.shape[0] > 20
    step2 = picture[18 : 18 + 20, 36 : 36 + 30]  # below the "step" label, after step 0 and a 6-pixel gap
    assert (step2 == DENOISE.colors[4]).all()
    with pytest.raises(ValueError, match="steps, H, W"):
        action_montage(actions[0], DENOISE)


def test_action_shares_counts_pixels_per_step():
    actions = np.zeros((2, 2, 5), np.uint8)
    actions[0, 0, :2] = 3  # 2 of 10 pixels
    actions[1] = 8
    shares = action_shares(actions, 9)
    assert shares.shape == (2, 9)
    np.testing.assert_allclose(shares[0, [0, 3]], [0.8, 0.2])
    np.testing.assert_allclose(shares[1, 8], 1.0)
    np.testing.assert_allclose(shares.sum(axis=1), 1.0)


def test_action_shares_of_a_stack_count_every_plane():
    stack = np.zeros((2, 3, 4, 5), np.uint8)  # 2 planes, 3 steps
    stack[1, 2] = 7  # the second plane's last step: half of that step's pixels over both planes
    shares = action_shares(stack, 9)
    assert shares.shape == (3, 9)
    np.testing.assert_allclose(shares[2, [0, 7]], [0.5, 0.5])
    np.testing.assert_allclose(shares[:2, 0], 1.0)
