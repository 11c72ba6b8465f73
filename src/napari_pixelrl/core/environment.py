"""Where code runs: device choice, a one-line machine description and the source commit, for training records."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import torch

__all__ = ["describe_machine", "resolve_device", "source_commit"]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA, then Apple MPS, then CPU; any other value is passed to ``torch.device``.

    Raises
    ------
    ValueError
        If the device string is unknown or names a CUDA device that torch cannot see.
    """
    if str(device) != "auto":
        try:
            resolved = torch.device(device)
        except RuntimeError as err:
            raise ValueError(f"unknown device {device!r}: use 'auto', 'cpu', 'cuda', 'cuda:1' or 'mps'") from err
        if resolved.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {device!r} asked for, but torch sees no CUDA GPU; use device='auto' or 'cpu'")
        return resolved
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def describe_machine(device: torch.device | None = None) -> str:
    """One line naming the CPU (or GPU), core count and library versions."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    where = f"{cpu}, {os.cpu_count()} cores"
    if device is not None and device.type == "cuda":
        where = f"{torch.cuda.get_device_name(device)} ({where})"
    return f"{where}, torch {torch.__version__} ({torch.get_num_threads()} threads), Python {platform.python_version()}"


def source_commit() -> str | None:
    """The git commit of the source tree this package runs from (with ``+dirty`` if modified), else ``None``."""
    root = Path(__file__).resolve().parents[3]
    if not (root / ".git").exists():
        return None
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "src"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")
