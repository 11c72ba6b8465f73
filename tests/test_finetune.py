"""api.fine_tune: a shipped Gaussian policy adapts to Poisson-Gaussian noise from each kind of training data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data as skdata

from napari_pixelrl import api
from napari_pixelrl.core.config import NoiseModel
from napari_pixelrl.core.metrics import psnr
from napari_pixelrl.core.noise import degrade

NOISE = NoiseModel(kind="poisson-gaussian", gain=0.1, sigma=2.0)  # far stronger than the policy's σ = 15
HELD_OUT = slice(230, 256)  # the bottom 10% of rows, which every source keeps out of training
UNIT = (0.0, 1.0)  # the floats' own scale, to train and to restore with (noise pushes them outside [0, 1])


@pytest.fixture(scope="module")
def scene():
    clean = skdata.camera()[:256, :256].astype(np.float32) / 255
    rng = np.random.default_rng(0)
    return clean, degrade(clean, NOISE, rng), degrade(clean, NOISE, rng)


def held_out_psnr(policy, clean, noisy) -> float:
    return psnr(api.restore(noisy[HELD_OUT], policy, intensity_range=UNIT).image, clean[HELD_OUT])


@pytest.mark.parametrize("kind", ["clean + noise model", "noisy/clean pairs", "noisy pairs", "single noisy image"])
def test_fine_tuning_raises_psnr_on_a_held_out_region(kind, scene, tmp_path):
    clean, noisy, second = scene
    data = {
        "clean + noise model": lambda: api.clean_images([clean], NOISE, intensity_range=UNIT),
        "noisy/clean pairs": lambda: api.noisy_clean_pairs([(noisy, clean)], intensity_range=UNIT),
        "noisy pairs": lambda: api.noisy_pairs([(noisy, second)], intensity_range=UNIT),
        "single noisy image": lambda: api.noisy_images(noisy, intensity_range=UNIT),
    }[kind]()
    updates = list(api.fine_tune("gaussian-15", data, tmp_path, episodes=20, batch_size=8, crop_size=32, lr=1e-3))
    assert [u.episode for u in updates] == list(range(1, 21))
    tuned = api.load_policy(tmp_path / "policy.safetensors")
    before = held_out_psnr(api.load_policy("gaussian-15"), clean, noisy)
    after = held_out_psnr(tuned, clean, noisy)
    assert after > before + 1.5, (before, after)
    stage = tuned.training["stages"][-1]
    assert stage["data"]["kind"] == data.record()["kind"] and stage["episodes_done"] == 20


def test_best_file_never_falls_below_the_start_and_follows_the_best_validated_episode(scene, tmp_path):
    clean = scene[0]
    data = api.clean_images([clean], NoiseModel(sigma=15.0), intensity_range=UNIT)  # the noise gaussian-15 suits
    settings = {"episodes": 4, "batch_size": 4, "crop_size": 24, "validate_every": 2}
    ruined = list(api.fine_tune("gaussian-15", data, tmp_path / "ruined", lr=1.0, **settings))  # Adam at lr 1
    best = api.load_policy(api.best_policy_file(tmp_path / "ruined"))
    start = api.load_policy("gaussian-15")
    stage = best.training["stages"][-1]
    assert stage["episodes_done"] == 0 and stage["validation_psnr"] > max(u.validation_psnr or 0 for u in ruined)
    for key, value in start.model.state_dict().items():
        assert torch.equal(best.model.state_dict()[key], value), key  # the start itself, not a trained copy
    assert api.load_policy(tmp_path / "ruined" / "policy.safetensors").training["stages"][-1]["episodes_done"] == 4

    unsuited = api.noisy_clean_pairs([(scene[1], scene[0])], intensity_range=UNIT)  # far more noise than σ = 15
    improved = list(api.fine_tune("gaussian-15", unsuited, tmp_path / "improved", lr=1e-3, **settings))
    scores = {u.episode: u.validation_psnr for u in improved if u.validation_psnr is not None}
    kept = api.load_policy(api.best_policy_file(tmp_path / "improved")).training["stages"][-1]
    assert kept["validation_psnr"] == max(scores.values()) and kept["episodes_done"] == max(scores, key=scores.get)
    assert kept["episodes_done"] > 0  # an episode beat the start, which the file held first


def test_minutes_alone_plan_the_episodes_and_a_rerun_resumes(scene, tmp_path, monkeypatch):
    _, noisy, _ = scene
    monkeypatch.setattr(api, "estimate_episode_seconds", lambda *args, **kwargs: 6.0)  # 6 s → 9 episodes/min
    data = api.noisy_images(noisy, intensity_range=UNIT)
    first = api.fine_tune("gaussian-15", data, tmp_path, minutes=1.0, crop_size=16, batch_size=2)
    updates = [next(first) for _ in range(2)]
    first.close()  # stopped after 2 of the 9 planned episodes: saved
    assert updates[-1].episodes == api.episodes_in(1.0, 6.0) == 9
    again = list(api.fine_tune("gaussian-15", data, tmp_path, minutes=1.0, crop_size=16, batch_size=2))
    assert [u.episode for u in again] == list(range(3, 10))  # resumed with the run's own schedule


def test_minutes_budget_stops_early_and_saves(scene, tmp_path):
    _, noisy, _ = scene
    updates = list(
        api.fine_tune("gaussian-15", api.noisy_images(noisy), tmp_path, episodes=1000, minutes=1e-4, crop_size=16)
    )
    assert len(updates) == 1
    assert api.load_policy(tmp_path / "policy.safetensors").training["stages"][-1]["episodes_done"] == 1


def test_data_helpers_map_intensities_like_restore_and_check_shapes():
    noisy = np.full((40, 40), 1000, np.uint16)
    noisy[:2, :2], noisy[5:7, 5:7], noisy[20, 20] = 500, 1500, 9000  # an isolated hot pixel does not count
    pairs = api.noisy_clean_pairs([(noisy, np.full((40, 40), 1000, np.uint16))])
    assert np.allclose(pairs.targets[0], 0.5)  # the clean image in the noisy image's default range (500, 1500)
    with pytest.raises(ValueError, match="same shape"):
        api.noisy_pairs([(noisy, noisy[:30])])
    with pytest.raises(ValueError, match="NaN"):
        api.noisy_images(np.full((40, 40), np.nan))
    with pytest.raises(ValueError, match="method"):
        api.noisy_images(noisy, method="magic")
    frames = api.noisy_images(np.stack([noisy, noisy + 1, noisy + 2]), method="frames")
    # one range for the whole stack, (500, 1502), as restore maps a stack
    assert len(frames.inputs) == 4
    assert np.allclose(frames.targets[0] - frames.inputs[0], 1 / 1002, atol=1e-6)
