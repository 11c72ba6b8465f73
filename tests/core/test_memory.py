from __future__ import annotations

import sys

import pytest
import torch

from napari_pixelrl.core.memory import release_free_memory, reuse_large_buffers


def test_opt_out_leaves_malloc_alone(monkeypatch):
    monkeypatch.setenv("NAPARI_PIXELRL_KEEP_MALLOC", "1")
    assert reuse_large_buffers.__wrapped__() is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_applies_on_linux(monkeypatch):
    monkeypatch.delenv("NAPARI_PIXELRL_KEEP_MALLOC", raising=False)
    assert reuse_large_buffers.__wrapped__() is True


def _rss_bytes() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_release_hands_kept_heap_back(monkeypatch):
    """A freed 256 MB buffer stays in the heap under the reuse settings; releasing gives it back."""
    monkeypatch.delenv("NAPARI_PIXELRL_KEEP_MALLOC", raising=False)
    if not reuse_large_buffers():
        pytest.skip("the malloc settings are off in this process")
    buffer = torch.ones(64 * 2**20)  # 256 MB, below the 512 MiB mmap threshold: served by the heap
    del buffer
    kept = _rss_bytes()
    release_free_memory()
    assert kept - _rss_bytes() > 128 * 2**20
