"""Helpers shared by the benchmark scripts: where the shared data lives, timing, and machine description."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from napari_pixelrl.core.environment import describe_machine

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
    return describe_machine()
