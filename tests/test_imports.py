"""The core and the API must be usable without Qt or napari."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", ["napari_pixelrl.api", "napari_pixelrl.core", "napari_pixelrl.cli"])
def test_core_and_api_import_no_qt_or_napari(module):
    code = (
        f"import sys, importlib, pkgutil; import {module}; import napari_pixelrl.core as core\n"
        "for info in pkgutil.walk_packages(core.__path__, 'napari_pixelrl.core.'): importlib.import_module(info.name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('napari', 'qtpy', 'PyQt5', 'PyQt6', 'PySide2',"
        " 'PySide6', 'magicgui', 'vispy'))\n"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"{module} imported GUI modules: {out}"
