"""Data-parallel training: replicas' shares of a batch, their samples, and a 2-process torchrun run against one
process training the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import TINY_STAGE
from PIL import Image

from napari_pixelrl import api, cli
from napari_pixelrl.core.distributed import Replicas
from napari_pixelrl.core.rollout import choose_actions
from napari_pixelrl.core.trainer import read_log


def test_replicas_split_the_global_batch_evenly():
    assert [Replicas(rank, 2).rows(8) for rank in (0, 1)] == [slice(0, 4), slice(4, 8)]
    assert Replicas().rows(5) == slice(0, 5) and Replicas().is_main and not Replicas(1, 2).is_main
    with pytest.raises(ValueError, match="batch_size 5 does not split evenly over 2 processes"):
        Replicas(1, 2).rows(5)


def test_replicas_sample_what_one_process_samples_for_their_rows():
    logits = torch.randn(6, 9, 5, 7)
    whole = choose_actions(logits, False, torch.Generator().manual_seed(3))
    parts = [
        choose_actions(logits[rows], False, torch.Generator().manual_seed(3), (rows, 6))
        for rows in (slice(0, 3), slice(3, 6))
    ]
    torch.testing.assert_close(torch.cat(parts), whole, rtol=0, atol=0)


def _recipe(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8)).save(data / f"img{i}.png")
    stage = {**TINY_STAGE, "data": str(data), "noise": {"kind": "gaussian", "sigma": 25}, "batch_size": 4}
    stages = [{"objective": o, "episodes": n} for o, n in (("denoiser", 2), ("imitation", 2), ("a2c", 3))]
    recipe = {"name": "ddp", "defaults": stage, "stages": stages}
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(recipe))
    return path


def test_two_processes_under_torchrun_train_what_one_process_trains(tmp_path):
    recipe = _recipe(tmp_path)
    assert cli.main(["train", str(tmp_path / "one"), "--config", str(recipe)]) == 0
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "napari_pixelrl", "train", str(tmp_path / "two"), "--config", str(recipe)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    one, two = (
        api.load_policy(tmp_path / "one" / "policy.safetensors"),
        api.load_policy(tmp_path / "two" / "policy.safetensors"),
    )
    for (name, a), b in zip(one.model.state_dict().items(), two.model.state_dict().values(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=name)
    # The logs (rank 0 only) report the global batch's numbers.
    logs = [read_log(tmp_path / run / "stage3-a2c") for run in ("one", "two")]
    assert [u.episode for u in logs[1]] == [1, 2, 3]
    np.testing.assert_allclose([u.reward for u in logs[1]], [u.reward for u in logs[0]], rtol=1e-4, atol=1e-6)
    assert two.training["stages"][-1]["episodes_done"] == 3
