"""Memory of an episode: how much it needs, how much the device has, and reuse of large CPU buffers.

Each PixelRL step allocates a few dozen feature maps of ``64 · H · W`` floats (40 MB for a 481x321 image).
glibc's malloc serves blocks above 32 MB with fresh ``mmap`` pages and unmaps them on free, so every step pays
for page faults and zeroing of all those pages: about 30% of an episode's time on a 2-core CPU. Raising the mmap
and trim thresholds lets the heap reuse those blocks. The change is process-wide and only affects how freed memory
is kept; it is applied once, on Linux with glibc, and can be turned off by setting the environment variable
``NAPARI_PIXELRL_KEEP_MALLOC=1``.

The kept heap fragments across episodes of different tiles, so a long tiled restore grew to twice its budget
(2.17 GiB peak for a 1.5 GiB budget on a 2048² image, 1.12 GiB without these settings but 24% slower);
:func:`release_free_memory` after each tile hands the free heap back (1.60 GiB, steps within a tile still reuse
their buffers).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from functools import cache

import torch

__all__ = ["available_bytes", "episode_bytes", "release_free_memory", "reuse_large_buffers"]

# Peak of an episode in feature maps of (width, H, W) float32, measured with return_values=True on 256², 512²
# and 1024² images (11-14 maps); rounded up.
_PEAK_MAPS = 16


def episode_bytes(height: int, width: int, channels: int, batch: int = 1) -> int:
    """Rough peak memory of one episode on ``batch`` images of ``height x width`` with ``channels`` features."""
    return _PEAK_MAPS * batch * channels * height * width * 4


def available_bytes(device: torch.device) -> int | None:
    """Memory that an episode on ``device`` can use now, or ``None`` when it cannot be told."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type == "cpu":
        try:
            with open("/proc/meminfo") as meminfo:
                for line in meminfo:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            return None
    return None


_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 512 * 2**20  # blocks up to 512 MiB come from the heap
_TRIM_THRESHOLD = 1024 * 2**20  # keep up to 1 GiB of free heap for reuse


@cache
def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc on Linux (it has ``mallopt`` and ``malloc_trim``), else ``None``."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018 - musl and other C libraries have neither
    except (OSError, AttributeError):
        return None
    return libc


@cache
def reuse_large_buffers() -> bool:
    """Apply the malloc settings once; return whether they are in effect."""
    libc = _glibc()
    if os.environ.get("NAPARI_PIXELRL_KEEP_MALLOC") or libc is None:
        return False
    mmap = libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
    return bool(mmap) and bool(libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))


def release_free_memory() -> None:
    """Give the heap's free memory back to the system (glibc's ``malloc_trim``) when
    :func:`reuse_large_buffers` is in effect; call it between episodes, not between their steps."""
    libc = _glibc()
    if libc is not None and reuse_large_buffers():
        libc.malloc_trim(0)
