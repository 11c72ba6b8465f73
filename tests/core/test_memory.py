from __future__ import annotations

import sys

import pytest

from napari_pixelrl.core.memory import reuse_large_buffers


def test_opt_out_leaves_malloc_alone(monkeypatch):
    monkeypatch.setenv("NAPARI_PIXELRL_KEEP_MALLOC", "1")
    assert reuse_large_buffers.__wrapped__() is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_applies_on_linux(monkeypatch):
    monkeypatch.delenv("NAPARI_PIXELRL_KEEP_MALLOC", raising=False)
    assert reuse_large_buffers.__wrapped__() is True
