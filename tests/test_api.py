from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_policy
from PIL import Image
from skimage import data as skdata

from napari_pixelrl import api
from napari_pixelrl.core import inference
from napari_pixelrl.core.actions import DENOISE
from napari_pixelrl.core.checkpoint import CheckpointError, save_checkpoint
from napari_pixelrl.core.config import NoiseModel
from napari_pixelrl.core.metrics import psnr
from napari_pixelrl.core.noise import degrade

DO_NOTHING = 1
BOX = 8


def test_restore_returns_image_action_and_value_maps():
    policy = make_policy()
    noisy = np.random.default_rng(0).random((20, 24)).astype(np.float32)
    result = api.restore(noisy, policy, steps=4, return_values=True, device="cpu")
    assert result.image.shape == (20, 24) and result.image.dtype == np.float32
    assert result.actions.shape == (4, 20, 24) and result.actions.dtype == np.uint8
    assert result.values.shape == (4, 20, 24) and result.values.dtype == np.float32
    assert result.actions.max() < 9
    assert api.restore(noisy, policy).values is None
    assert api.restore(noisy, policy).actions.shape[0] == policy.steps


def test_uint8_is_divided_by_255_and_mapped_back():
    image = np.random.default_rng(1).integers(0, 256, (16, 16), dtype=np.uint8)
    result = api.restore(image, make_policy(fixed_action=DO_NOTHING))
    np.testing.assert_allclose(result.image, image.astype(np.float32), atol=1e-4)
    assert np.all(result.actions == DO_NOTHING)


def test_uint16_uses_the_image_range_and_box_filter_result_is_in_input_units():
    image = np.random.default_rng(2).integers(1000, 5000, (12, 12)).astype(np.uint16)
    image[3:5, 3:5], image[8:10, 8:10] = 900, 5100  # the darkest and brightest two-pixel-wide patches set the range
    result = api.restore(image, make_policy(fixed_action=BOX), steps=1)
    low, high = 900.0, 5100.0
    scaled = torch.from_numpy((image - low) / (high - low))[None, None]
    expected = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(scaled, (2,) * 4, mode="reflect"), 5, 1)
    np.testing.assert_allclose(result.image, expected[0, 0].numpy() * (high - low) + low, rtol=1e-5)


def test_explicit_intensity_range_and_clipping():
    image = np.full((8, 8), 4095, dtype=np.uint16)
    result = api.restore(image, make_policy(fixed_action=2), steps=3, intensity_range=(0, 4095))
    assert result.image.max() == 4095.0  # "+1" three times, clipped to the top of the range


def test_float_in_unit_range_is_unchanged_by_do_nothing():
    image = np.random.default_rng(3).random((9, 9))
    result = api.restore(image, make_policy(fixed_action=DO_NOTHING))
    np.testing.assert_allclose(result.image, image, atol=1e-6)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.array([[np.nan] * 5] * 5, np.float32), "NaN or infinite"),
        (np.where(np.eye(5) > 0, np.inf, 0.5), "NaN or infinite"),
        (np.zeros((0, 5), np.float32), "too small"),
        (np.zeros((2, 40), np.float32), "too small"),
        (np.zeros((3, 2, 16), np.float32), "too small"),
        (np.zeros((16, 16, 2), np.uint8), "too small"),
        (np.zeros((16,), np.float32), "at least 2 dimensions"),
        (np.zeros((16, 16), bool), "real-valued"),
        (np.zeros((16, 16), np.complex64), "real-valued"),
        (np.array([["a"] * 4] * 4), "real-valued"),
    ],
)
def test_bad_images_raise_clear_errors_and_stay_untouched(image, message):
    before = image.copy()
    with pytest.raises(ValueError, match=message):
        api.restore(image, make_policy())
    np.testing.assert_array_equal(image, before)


def test_input_is_never_modified():
    image = np.random.default_rng(4).random((10, 10)).astype(np.float32)
    before = image.copy()
    api.restore(image, make_policy(fixed_action=BOX))
    np.testing.assert_array_equal(image, before)


def test_bad_steps_and_device_are_rejected():
    image = np.zeros((8, 8), np.float32)
    with pytest.raises(ValueError, match="steps"):
        api.restore(image, make_policy(), steps=0)
    with pytest.raises(ValueError, match="unknown device"):
        api.restore(image, make_policy(), device="tpu9")
    with pytest.raises(ValueError, match="intensity_range"):
        api.restore(image, make_policy(), intensity_range=(1, 1))


def test_auto_device_falls_back_to_cpu_without_accelerators(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert api.resolve_device("auto") == torch.device("cpu")


def test_load_policy_tells_formats_apart_by_content(tmp_path):
    policy = make_policy(seed=2)
    path = save_checkpoint(policy, tmp_path / "odd_name.npz")  # safetensors content, misleading suffix
    loaded = api.load_policy(path)
    image = np.random.default_rng(5).random((12, 12)).astype(np.float32)
    np.testing.assert_array_equal(api.restore(image, loaded).image, api.restore(image, policy).image)


def test_load_policy_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no policy named 'gaussian-99'"):
        api.load_policy("gaussian-99")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="neither"):
        api.load_policy(bad)


def test_list_policies_lists_shipped_weights(tmp_path, monkeypatch):
    monkeypatch.setattr(api, "WEIGHTS_DIR", tmp_path)
    assert api.list_policies() == {}
    policy = make_policy()
    policy.description = "a tiny test policy"
    save_checkpoint(policy, tmp_path / "tiny.safetensors")
    assert api.list_policies() == {"tiny": "a tiny test policy"}
    assert api.load_policy("tiny").model.config.width == 8
    policy.noise_model, policy.description = NoiseModel(kind="text", density=0.1), "text"
    save_checkpoint(policy, tmp_path / "words.safetensors")
    assert api.list_policies(task="text") == {"words": "text"}
    assert api.list_policies(task="gaussian") == {"tiny": "a tiny test policy"}
    assert api.list_policies(task="salt-and-pepper") == {}
    with pytest.raises(ValueError, match="unknown task 'colour'"):
        api.list_policies(task="colour")


def test_bfloat16_network_keeps_float32_state_and_nearly_the_same_actions(monkeypatch):
    # bfloat16 itself, on any host: where it is not native, the fallback to float32 is faked away
    monkeypatch.setattr("napari_pixelrl.core.environment.has_native_bfloat16", lambda device="cpu": True)
    policy = make_policy(seed=4, width=16)
    image = np.random.default_rng(6).random((24, 24)).astype(np.float32)
    exact = api.restore(image, policy, device="cpu")
    fast = api.restore(image, policy, device="cpu", precision="bfloat16")
    assert fast.image.dtype == np.float32
    assert np.mean(fast.actions == exact.actions) > 0.9
    with pytest.raises(ValueError, match="precision must be one of"):
        api.restore(image, policy, precision="float8")


def test_first_value_map_is_the_value_branch_on_the_input():
    policy = make_policy(seed=8)
    image = np.random.default_rng(9).random((14, 15)).astype(np.float32)
    result = api.restore(image, policy, steps=2, return_values=True, device="cpu")
    with torch.no_grad():
        expected = policy.model.float()(torch.from_numpy(image)[None, None]).value[0, 0].numpy()
    np.testing.assert_allclose(result.values[0], expected, rtol=1e-5, atol=1e-6)


def test_image_too_large_for_memory_is_refused_before_starting(monkeypatch):
    monkeypatch.setattr(inference, "available_bytes", lambda device: 10 * 2**20)  # 10 MiB free
    image = np.zeros((256, 256), np.float32)
    # The smallest tiles (64 + 2 x 54 halo) still need 15 MiB: refused, naming the fix.
    with pytest.raises(MemoryError, match=r"172x172 tiles on cpu: needs about 0\.0 GiB but only 0\.0 GiB.*tile_size"):
        api.restore(image, make_policy())
    assert not image.any()


def test_out_of_memory_inside_torch_becomes_a_clear_error(monkeypatch):
    def exhausted(*args, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate 123 bytes")
        yield  # a generator, like the real episode_steps

    monkeypatch.setattr(inference, "episode_steps", exhausted)
    with pytest.raises(MemoryError, match=r"ran out of memory\. Pass a smaller tile_size"):
        api.restore(np.zeros((8, 8), np.float32), make_policy())


def test_other_runtime_errors_mentioning_memory_pass_through(monkeypatch):
    def unrelated(*args, **kwargs):
        raise RuntimeError("unsupported memory format for this operator")
        yield  # a generator, like the real episode_steps

    monkeypatch.setattr(inference, "episode_steps", unrelated)
    with pytest.raises(RuntimeError, match="unsupported memory format"):
        api.restore(np.zeros((8, 8), np.float32), make_policy())


def test_evaluate_scores_any_noise_model_on_the_same_draws(tmp_path):
    rng = np.random.default_rng(3)
    clean = [rng.integers(0, 256, (16, 16), dtype=np.uint8) for _ in range(2)]
    for i, image in enumerate(clean):
        Image.fromarray(image).save(tmp_path / f"{i}.png")
    noise = NoiseModel(kind="poisson-gaussian", gain=0.05, sigma=2.0)
    result = api.evaluate(make_policy(fixed_action=1), tmp_path, noise=noise, seed=7)
    draws = np.random.default_rng(7)
    expected = [psnr(degrade(c / 255.0, noise, draws), c / 255.0) for c in clean]
    assert result.noise == noise
    np.testing.assert_allclose([s.psnr_noisy for s in result.scores], expected, rtol=1e-6)
    np.testing.assert_allclose([s.psnr for s in result.scores], expected, rtol=1e-6)  # "do nothing" policy
    np.testing.assert_array_equal(result.action_shares, np.eye(len(DENOISE))[[1, 1, 1]])  # 3 steps, all action 1


def test_evaluate_counts_the_actions_that_restore_chooses_on_the_same_draws(tmp_path):
    rng = np.random.default_rng(4)
    clean = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in ((16, 16), (12, 20))]
    for i, image in enumerate(clean):
        Image.fromarray(image).save(tmp_path / f"{i}.png")
    policy = make_policy(seed=2)
    with torch.no_grad():
        policy.model.policy_head.weight.mul_(30.0)  # actions change from pixel to pixel
    result = api.evaluate(policy, tmp_path, sigma=30, seed=5)
    draws = np.random.default_rng(5)
    actions = [
        api.restore(degrade(c / 255.0, NoiseModel(sigma=30), draws), policy, intensity_range=(0, 1)).actions
        for c in clean
    ]
    per_image = [[[np.sum(step == k) for k in range(len(DENOISE))] for step in a] for a in actions]  # (steps, A)
    assert len(np.unique(np.concatenate([a.ravel() for a in actions]))) > 1  # a mixed policy, not a trivial case
    for score, counts in zip(result.scores, per_image, strict=True):
        np.testing.assert_array_equal(score.action_counts, counts)
    np.testing.assert_allclose(result.action_shares, np.sum(per_image, axis=0) / (16 * 16 + 12 * 20))
    assert result.action_names == tuple(DENOISE.names)


def test_restore_steps_reports_each_step_and_returns_the_same_result_as_restore(policy):
    noisy = np.random.default_rng(3).random((20, 24)).astype(np.float32)
    work = api.restore_steps(noisy, policy, steps=4, return_values=True)
    progress = []
    while True:
        try:
            progress.append(next(work))
        except StopIteration as finished:
            result = finished.value
            break
    assert [(p.done, p.total) for p in progress] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    expected = api.restore(noisy, policy, steps=4, return_values=True)
    np.testing.assert_array_equal(result.image, expected.image)
    np.testing.assert_array_equal(result.actions, expected.actions)
    np.testing.assert_array_equal(result.values, expected.values)


def test_restore_steps_checks_the_image_before_any_work_and_leaves_grad_mode_alone(policy):
    with pytest.raises(ValueError, match="NaN"):
        next(api.restore_steps(np.full((8, 8), np.nan, np.float32), policy))
    work = api.restore_steps(np.zeros((8, 8), np.float32), policy)
    next(work)
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
    work.close()


def test_a_stack_is_restored_plane_by_plane_in_one_batch_and_one_intensity_range(policy):
    rng = np.random.default_rng(5)
    stack = rng.integers(100, 4000, size=(3, 20, 24)).astype(np.uint16)
    result = api.restore_steps(stack, policy, steps=2, return_values=True)
    progress = []
    while True:
        try:
            progress.append(next(result).done)
        except StopIteration as finished:
            result = finished.value
            break
    assert progress == [3, 6]  # the three planes run as one batch
    assert result.image.shape == stack.shape and result.actions.shape == result.values.shape == (3, 2, 20, 24)
    low, high = api.default_intensity_range(stack)
    for k in range(3):
        alone = api.restore(stack[k], policy, steps=2, return_values=True, intensity_range=(low, high))
        np.testing.assert_allclose(result.image[k], alone.image, rtol=1e-6)
        np.testing.assert_array_equal(result.actions[k], alone.actions)
        np.testing.assert_allclose(result.values[k], alone.values, rtol=1e-5, atol=1e-6)


def _scene(shape=(160, 160)) -> np.ndarray:
    """Centre crop of scikit-image's camera in [0, 1] (float64)."""
    top, left = ((n - s) // 2 for n, s in zip(skdata.camera().shape, shape, strict=True))
    return skdata.camera()[top : top + shape[0], left : left + shape[1]] / 255.0


def test_default_range_ignores_isolated_hot_and_dead_pixels_but_not_thin_structures():
    image = np.full((20, 20), 1000, np.uint16)
    image[5, 5], image[15, 15] = 60000, 0  # one hot and one dead pixel
    image[2:18, 10] = 3000  # a one-pixel-wide bright line is real structure
    assert api.default_intensity_range(image) == (1000.0, 3000.0)
    image[14:16, 3] = 50000  # two bright pixels side by side are kept too
    assert api.default_intensity_range(image) == (1000.0, 50000.0)


@pytest.mark.parametrize("sigma", [15, 25, 50])
def test_unit_range_floats_with_noise_excursions_keep_their_noise_level(sigma):
    clean = _scene()
    noisy = (clean + np.random.default_rng(sigma).normal(0, sigma / 255, clean.shape)).astype(np.float32)
    assert noisy.min() < -0.05 and noisy.max() > 1.05  # the noise leaves [0, 1], as in the paper's protocol
    assert api.default_intensity_range(noisy) == (0.0, 1.0)
    policy = api.load_policy("gaussian-25")
    default = psnr(api.restore(noisy, policy).image, clean)
    assert abs(default - psnr(api.restore(noisy, policy, intensity_range=(0, 1)).image, clean)) < 0.05
    brighter = 2 * clean + np.random.default_rng(0).normal(0, 2 / 255, clean.shape)  # beyond what noise explains
    assert api.default_intensity_range(brighter.astype(np.float32))[1] > 1.9


def test_uint16_with_hot_pixels_keeps_its_noise_level():
    clean = _scene()
    rng = np.random.default_rng(0)
    image = np.clip(100 + 4000 * (clean + rng.normal(0, 25 / 255, clean.shape)), 0, 65535).astype(np.uint16)
    hot = image.copy()
    spots = rng.integers(0, 160, (6, 2))
    hot[spots[:, 0], spots[:, 1]] = 65535
    assert api.default_intensity_range(hot) == api.default_intensity_range(image)
    policy = api.load_policy("gaussian-25")
    rows, cols = np.mgrid[:160, :160]
    distance = np.min([np.maximum(abs(rows - y), abs(cols - x)) for y, x in spots], axis=0)
    keep = distance > 24  # beyond the network's and the five steps' reach of a hot pixel: the same mapping
    with_hot, without = (api.restore(x, policy).image[keep] for x in (hot, image))
    np.testing.assert_allclose(with_hot, without, atol=1e-3)


def test_a_restoration_says_which_intensity_range_it_mapped_to_unit_range():
    image = (100 + np.random.default_rng(0).random((40, 40)) * 3000).astype(np.uint16)
    policy = api.load_policy("gaussian-25")
    assert api.restore(image, policy, steps=1).intensity_ranges == {None: api.default_intensity_range(image)}
    given = api.restore(image, policy, steps=1, intensity_range=(0, 4095))
    assert given.intensity_ranges == {None: (0.0, 4095.0)}


def test_noise_check_flags_a_low_noise_image_for_a_high_noise_policy():
    clean = _scene((256, 256))
    low = (clean + np.random.default_rng(0).normal(0, 5 / 255, clean.shape)).astype(np.float32)
    check = api.check_noise(low, api.load_policy("gaussian-50"))
    assert not check.fits and 4 < check.estimate["sigma"] < 8
    assert "gaussian-15" in check.advice or "gaussian-blind" in check.advice
    assert api.check_noise(low, api.load_policy("gaussian-blind")).fits
    matched = (clean + np.random.default_rng(1).normal(0, 25 / 255, clean.shape)).astype(np.float32)
    check = api.check_noise(matched, api.load_policy("gaussian-25"))
    assert check.fits and abs(check.estimate["sigma"] - 25) < 3
    assert api.check_noise(matched, api.load_policy("salt-and-pepper")) is None
