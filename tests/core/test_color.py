"""Colour: CIELAB against scikit-image, the 13 actions against their formulas, RGB through data, training and
restoring."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import torch
from conftest import make_colour_policy
from skimage import color, data

from napari_pixelrl import api
from napari_pixelrl.core.actions import apply_actions, get_action_set
from napari_pixelrl.core.checkpoint import load_checkpoint, save_checkpoint
from napari_pixelrl.core.color import COLOR, lab_distance, rgb_to_lab
from napari_pixelrl.core.config import ModelConfig, NoiseModel, TrainConfig
from napari_pixelrl.core.data import ImageSet, random_crops, to_unit_rgb
from napari_pixelrl.core.metrics import psnr
from napari_pixelrl.core.noise import degrade, fade_colors
from napari_pixelrl.core.trainer import Trainer, step_reward


def _chw(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(image, -1, 0)))[None].double()


def _hwc(tensor: torch.Tensor) -> np.ndarray:
    return tensor[0].permute(1, 2, 0).numpy()


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return data.astronaut()[100:164:2, 200:296:2] / 255.0  # (32, 48, 3) float64


def test_rgb_to_lab_matches_scikit_image(photo):
    np.testing.assert_allclose(_hwc(rgb_to_lab(_chw(photo))), color.rgb2lab(photo), atol=2e-3)
    # states outside [0, 1] (not clipped during an episode) are seen as their clipped colour
    outside = photo * 1.4 - 0.2
    np.testing.assert_allclose(_hwc(rgb_to_lab(_chw(outside))), color.rgb2lab(np.clip(outside, 0, 1)), atol=2e-3)


def test_lab_distance_is_cie76_delta_e(photo):
    other = np.clip(photo[..., ::-1] * 0.9, 0, 1)
    expected = color.deltaE_cie76(color.rgb2lab(photo), color.rgb2lab(other))
    np.testing.assert_allclose(lab_distance(_chw(photo), _chw(other))[0, 0].numpy(), expected, atol=5e-3)


def test_the_13_colour_actions_follow_their_formulas(photo):
    x = photo
    luma = (x * [0.299, 0.587, 0.114]).sum(-1, keepdims=True)
    expected = {
        "do nothing": x,
        "contrast x0.95": 0.5 + 0.95 * (x - 0.5),
        "contrast x1.05": 0.5 + 1.05 * (x - 0.5),
        "saturation x0.95": luma + 0.95 * (x - luma),
        "saturation x1.05": luma + 1.05 * (x - luma),
        "brightness -0.025": x - 0.025,
        "brightness +0.025": x + 0.025,
        "RG x0.95": x * [0.95, 0.95, 1], "RG x1.05": x * [1.05, 1.05, 1],
        "GB x0.95": x * [1, 0.95, 0.95], "GB x1.05": x * [1, 1.05, 1.05],
        "RB x0.95": x * [0.95, 1, 0.95], "RB x1.05": x * [1.05, 1, 1.05],
    }  # fmt: skip
    action_set = get_action_set("color")
    assert action_set is COLOR and action_set.names == list(expected)
    assert (len(action_set), action_set.channels, action_set.radius) == (13, 3, 0)
    for action in action_set.actions:
        np.testing.assert_allclose(_hwc(action.apply(_chw(x))), expected[action.name], atol=1e-12)


def test_every_pixel_takes_its_own_colour_action(photo):
    state = _chw(photo)
    actions = torch.from_numpy(np.random.default_rng(0).integers(0, 13, size=(1, *photo.shape[:2])))
    result = apply_actions(state, actions, COLOR)
    candidates = [action.apply(state) for action in COLOR.actions]
    for y, x in [(0, 0), (5, 7), (31, 47), (20, 3)]:
        torch.testing.assert_close(result[0, :, y, x], candidates[int(actions[0, y, x])][0, :, y, x])
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        apply_actions(state[:, :1], actions, COLOR)


def test_colour_reward_is_the_decrease_of_delta_e(photo):
    target, state = _chw(photo), _chw(np.clip(photo * 0.8 + 0.1, 0, 1))
    after = COLOR.actions[2].apply(state)  # contrast x1.05
    expected = color.deltaE_cie76(color.rgb2lab(photo), color.rgb2lab(_hwc(state))) - color.deltaE_cie76(
        color.rgb2lab(photo), color.rgb2lab(np.clip(_hwc(after), 0, 1))
    )
    reward = step_reward(target, state, after, COLOR)
    assert reward.shape == (1, 1, *photo.shape[:2])
    np.testing.assert_allclose(reward[0, 0].numpy(), expected, atol=1e-2)
    assert float(reward.mean()) > 0  # more contrast undoes the flattening


def test_fading_follows_its_formula(photo):
    clean = np.moveaxis(photo, -1, 0).astype(np.float32)
    np.testing.assert_allclose(fade_colors(clean, 0.0), clean, atol=1e-6)
    s = 0.2
    luma = (photo * [0.299, 0.587, 0.114]).sum(-1, keepdims=True)
    faded = 0.5 + np.exp(-s) * (luma + np.exp(-1.5 * s) * (photo - luma) - 0.5)
    expected = np.clip(faded * np.exp([0.4 * s, 0, -0.4 * s]) + 0.5 * s, 0, 1)
    np.testing.assert_allclose(np.moveaxis(fade_colors(clean, s), 0, -1), expected, atol=1e-5)
    blind = NoiseModel(kind="fading", strength=(0.05, 0.25))
    batch = degrade(np.stack([clean, clean]), blind, np.random.default_rng(1))
    assert batch.shape == (2, 3, *photo.shape[:2]) and not np.allclose(batch[0], batch[1])
    assert NoiseModel(kind="fading").strength == 0.15 and NoiseModel(kind="fading").sigma is None
    with pytest.raises(ValueError, match="RGB"):
        fade_colors(clean[0], 0.1)


def test_rgb_training_data():
    image = data.chelsea()
    unit = to_unit_rgb(np.concatenate([image, np.full((*image.shape[:2], 1), 255, np.uint8)], -1))
    assert unit.shape == (3, *image.shape[:2]) and unit.dtype == np.float32
    np.testing.assert_allclose(unit, np.moveaxis(image, -1, 0) / 255.0, atol=1e-7)
    crops = random_crops([unit], 4, 16, np.random.default_rng(0))
    assert crops.shape == (4, 3, 16, 16)
    # each crop is a window of the image: find it by its first pixel row
    for crop in crops:
        hits = [
            (y, x)
            for y in range(unit.shape[1] - 15)
            for x in range(unit.shape[2] - 15)
            if np.array_equal(unit[:, y : y + 16, x : x + 16], crop)
        ]
        assert len(hits) >= 1
    with pytest.raises(ValueError, match="RGB"):
        to_unit_rgb(data.camera())


def test_colour_restore_is_exact_in_tiles_and_keeps_alpha(tmp_path):
    policy = make_colour_policy()
    image = data.astronaut()[:70, :90]
    whole = api.restore(image, policy, return_values=True)
    assert whole.image.shape == image.shape and whole.actions.shape == (4, 70, 90)
    assert len(np.unique(whole.actions)) > 1  # a random network mixes actions
    np.testing.assert_array_equal(api.restore(image, policy, tile_size=24).image, whole.image)
    rgba = np.concatenate([image, np.full((70, 90, 1), 77, np.uint8)], -1)
    with_alpha = api.restore(rgba, policy)
    np.testing.assert_array_equal(with_alpha.image[..., :3], whole.image)
    assert (with_alpha.image[..., 3] == 77).all()
    # a float image's alpha (here 0-255 beside colours in 0-1) does not set the colours' intensity range
    unit = image.astype(np.float32) / 255
    float_alpha = np.concatenate([unit, np.full((70, 90, 1), 255.0, np.float32)], -1)
    for source in (float_alpha, da.from_array(float_alpha, chunks=(35, 45, 4))):
        np.testing.assert_allclose(api.restore(source, policy).image[..., :3], whole.image / 255, atol=1e-6)
    stack = api.restore(np.stack([image, image[::-1]]), policy)
    assert stack.image.shape == (2, 70, 90, 3) and stack.actions.shape == (2, 4, 70, 90)
    np.testing.assert_array_equal(stack.image[0], whole.image)
    with pytest.raises(ValueError, match="colour policy restores RGB"):
        api.restore(image[..., 0], policy)
    # a checkpoint of a colour policy comes back as one
    path = save_checkpoint(policy, tmp_path / "colour.safetensors")
    again = load_checkpoint(path)
    assert again.action_set is COLOR and again.model.config.in_channels == 3
    np.testing.assert_array_equal(api.restore(image, again).image, whole.image)


def test_a_colour_policy_trains_and_improves_delta_e(tmp_path):
    """A short expected-reward run on RGB crops from random weights (greedy rollout, as the shipped recipe): the
    greedy policy restores the held-out faded image better than it came."""
    folder = tmp_path / "images"
    folder.mkdir()
    from skimage import io

    for i, image in enumerate([data.astronaut(), data.coffee(), data.chelsea()]):
        io.imsave(folder / f"{i}.png", image[::2, ::2], check_contrast=False)
    config = TrainConfig(
        objective="expected-reward",
        data=str(folder),
        noise=NoiseModel(kind="fading", strength=0.2),
        action_set="color",
        model=ModelConfig(in_channels=3, n_actions=13, width=16),
        episodes=40,
        batch_size=8,
        crop_size=24,
        steps=4,
        rollout="greedy",
        max_rotation=0.0,
        validation_images=1,
        validation_crop=64,
        validate_every=40,
        checkpoint_every=40,
        lr=3e-3,
    )
    images = ImageSet.from_folder(folder, 1, channels=3)
    trainer = Trainer(config, tmp_path / "run", images=images)
    faded = psnr(trainer.validation[0].input, trainer.validation[0].reference)
    updates = list(trainer.run())
    assert updates[-1].validation_psnr > faded + 0.5
    assert np.mean([u.reward for u in updates[-10:]]) > 0  # lowers ΔE on training crops
    with pytest.raises(ValueError, match="in_channels=3"):
        Trainer(TrainConfig(data=str(folder), action_set="color", validation_images=1), tmp_path / "bad")


def test_colour_restore_into_zarr_on_disk(tmp_path):
    policy = make_colour_policy(1)
    image = data.astronaut()[:40, :50]
    out = api.zarr_restoration(tmp_path / "restored.zarr", image.shape, 4, channels=3)
    assert out.actions.shape == (4, 40, 50) and out.image.shape == (40, 50, 3)
    api.restore(image, policy, out=out)
    expected = api.restore(image, policy)
    np.testing.assert_array_equal(out.image[:], expected.image)
    np.testing.assert_array_equal(out.actions[:], expected.actions)
