from __future__ import annotations

import json
import os
import struct

import numpy as np
import pytest
import torch
from conftest import make_policy

from napari_pixelrl import api
from napari_pixelrl.core import checkpoint
from napari_pixelrl.core.checkpoint import (
    CheckpointError,
    detect_format,
    import_chainer_npz,
    load_checkpoint,
    save_checkpoint,
)


def _same_outputs(a, b):
    image = torch.rand(1, 1, 11, 13, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out_a, out_b = a.model(image), b.model(image)
    torch.testing.assert_close(out_a.logits, out_b.logits, rtol=0, atol=0)
    torch.testing.assert_close(out_a.value, out_b.value, rtol=0, atol=0)


def test_save_load_round_trip_gives_identical_predictions(tmp_path):
    policy = make_policy(seed=1)
    policy.training = {"seed": 3, "episodes": 10}
    path = save_checkpoint(policy, tmp_path / "p.safetensors")
    loaded = load_checkpoint(path)
    _same_outputs(policy, loaded)
    assert loaded.model.config == policy.model.config
    assert loaded.action_set is policy.action_set
    assert (loaded.steps, loaded.noise_model, loaded.training) == (3, policy.noise_model, {"seed": 3, "episodes": 10})
    assert [p.name for p in tmp_path.iterdir()] == ["p.safetensors"]  # no temporary file left behind


def test_header_records_versions_and_action_names(tmp_path):
    path = save_checkpoint(make_policy(), tmp_path / "p.safetensors")
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    meta = json.loads(json.loads(raw[8 : 8 + length])["__metadata__"]["napari_pixelrl"])
    assert meta["format"] == "napari-pixelrl-checkpoint"
    assert meta["action_set"]["actions"][1] == "do nothing"
    assert meta["package_version"]
    assert meta["model"]["width"] == 8


def test_failed_save_keeps_the_previous_file(tmp_path, monkeypatch):
    path = save_checkpoint(make_policy(seed=1), tmp_path / "p.safetensors")
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint, "save_file", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(make_policy(seed=2), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["p.safetensors"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_saved_files_get_the_permissions_of_any_new_file(tmp_path):
    """Not the owner-only mode of a temporary file: a policy saved on a shared server is readable by whoever may
    read the user's other new files."""
    umask = os.umask(0o022)
    try:
        path = save_checkpoint(make_policy(seed=1), tmp_path / "p.safetensors")
        assert path.stat().st_mode & 0o777 == 0o644
        os.umask(0o077)
        text = checkpoint.write_atomically(tmp_path / "notes.txt", lambda tmp: tmp.write_text("x"))
        assert text.stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(umask)


def test_truncated_file_raises_a_clear_error(tmp_path):
    path = save_checkpoint(make_policy(), tmp_path / "p.safetensors")
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(path)


def test_garbage_and_missing_files_raise_clear_errors(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x89PNG\r\n\x1a\n not a checkpoint")
    with pytest.raises(CheckpointError, match="neither a napari-pixelrl checkpoint"):
        detect_format(junk)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "absent.safetensors")


def test_tensors_that_do_not_fit_the_header_are_rejected(tmp_path, monkeypatch):
    path = save_checkpoint(make_policy(), tmp_path / "p.safetensors")
    header = checkpoint._header(make_policy())
    header["model"]["width"] = 16
    monkeypatch.setattr(checkpoint, "_header", lambda policy: header)
    save_checkpoint(make_policy(), path)
    with pytest.raises(CheckpointError, match="do not match the model"):
        load_checkpoint(path)


def test_unknown_action_set_is_rejected(tmp_path, monkeypatch):
    header = checkpoint._header(make_policy())
    header["action_set"]["name"] = "colour"
    monkeypatch.setattr(checkpoint, "_header", lambda policy: header)
    path = save_checkpoint(make_policy(), tmp_path / "p.safetensors")
    with pytest.raises(CheckpointError, match="unknown action set 'colour'"):
        load_checkpoint(path)


def test_checkpoint_of_a_changed_action_set_is_rejected(tmp_path, monkeypatch):
    header = checkpoint._header(make_policy())
    header["action_set"]["actions"] = ["renamed", *header["action_set"]["actions"][1:]]
    monkeypatch.setattr(checkpoint, "_header", lambda policy: header)
    path = save_checkpoint(make_policy(), tmp_path / "p.safetensors")
    with pytest.raises(CheckpointError, match="was trained with action set 'denoise' v1"):
        load_checkpoint(path)


def test_policy_with_a_custom_action_set_round_trips(tmp_path):
    from napari_pixelrl.core.actions import ActionSet, box_filter, register_action_set
    from napari_pixelrl.core.config import ModelConfig
    from napari_pixelrl.core.model import PixelRLNet

    custom = register_action_set(
        ActionSet.from_functions("test-roundtrip", {"keep": lambda x: x, "blur": box_filter}, radius=2)
    )
    torch.manual_seed(0)
    model = PixelRLNet(ModelConfig(width=4, n_actions=2)).eval()
    policy = make_policy()
    policy.model, policy.action_set = model, custom
    loaded = load_checkpoint(save_checkpoint(policy, tmp_path / "custom.safetensors"))
    assert loaded.action_set is custom
    image = torch.rand(1, 1, 12, 12)
    torch.testing.assert_close(loaded.model(image).logits, model(image).logits)


def _as_chainer_npz(policy, path):
    state = policy.model.state_dict()
    np.savez(path, **{theirs: state[ours].numpy() for theirs, ours in checkpoint._CHAINER_KEYS.items()})


def test_chainer_importer_maps_every_layer(tmp_path):
    policy = make_policy(seed=5, width=8)
    _as_chainer_npz(policy, tmp_path / "pretrained_15.npz")
    imported = import_chainer_npz(tmp_path / "pretrained_15.npz")
    _same_outputs(policy, imported)
    assert imported.noise_model.sigma == 15.0 and imported.steps == 5
    torch.testing.assert_close(imported.model.reward_conv.weight, policy.model.reward_conv.weight)


def test_npz_without_the_release_layers_is_rejected(tmp_path):
    np.savez(tmp_path / "other.npz", weights=np.zeros(3))
    with pytest.raises(CheckpointError, match="not a PixelRL denoising release"):
        import_chainer_npz(tmp_path / "other.npz")


def test_truncated_npz_is_rejected(tmp_path):
    _as_chainer_npz(make_policy(), tmp_path / "p.npz")
    data = (tmp_path / "p.npz").read_bytes()
    (tmp_path / "p.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        import_chainer_npz(tmp_path / "p.npz")


def test_policy_used_for_restore_saves_and_reloads_identically(tmp_path):
    policy = make_policy(seed=6)
    image = np.random.default_rng(0).random((16, 16)).astype(np.float32)
    before = api.restore(image, policy, device="cpu")  # leaves the model in channels_last layout
    loaded = load_checkpoint(save_checkpoint(policy, tmp_path / "p.safetensors"))
    after = api.restore(image, loaded, device="cpu")
    np.testing.assert_array_equal(after.image, before.image)
    np.testing.assert_array_equal(after.actions, before.actions)


def test_a_policy_prints_as_one_short_line():
    from napari_pixelrl import api

    text = repr(api.load_policy("gaussian-25"))
    assert "\n" not in text and len(text) < 200
    assert text.startswith("Policy('gaussian-25'") and "noise='gaussian sigma=25'" in text and "steps=5" in text
