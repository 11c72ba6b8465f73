"""Helpers shared by the benchmark scripts: where the shared data lives, timing, and machine description."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch

SHARED = Path(__file__).resolve().parents[2] / "shared"
RELEASE = SHARED / "reference" / "pixelrl-official"
BSD68 = SHARED / "data" / "BSD68"

T = TypeVar("T")


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    """Result of ``fn()`` and the wall-clock seconds it took."""
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def machine() -> str:
    """One line naming the CPU, core count and library versions."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"Python {platform.python_version()}"
    )
