"""The policies shipped in the package: present, small, documented, reproducible from their record, and working."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data as skdata

from napari_pixelrl import api
from napari_pixelrl.core.config import NoiseModel, TrainConfig
from napari_pixelrl.core.metrics import psnr
from napari_pixelrl.core.noise import degrade

SHIPPED = ("gaussian-15", "gaussian-25", "gaussian-50", "gaussian-blind", "poisson-gaussian")


def test_the_five_policies_are_listed_with_a_description():
    policies = api.list_policies()
    assert set(SHIPPED) <= set(policies)
    assert all(len(policies[name]) > 20 and "\n" not in policies[name] for name in SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_policy_is_small_and_carries_its_training_record(name):
    assert (api.WEIGHTS_DIR / f"{name}.safetensors").stat().st_size <= 2_000_000
    policy = api.load_policy(name)
    assert policy.name == name and policy.steps == 5
    stages = policy.training["stages"]
    assert stages[0]["objective"] == "denoiser"  # every policy goes back to our own warm start
    for stage in stages:
        config = TrainConfig.from_dict(stage["config"])  # the record is a complete, valid config
        assert stage["episodes_done"] == config.episodes
        assert stage["wall_seconds"] > 0 and stage["machine"] and stage["source_commit"]
        assert stage["data"]["fingerprint"] and stage["data"]["train_images"] > 0
        assert "BSD68" not in stage["data"]["source"] and "test" not in stage["data"]["source"]
    assert TrainConfig.from_dict(stages[-1]["config"]).noise == policy.noise_model


def _gain(policy_name: str, noise: NoiseModel, image: str) -> float:
    clean = getattr(skdata, image)()[:192, :192].astype(np.float32) / 255.0
    noisy = degrade(clean, noise, np.random.default_rng(0))
    restored = api.restore(noisy, api.load_policy(policy_name), device="cpu", intensity_range=(0, 1)).image
    return psnr(restored, clean) - psnr(noisy, clean)
