"""The documented examples run end to end (with tiny settings)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy import ndimage
from skimage import data as skdata

from napari_pixelrl import api
from napari_pixelrl.core.checkpoint import read_header

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_custom_action_set_example_trains_saves_and_restores(tmp_path):
    example = _load("custom_action_set")
    data = tmp_path / "clean"
    data.mkdir()
    for name in ("camera", "coins", "moon", "page"):
        Image.fromarray(getattr(skdata, name)()).save(data / f"{name}.png")
    run = tmp_path / "run"
    argv = ["--data", str(data), "--run", str(run), "--episodes", "3", "--batch-size", "2", "--crop-size", "16"]
    gain = example.main([*argv, "--width", "4"])
    assert np.isfinite(gain)
    header = read_header(run / "policy.safetensors")
    assert header["action_set"] == {
        "name": "example-3x3",
        "version": 1,
        "actions": ["do nothing", "darker", "brighter", "median 3x3", "mean 3x3"],
    }
    policy = api.load_policy(run / "policy.safetensors")
    assert policy.action_set is example.MY_ACTIONS and policy.model.config.n_actions == 5
    # The set's radius (1) enters the tile halo: tiles of 24 px restore exactly as the whole image.
    noisy = np.random.default_rng(0).random((70, 53)).astype(np.float32)
    whole = api.restore(noisy, policy, device="cpu", intensity_range=(0, 1))
    tiled = api.restore(noisy, policy, device="cpu", intensity_range=(0, 1), tile_size=24)
    np.testing.assert_allclose(tiled.image, whole.image, atol=1e-5)
    np.testing.assert_array_equal(tiled.actions, whole.actions)
    # Medians and means of 3x3 windows, as scipy computes them.
    image = np.random.default_rng(1).random((1, 1, 9, 8)).astype(np.float32)
    median = example.median_3x3(torch.from_numpy(image))[0, 0].numpy()
    np.testing.assert_array_equal(median, ndimage.median_filter(image[0, 0], 3, mode="nearest"))
    mean = example.mean_3x3(torch.from_numpy(image))[0, 0].numpy()
    np.testing.assert_allclose(mean, ndimage.uniform_filter(image[0, 0], 3, mode="mirror"), atol=1e-6)
