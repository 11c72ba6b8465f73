"""Saving and loading policies without pickle.

Our format is a ``.safetensors`` file: the network's tensors plus a JSON header under the metadata key
``napari_pixelrl`` (model config, action set, noise model, episode length, training record, package version).
Files are written atomically (temporary file in the same folder, then rename), so an interrupted save never
leaves a half-written checkpoint under the final name.

:func:`import_chainer_npz` reads the authors' Chainer release (``pretrained_15/25/50.npz``) for users who have it;
those files are never shipped with this package.
"""

from __future__ import annotations

import json
import os
import secrets
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .. import __version__
from .actions import ActionSet, get_action_set
from .config import ModelConfig, NoiseModel
from .model import PixelRLNet

__all__ = [
    "CheckpointError",
    "Policy",
    "detect_format",
    "import_chainer_npz",
    "load_checkpoint",
    "read_header",
    "save_checkpoint",
    "write_atomically",
    "write_safetensors",
]

FORMAT_NAME = "napari-pixelrl-checkpoint"
FORMAT_VERSION = 1
_METADATA_KEY = "napari_pixelrl"


class CheckpointError(ValueError):
    """A policy file is missing, corrupt, of an unknown format, or does not match its own header."""


@dataclass
class Policy:
    """A network with everything needed to run it: actions, default episode length and provenance.

    Attributes
    ----------
    model : PixelRLNet
        The network (on CPU after loading; :func:`napari_pixelrl.api.restore` moves it).
    action_set : ActionSet
        What each policy output channel does.
    steps : int
        Default episode length T.
    noise_model : NoiseModel
        Degradation the policy was trained for.
    name : str
        Short name shown to users (shipped name or file stem).
    training : dict
        Free-form training record (config, seed, data, curves summary); empty when unknown.
    source : str
        Where the weights came from (a path, or a shipped name).
    description : str
        One line for users: what the policy is for.
    """

    model: PixelRLNet
    action_set: ActionSet
    steps: int
    noise_model: NoiseModel
    name: str
    training: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    description: str = ""

    def __repr__(self) -> str:
        """One line (the network and its history are long): name, task, noise, steps, size and stages."""
        parameters = sum(p.numel() for p in self.model.parameters())
        stages = len(self.training.get("stages", []))
        return (
            f"Policy({self.name!r}, actions={self.action_set.name!r}, noise={self.noise_model.describe()!r}, "
            f"steps={self.steps}, parameters={parameters:,}, training_stages={stages})"
        )


def _header(policy: Policy) -> dict[str, Any]:
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "name": policy.name,
        "description": policy.description,
        "model": policy.model.config.to_dict(),
        "action_set": {
            "name": policy.action_set.name,
            "version": policy.action_set.version,
            "actions": policy.action_set.names,
        },
        "steps": policy.steps,
        "noise_model": policy.noise_model.to_dict(),
        "training": policy.training,
    }


def save_checkpoint(policy: Policy, path: str | os.PathLike[str]) -> Path:
    """Write ``policy`` to ``path`` (``.safetensors``) atomically and return the path.

    Raises
    ------
    CheckpointError
        If the training record cannot be stored as JSON.
    """
    path = Path(path)
    try:
        header = json.dumps(_header(policy))
    except TypeError as err:
        raise CheckpointError(f"the policy's training record is not JSON-serialisable: {err}") from err
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in policy.model.state_dict().items()}
    return write_safetensors(tensors, path, {_METADATA_KEY: header})


def write_safetensors(tensors: dict[str, torch.Tensor], path: str | os.PathLike[str], metadata: dict[str, str]) -> Path:
    """Write a safetensors file atomically (:func:`write_atomically`)."""
    return write_atomically(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def write_atomically(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Replace ``path`` as a whole or not at all, creating its folder.

    ``write`` fills a new temporary file in the same folder (created with the permissions any new file gets, i.e.
    the user's umask, not a private temporary-file mode); it is flushed to disk and then renamed over ``path``. If
    ``write`` fails, ``path`` is untouched and the temporary file removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    mode = tmp.stat().st_mode & 0o777  # what the umask leaves of rw-rw-rw-
    try:
        write(tmp)
        os.chmod(tmp, mode)  # some writers (safetensors) recreate the file owner-only
        with open(tmp, "rb") as written:  # on disk before the rename makes it visible
            os.fsync(written.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def detect_format(path: str | os.PathLike[str]) -> str:
    """Tell our checkpoints from the authors' ``.npz`` by content: ``"safetensors"`` or ``"chainer-npz"``.

    Raises
    ------
    CheckpointError
        If the file does not exist or is neither format.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"policy file not found: {path}")
    with path.open("rb") as file:
        head = file.read(9)
    if head[:4] == b"PK\x03\x04":
        return "chainer-npz"
    if len(head) == 9 and head[8:9] == b"{":
        header_len = struct.unpack("<Q", head[:8])[0]
        if 0 < header_len <= path.stat().st_size - 8:
            return "safetensors"
    raise CheckpointError(
        f"{path} is neither a napari-pixelrl checkpoint (.safetensors) nor a PixelRL Chainer release (.npz)"
    )


def _build(path: Path, config: ModelConfig, state: dict[str, torch.Tensor]) -> PixelRLNet:
    model = PixelRLNet(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        detail = "; ".join(
            f"{what}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}"
            for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
            if keys
        )
        raise CheckpointError(f"{path}: tensors do not match the model its header describes ({detail})")
    model.load_state_dict({k: v.to(torch.float32) for k, v in state.items()})
    return model.eval()


def read_header(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON header of one of our checkpoints, without reading its tensors.

    Raises
    ------
    CheckpointError
        If the file is not a readable napari-pixelrl checkpoint.
    """
    path = Path(path)
    if detect_format(path) != "safetensors":
        raise CheckpointError(f"{path} is not a napari-pixelrl .safetensors checkpoint")
    try:
        with safe_open(path, framework="pt") as file:
            raw = (file.metadata() or {})[_METADATA_KEY]
        return json.loads(raw)
    except (SafetensorError, OSError, ValueError, KeyError) as err:
        raise CheckpointError(f"{path} has no readable napari-pixelrl header ({err})") from err


def load_checkpoint(path: str | os.PathLike[str]) -> Policy:
    """Load a policy written by :func:`save_checkpoint`.

    Raises
    ------
    CheckpointError
        If the file is missing, truncated or corrupt, has no napari-pixelrl header, names an unknown action set,
        or holds tensors that do not fit its own model config.
    """
    path = Path(path)
    if detect_format(path) != "safetensors":
        raise CheckpointError(f"{path} is not a napari-pixelrl .safetensors checkpoint")
    try:
        with safe_open(path, framework="pt") as file:
            raw_meta = file.metadata() or {}
            state = {key: file.get_tensor(key) for key in file.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is corrupt or truncated ({err}); save or download it again") from err
    if _METADATA_KEY not in raw_meta:
        raise CheckpointError(f"{path} is a safetensors file but not a napari-pixelrl checkpoint (no header)")
    try:
        meta = json.loads(raw_meta[_METADATA_KEY])
        if meta.get("format") != FORMAT_NAME:
            raise CheckpointError(f"{path}: unknown checkpoint format {meta.get('format')!r}")
        if meta.get("format_version", 0) > FORMAT_VERSION:
            raise CheckpointError(
                f"{path} was written by a newer napari-pixelrl ({meta.get('package_version')}); please upgrade"
            )
        config = ModelConfig.from_dict(meta["model"])
        action_set = get_action_set(meta["action_set"]["name"], int(meta["action_set"]["version"]))
        recorded = meta["action_set"].get("actions")
        if recorded is not None and list(recorded) != action_set.names:
            raise CheckpointError(
                f"{path} was trained with action set {action_set.name!r} v{action_set.version} = {recorded}, but the "
                f"registered set of that name and version has {action_set.names}; register the set it was trained "
                "with (a changed set needs a new version)"
            )
        noise = NoiseModel.from_dict(meta["noise_model"])
        steps = int(meta["steps"])
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: invalid checkpoint header ({err})") from err
    if len(action_set) != config.n_actions:
        raise CheckpointError(
            f"{path}: model has {config.n_actions} action channels but action set {action_set.name!r} has "
            f"{len(action_set)}"
        )
    return Policy(
        model=_build(path, config, state),
        action_set=action_set,
        steps=steps,
        noise_model=noise,
        name=meta.get("name") or path.stem,
        training=meta.get("training") or {},
        source=str(path),
        description=meta.get("description") or "",
    )


# Chainer layer path in the authors' release -> our state_dict key.
_CHAINER_KEYS = {
    "conv1/W": "trunk.0.weight",
    "conv1/b": "trunk.0.bias",
    "diconv2/diconv/W": "trunk.2.weight",
    "diconv2/diconv/b": "trunk.2.bias",
    "diconv3/diconv/W": "trunk.4.weight",
    "diconv3/diconv/b": "trunk.4.bias",
    "diconv4/diconv/W": "trunk.6.weight",
    "diconv4/diconv/b": "trunk.6.bias",
    "diconv5_pi/diconv/W": "policy_branch.0.weight",
    "diconv5_pi/diconv/b": "policy_branch.0.bias",
    "diconv6_pi/diconv/W": "policy_branch.2.weight",
    "diconv6_pi/diconv/b": "policy_branch.2.bias",
    "conv7_Wz/W": "gru.W_z.weight",
    "conv7_Uz/W": "gru.U_z.weight",
    "conv7_Wr/W": "gru.W_r.weight",
    "conv7_Ur/W": "gru.U_r.weight",
    "conv7_W/W": "gru.W.weight",
    "conv7_U/W": "gru.U.weight",
    "conv8_pi/model/W": "policy_head.weight",
    "conv8_pi/model/b": "policy_head.bias",
    "diconv5_V/diconv/W": "value_branch.0.weight",
    "diconv5_V/diconv/b": "value_branch.0.bias",
    "diconv6_V/diconv/W": "value_branch.2.weight",
    "diconv6_V/diconv/b": "value_branch.2.bias",
    "conv7_V/W": "value_head.weight",
    "conv7_V/b": "value_head.bias",
    "conv_R/W": "reward_conv.weight",
}


def import_chainer_npz(path: str | os.PathLike[str], sigma: float | None = None) -> Policy:
    """Load the authors' Chainer release (``pretrained_<sigma>.npz``) as a denoising :class:`Policy`.

    Parameters
    ----------
    path : path-like
        The ``.npz`` file (read with ``allow_pickle=False``).
    sigma : float, optional
        Noise level the file was trained for (0-255 scale); by default read from a ``_15``/``_25``/``_50``
        suffix of the file name, else unknown.

    Raises
    ------
    CheckpointError
        If the file is missing, not a valid ``.npz``, or lacks the release's layers.
    """
    path = Path(path)
    if detect_format(path) != "chainer-npz":
        raise CheckpointError(f"{path} is not a Chainer .npz file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise CheckpointError(f"{path} is corrupt or truncated ({err})") from err
    missing = sorted(set(_CHAINER_KEYS) - set(arrays))
    if missing:
        raise CheckpointError(
            f"{path} is an .npz file but not a PixelRL denoising release: missing {', '.join(missing[:4])}"
            f"{' ...' if len(missing) > 4 else ''}"
        )
    first, head = arrays["conv1/W"], arrays["conv8_pi/model/W"]
    config = ModelConfig(
        in_channels=first.shape[1],
        width=first.shape[0],
        n_actions=head.shape[0],
        reward_filter_size=arrays["conv_R/W"].shape[-1],
    )
    state = {
        ours: torch.from_numpy(np.asarray(arrays[theirs], dtype=np.float32)) for theirs, ours in _CHAINER_KEYS.items()
    }
    if sigma is None:
        suffix = path.stem.rsplit("_", 1)[-1]
        sigma = float(suffix) if suffix.isdigit() else None
    action_set = get_action_set("denoise", 1)
    return Policy(
        model=_build(path, config, state),
        action_set=action_set,
        steps=5,
        noise_model=NoiseModel(kind="gaussian", sigma=sigma),
        name=path.stem,
        training={"origin": "authors' Chainer release (Furuta et al. 2019), imported"},
        source=str(path),
    )
