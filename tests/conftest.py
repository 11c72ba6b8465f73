"""Shared fixtures: small deterministic policies and the location of the authors' release."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from napari_pixelrl.core.actions import DENOISE
from napari_pixelrl.core.checkpoint import Policy
from napari_pixelrl.core.color import COLOR
from napari_pixelrl.core.config import ModelConfig, NoiseModel
from napari_pixelrl.core.model import PixelRLNet

SHARED = Path(__file__).resolve().parents[2] / "shared"
RELEASE = SHARED / "reference" / "pixelrl-official"
BSD68 = SHARED / "data" / "BSD68"


def make_policy(seed: int = 0, width: int = 8, fixed_action: int | None = None) -> Policy:
    """A small random denoising policy; with ``fixed_action`` its argmax is that action everywhere."""
    torch.manual_seed(seed)
    model = PixelRLNet(ModelConfig(width=width)).eval()
    if fixed_action is not None:
        with torch.no_grad():
            model.policy_head.weight.zero_()
            model.policy_head.bias.zero_()
            model.policy_head.bias[fixed_action] = 10.0
    return Policy(model=model, action_set=DENOISE, steps=3, noise_model=NoiseModel(sigma=25.0), name="test")


def make_colour_policy(seed: int = 0) -> Policy:
    """A small random colour policy (the 13 colour actions on RGB states, 4 steps)."""
    torch.manual_seed(seed)
    model = PixelRLNet(ModelConfig(in_channels=3, n_actions=13, width=8))
    return Policy(model=model, action_set=COLOR, steps=4, noise_model=NoiseModel(kind="fading"), name="random colour")


TINY_STAGE = {
    "model": {"width": 4, "reward_filter_size": 5},
    "batch_size": 2,
    "crop_size": 16,
    "steps": 2,
    "validation_images": 1,
    "validation_crop": 16,
    "validate_every": 2,
    "device": "cpu",
}
"""Training settings small enough for a few episodes in a test (a recipe's ``defaults``)."""


@pytest.fixture
def policy() -> Policy:
    return make_policy()


@pytest.fixture
def release_dir() -> Path:
    if not (RELEASE / "pretrained_25.npz").is_file() or not BSD68.is_dir():
        pytest.skip(f"the authors' release and BSD68 are not at {SHARED} (they live outside the repository)")
    return RELEASE
