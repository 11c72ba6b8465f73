"""Where code runs: device choice, a one-line machine description and the source commit, for training records."""

from __future__ import annotations

import os
import platform
import subprocess
import warnings
from pathlib import Path

import torch

__all__ = [
    "PrecisionWarning",
    "cpu_family",
    "describe_machine",
    "has_native_bfloat16",
    "resolve_device",
    "source_commit",
    "usable_precision",
]


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


def cpu_family() -> str:
    """The widest vector unit torch uses on this CPU: ``"AMX"``, ``"AVX-512"``, ``"AVX2"`` or torch's own word.

    Training speed differs up to ~10x between these families, and their float rounding differs too, so every
    training record names it. Capability limits set with ``ATEN_CPU_CAPABILITY`` / ``ONEDNN_MAX_CPU_ISA`` count.
    """
    capability = torch.backends.cpu.get_cpu_capability()  # e.g. "AVX512", "AVX2", "DEFAULT", "VSX", "SVE256"
    if capability == "AVX512":
        return "AMX" if _probe(torch.cpu, "_is_amx_tile_supported") else "AVX-512"
    return capability


def has_native_bfloat16(device: torch.device | str = "cpu") -> bool:
    """Whether bfloat16 convolutions are native (fast) on ``device``.

    CUDA and MPS: yes. A CPU: only with AVX-512 BF16 or AMX instructions that oneDNN may use; elsewhere oneDNN
    emulates bfloat16 and a network runs about 11x slower than in float32 (measured on an AVX2-only AMD EPYC).
    """
    device = torch.device(device)
    if device.type != "cpu":
        return True
    native = _probe(torch.cpu, "_is_avx512_bf16_supported") or _probe(torch.cpu, "_is_amx_tile_supported")
    return native and torch.backends.mkldnn.is_available() and _probe(torch.ops.mkldnn, "_is_mkldnn_bf16_supported")


class PrecisionWarning(UserWarning):
    """bfloat16 was asked for where it is not native; float32 runs instead."""


def usable_precision(precision: str, device: torch.device | str = "cpu") -> str:
    """``precision``, or ``"float32"`` with a :class:`PrecisionWarning` where bfloat16 is not native on ``device``.

    Emulated bfloat16 is about 11x slower than float32 and less exact, so it is never worth running.
    """
    if precision != "bfloat16" or has_native_bfloat16(device):
        return precision
    warnings.warn(
        f"this CPU ({cpu_family()}) has no native bfloat16, where bfloat16 runs about 11x slower than float32: "
        "running float32 instead (pass precision='float32' to silence this)",
        PrecisionWarning,
        stacklevel=3,
    )
    return "float32"


def _probe(namespace: object, name: str) -> bool:
    # torch's CPU feature probes are private and not in every release: an absent probe means "no".
    try:
        return bool(getattr(namespace, name)())
    except (AttributeError, RuntimeError):
        return False


def describe_machine(device: torch.device | None = None) -> str:
    """One line naming the CPU (or GPU) with its vector family and bfloat16 support, core count and versions."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    bf16 = "native bf16" if has_native_bfloat16() else "no native bf16"
    where = f"{cpu} ({cpu_family()}, {bf16}), {os.cpu_count()} cores"
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
