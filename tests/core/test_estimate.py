import itertools

import numpy as np
import pytest
import torch
from skimage import data as skdata

from napari_pixelrl import api
from napari_pixelrl.core.actions import DENOISE, get_action_set
from napari_pixelrl.core.checkpoint import Policy, load_checkpoint, save_checkpoint
from napari_pixelrl.core.config import ModelConfig, NoiseModel, TrainConfig
from napari_pixelrl.core.estimate import (
    ESTIMATORS_DIR,
    MEASURED_LEVELS,
    CNNEstimate,
    MeasuredEstimate,
    cnn_action_set,
    estimate_radius,
    estimator_file,
    level_weights,
)
from napari_pixelrl.core.io import write_tiff
from napari_pixelrl.core.metrics import psnr
from napari_pixelrl.core.model import PixelRLNet, denoised
from napari_pixelrl.core.trainer import Trainer

CNN = get_action_set("denoise-cnn-25")


def test_the_cnn_sets_add_one_named_action_to_the_papers_nine():
    for sigma in (15, 25, 50):
        action_set = get_action_set(f"denoise-cnn-{sigma}")
        assert action_set.names == [*DENOISE.names, f"cnn estimate sigma={sigma}"]
        assert (ESTIMATORS_DIR / f"trunk-{sigma}.safetensors").is_file()
    assert len(DENOISE) == 9  # the paper's set stays as it was


def test_a_cnn_set_for_another_noise_kind_is_named_by_the_kind():
    action_set = cnn_action_set("salt-and-pepper", ESTIMATORS_DIR / "trunk-25.safetensors")
    assert action_set.name == "denoise-cnn-salt-and-pepper" and action_set.version == 1
    assert action_set.names == [*DENOISE.names, "cnn estimate salt-and-pepper"]
    assert "salt-and-pepper noise" in action_set.description


def test_a_new_denoiser_for_a_noise_is_a_new_version_of_its_set_beside_the_old():
    assert estimator_file(15) == ESTIMATORS_DIR / "trunk-15.safetensors"
    assert estimator_file("blind", 2) == ESTIMATORS_DIR / "trunk-blind.v2.safetensors"
    other = cnn_action_set(15, ESTIMATORS_DIR / "trunk-25.safetensors", version=7)
    assert (other.name, other.version, other.names) == ("denoise-cnn-15", 7, get_action_set("denoise-cnn-15").names)
    image = torch.rand(1, 1, 36, 36, generator=torch.Generator().manual_seed(6))
    first_25 = get_action_set("denoise-cnn-25", 1).actions[-1]  # the set v1 of σ 25, read from that same file
    torch.testing.assert_close(other.actions[-1].apply(image), first_25.apply(image), rtol=0, atol=0)


def test_a_self_ensembled_version_averages_its_denoiser_over_eight_orientations():
    single, ensembled = get_action_set("denoise-cnn-15", 3), get_action_set("denoise-cnn-15", 4)
    assert ensembled.names == single.names and "averaged over 8 orientations" in ensembled.description
    assert ensembled.actions[-1].apply.path == single.actions[-1].apply.path == estimator_file(15, 3)
    clean = skdata.camera()[128:384, 128:384].astype(np.float32) / 255
    noisy = torch.from_numpy(clean + np.random.default_rng(0).normal(0, 15 / 255, clean.shape).astype(np.float32))
    once, eight = (s.actions[-1].apply(noisy[None, None])[0, 0].clamp(0, 1).numpy() for s in (single, ensembled))
    denoiser = load_checkpoint(estimator_file(15, 3)).model.eval()
    with torch.no_grad():
        by_hand = denoised(denoiser, noisy[None, None], 8)[0, 0].clamp(0, 1).numpy()
    np.testing.assert_allclose(eight, by_hand, rtol=0, atol=1e-5)
    # Measured: 31.76 dB once, 31.88 averaged (BSD68 at σ 15: 31.38 and 31.46); the margin holds on any CPU.
    assert psnr(clean, eight) > psnr(clean, once) + 0.05
    with pytest.raises(ValueError, match="orientations must be one of"):
        CNNEstimate(estimator_file(15, 3), orientations=5)


def test_the_salt_and_pepper_estimate_replaces_only_impulse_valued_pixels():
    image = torch.rand(1, 1, 40, 40, generator=torch.Generator().manual_seed(2)) * 0.8 + 0.1
    impulses = torch.rand(1, 1, 40, 40, generator=torch.Generator().manual_seed(3)) < 0.3
    image[impulses] = (torch.rand(int(impulses.sum()), generator=torch.Generator().manual_seed(4)) < 0.5).float()
    path = ESTIMATORS_DIR / "trunk-25.safetensors"
    switching = cnn_action_set("salt-and-pepper", path).actions[-1].apply(image)
    everywhere = cnn_action_set(25, path).actions[-1].apply(image)
    torch.testing.assert_close(switching[~impulses], image[~impulses], rtol=0, atol=0)
    torch.testing.assert_close(switching[impulses], everywhere[impulses], rtol=0, atol=0)
    assert (everywhere[~impulses] - image[~impulses]).abs().max() > 0.01  # the plain estimate changes them


def test_the_cnn_estimate_denoises_a_photograph():
    clean = skdata.camera()[128:384, 128:384].astype(np.float32) / 255
    noisy = clean + np.random.default_rng(0).normal(0, 25 / 255, clean.shape).astype(np.float32)
    estimate = CNN.actions[-1].apply(torch.from_numpy(noisy)[None, None])[0, 0].clamp(0, 1).numpy()
    # Measured: 20.3 dB noisy, 29.6 dB estimated (BM3D: 29.4); the margin holds on any CPU's rounding.
    assert psnr(clean, estimate) > psnr(clean, noisy) + 7.0


def test_the_estimate_looks_exactly_estimate_radius_pixels_away():
    radius = estimate_radius(ModelConfig())
    assert radius == 16  # 1+2+3+4 trunk, 3+2 branch, 1 head
    image = torch.rand(1, 1, 2 * radius + 5, 2 * radius + 5, generator=torch.Generator().manual_seed(0))
    centre = radius + 2
    base = CNN.actions[-1].apply(image)[0, 0, centre, centre]
    for distance, changes in ((radius, True), (radius + 1, False)):
        moved = image.clone()
        moved[..., centre + distance] += 0.5  # a whole column at that distance
        change = (CNN.actions[-1].apply(moved)[0, 0, centre, centre] - base).abs().item()
        assert (change > 1e-5) if changes else (change < 1e-6), (distance, change)


def test_a_policy_of_the_cnn_set_grows_from_a_denoisers_trunk(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for i, name in enumerate(("coins", "camera")):
        write_tiff(folder / f"{i}-{name}.tif", getattr(skdata, name)())
    torch.manual_seed(0)
    trunk = Policy(
        model=PixelRLNet(ModelConfig(width=8, reward_filter_size=5)),
        action_set=DENOISE,
        steps=5,
        noise_model=NoiseModel(sigma=25.0),
        name="trunk",
        training={"stages": [{"objective": "denoiser"}]},
    )
    config = TrainConfig(
        data=str(folder),
        action_set="denoise-cnn-25",
        objective="expected-reward",
        episodes=1,
        batch_size=2,
        crop_size=16,
        steps=2,
        validation_images=1,
        validation_crop=32,
        validate_every=0,
        device="cpu",
    )
    trainer = Trainer(config, tmp_path / "run", initial=trunk)
    assert trainer.action_set is CNN and trainer.model.config.n_actions == 10
    torch.testing.assert_close(trainer.model.trunk[0].weight, trunk.model.trunk[0].weight)
    for a, b in zip(trainer.model.policy_branch.parameters(), trunk.model.value_branch.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    list(trainer.run())
    policy = load_checkpoint(tmp_path / "run" / "policy.safetensors")
    assert policy.action_set is CNN
    assert [stage["objective"] for stage in policy.training["stages"]] == ["denoiser", "expected-reward"]


@pytest.mark.parametrize("action_set", [CNN, get_action_set("denoise-cnn-15", 4)], ids=["once", "eight-orientations"])
def test_a_cnn_policy_tiles_exactly_and_round_trips(tmp_path, action_set):
    torch.manual_seed(3)
    model = PixelRLNet(ModelConfig(width=8, n_actions=10)).eval()
    with torch.no_grad():
        model.policy_head.bias[9] += 1.0  # the estimate wins everywhere: three estimates in a row, 48 px of halo
    policy = Policy(model=model, action_set=action_set, steps=3, noise_model=NoiseModel(sigma=25.0), name="cnn")
    image = np.random.default_rng(1).random((90, 83), dtype=np.float32)
    whole = api.restore(image, policy, device="cpu")
    tiled = api.restore(image, policy, device="cpu", tile_size=24)
    assert np.all(whole.actions == 9)
    np.testing.assert_allclose(tiled.image, whole.image, atol=1e-5)
    np.testing.assert_array_equal(tiled.actions, whole.actions)
    save_checkpoint(policy, tmp_path / "cnn.safetensors")
    again = api.restore(image, api.load_policy(tmp_path / "cnn.safetensors"), device="cpu")
    np.testing.assert_array_equal(again.image, whole.image)


@pytest.mark.parametrize("sigma", [5, 15, 25, 35, 50])
def test_every_shipped_estimator_is_a_denoiser_of_its_sigma(sigma):
    record = load_checkpoint(ESTIMATORS_DIR / f"trunk-{sigma}.safetensors")
    assert record.training["stages"][-1]["objective"] == "denoiser"
    assert record.noise_model.sigma == sigma


@pytest.mark.parametrize(("sigma", "latest"), [(15, 3), (25, 3), (50, 2)])
def test_each_later_estimator_continues_the_one_before_and_the_latest_serves_the_shipped_policy(sigma, latest):
    versions = [load_checkpoint(estimator_file(sigma, version)) for version in range(1, latest + 1)]
    for earlier, later in itertools.pairwise(versions):  # one more denoiser stage at this σ each time
        assert later.training["stages"][:-1] == earlier.training["stages"]
        assert later.training["stages"][-1]["objective"] == "denoiser" and later.noise_model.sigma == sigma
    newest = get_action_set(f"denoise-cnn-{sigma}")  # what new recipes train with: the latest denoiser, maybe averaged
    assert newest.actions[-1].apply.path == estimator_file(sigma, latest)
    assert api.load_policy(f"gaussian-{sigma}-cnn").action_set is newest
    assert not estimator_file(sigma, latest + 1).exists()


@pytest.mark.parametrize("kind", ["salt-and-pepper", "poisson-gaussian", "text"])
def test_the_estimators_for_other_noises_were_trained_on_that_noise(kind):
    record = load_checkpoint(ESTIMATORS_DIR / f"trunk-{kind}.safetensors")
    assert record.training["stages"][-1]["objective"] == "denoiser"
    assert record.noise_model.kind == kind
    assert get_action_set(f"denoise-cnn-{kind}").names[-1] == f"cnn estimate {kind}"


def test_the_blind_estimator_was_trained_on_the_whole_sigma_range():
    record = load_checkpoint(ESTIMATORS_DIR / "trunk-blind.safetensors")
    assert record.training["stages"][-1]["objective"] == "denoiser"
    assert record.noise_model.kind == "gaussian" and tuple(record.noise_model.sigma) == (5, 55)
    assert get_action_set("denoise-cnn-blind").names[-1] == "cnn estimate blind"


def test_the_levels_set_offers_each_gaussian_estimate_in_its_own_colour():
    levels = get_action_set("denoise-cnn-15-25-50-blind")
    assert levels.names == [*DENOISE.names, *(f"cnn estimate sigma={s}" for s in (15, 25, 50)), "cnn estimate blind"]
    assert len({action.color for action in levels.actions}) == len(levels) == 13
    image = torch.rand(1, 1, 36, 36, generator=torch.Generator().manual_seed(5))
    for action in levels.actions[9:]:  # each estimate is v1 of its own single-estimate set (trained with)
        alone = get_action_set(f"denoise-cnn-{action.name.split()[-1].removeprefix('sigma=')}", 1).actions[-1]
        torch.testing.assert_close(action.apply(image), alone.apply(image), rtol=0, atol=0)
        assert action.color == alone.color  # one colour per denoiser in every set
    assert levels.radius == CNN.radius


def test_level_weights_interpolate_linearly_between_levels_and_clamp_outside():
    levels = (15.0, 25.0, 50.0)
    sigma = torch.tensor([0.0, 15.0, 18.0, 25.0, 30.0, 49.0, 50.0, 80.0])
    weights = level_weights(sigma, levels)
    assert weights.shape == (3, 8)
    torch.testing.assert_close(weights.sum(0), torch.ones(8))
    for i in range(3):  # each weight is the interpolation of the i-th unit vector
        expected = np.interp(sigma.numpy(), levels, np.eye(3)[i])
        np.testing.assert_allclose(weights[i].numpy(), expected, atol=1e-6)
    with pytest.raises(ValueError, match="increasing"):
        level_weights(sigma, (25.0, 15.0))


def test_the_measured_estimate_blends_the_levels_by_the_noise_the_meter_finds():
    # A meter that finds no signal makes the measured level 255 |image| exactly (window 1); each "denoiser" returns
    # its own constant, so the blend at each pixel is numpy.interp of that level over the three constants.
    levels = {15: lambda x: torch.full_like(x, 1.0), 50: lambda x: torch.full_like(x, 3.0)}
    levels[25] = lambda x: torch.full_like(x, 2.0)
    action = MeasuredEstimate(levels, meter=torch.zeros_like, window=1, scale=1.0)
    image = torch.tensor([[[[10.0, 15.0, 20.0, 37.5, 50.0, 60.0]]]]) / 255
    expected = np.interp([10, 15, 20, 37.5, 50, 60], [15, 25, 50], [1, 2, 3])
    np.testing.assert_allclose(action(image)[0, 0, 0].numpy(), expected, atol=1e-5)
    # A level of zero weight at every pixel is not run: between σ 15 and 25 only those two denoisers are called.
    called = []
    counting = {s: (lambda x, s=s, f=f: called.append(s) or f(x)) for s, f in levels.items()}
    low = MeasuredEstimate(counting, meter=torch.zeros_like, window=1, scale=1.0)(image[..., :3])
    np.testing.assert_allclose(low[0, 0, 0].numpy(), expected[:3], atol=1e-5)
    assert sorted(called) == [15, 25]
    with pytest.raises(ValueError, match="odd"):
        MeasuredEstimate(levels, meter=torch.zeros_like, window=4)


@pytest.mark.parametrize("sigma", [15, 25, 50])
def test_the_shipped_blind_denoiser_measures_the_noise_level_of_a_photograph(sigma):
    measured_set = get_action_set("denoise-cnn-measured")
    action = measured_set.actions[-1].apply
    clean = skdata.camera()[128:384, 128:384].astype(np.float32) / 255
    noisy = clean + np.random.default_rng(sigma).normal(0, sigma / 255, clean.shape).astype(np.float32)
    level = action.noise_level(torch.from_numpy(noisy)[None, None])
    # Measured here: median 15.1 / 25.4 / 51.4 (calibrated on BSD432; raw, without the scale 1.05, a little below σ).
    assert abs(level.median().item() - sigma) < 0.1 * sigma


def test_the_measured_set_names_its_estimates_and_looks_as_far_as_its_radius():
    measured_set = get_action_set("denoise-cnn-measured")
    assert measured_set.names == [*DENOISE.names, "cnn estimate sigma measured"]
    assert len({action.color for action in measured_set.actions}) == len(measured_set) == 10
    radius = measured_set.radius
    assert radius == estimate_radius(ModelConfig()) + 33 // 2
    size = 2 * radius + 5
    image = torch.rand(1, 1, size, size, generator=torch.Generator().manual_seed(0)) * 0.4 + 0.3  # σ ≈ 29
    centre = radius + 2
    action = measured_set.actions[-1].apply
    base = action(image)[0, 0, centre, centre]
    for distance, changes in ((radius, True), (radius + 1, False)):
        moved = image.clone()
        moved[..., centre + distance] += 100.0  # a whole column at that distance, far out of range
        change = (action(moved)[0, 0, centre, centre] - base).abs().item()
        assert (change > 1e-6) if changes else (change < 1e-6), (distance, change)


def test_each_version_of_the_measured_set_blends_its_own_levels():
    for version, sigmas in ((1, [15, 25, 50]), (2, [5, 15, 25, 35, 50]), (3, [5, 15, 25, 35, 50])):
        measured_set = get_action_set("denoise-cnn-measured", version)
        assert list(measured_set.actions[-1].apply.levels) == sigmas == list(MEASURED_LEVELS[version])
        assert measured_set.version == version and "σ=" + ", ".join(map(str, sigmas)) in measured_set.description
    # v3 differs from v2 only in its σ-15 level: the ensembled σ-15 set's denoiser, the one loaded copy of it
    v2, v3 = (get_action_set("denoise-cnn-measured", version).actions[-1].apply for version in (2, 3))
    for sigma, level in v3.levels.items():
        assert (level is v2.levels[sigma]) == (sigma != 15)
    assert v3.levels[15] is get_action_set("denoise-cnn-15", 4).actions[-1].apply
    assert v3.levels[15].orientations == 8 and v2.levels[15].orientations == 1
    assert "σ=15 averaged over 8 orientations" in get_action_set("denoise-cnn-measured", 3).description


@pytest.mark.parametrize(("sigma", "gain"), [(5, 2.0), (37, 0.5)])
def test_the_second_measured_set_fills_the_gaps_of_the_first(sigma, gain):
    """Below the lowest level (σ 5) and between two levels (σ 37) v1 clamps to or blends denoisers made for another σ;
    v2 has levels there. Measured: +4.63 / +1.59 dB on this crop, +4.69 / +0.93 on the 8 held-out BSD432 images."""
    clean = skdata.camera()[128:384, 128:384].astype(np.float32) / 255
    noisy = clean + np.random.default_rng(sigma).normal(0, sigma / 255, clean.shape).astype(np.float32)
    image = torch.from_numpy(noisy)[None, None]
    scores = {}
    for version in (1, 2):
        with torch.no_grad():
            estimate = get_action_set("denoise-cnn-measured", version).actions[-1].apply(image)
        scores[version] = psnr(clean, estimate[0, 0].numpy())
    assert scores[2] > scores[1] + gain, scores


def test_a_policy_of_the_measured_set_tiles_exactly():
    measured_set = get_action_set("denoise-cnn-measured")
    torch.manual_seed(4)
    model = PixelRLNet(ModelConfig(width=8, n_actions=10)).eval()
    with torch.no_grad():
        model.policy_head.bias[9] += 1.0  # the measured estimate wins everywhere, twice: 64 px of halo
    policy = Policy(model=model, action_set=measured_set, steps=2, noise_model=NoiseModel(sigma=25.0), name="m")
    clean = skdata.camera()[200:300, 150:240].astype(np.float32) / 255
    image = clean + np.random.default_rng(2).normal(0, 25 / 255, clean.shape).astype(np.float32)
    whole = api.restore(image, policy, device="cpu")
    tiled = api.restore(image, policy, device="cpu", tile_size=32)
    assert np.all(whole.actions == 9)
    np.testing.assert_allclose(tiled.image, whole.image, atol=1e-5)
    assert psnr(clean, whole.image) > psnr(clean, np.clip(image, 0, 1)) + 5.0  # a blend of matched denoisers
