"""The npe2 manifest is valid and napari finds it through the installed package's entry point."""

from __future__ import annotations

import importlib
import subprocess
import sys
import zipfile
from pathlib import Path

from npe2 import PluginManifest

ROOT = Path(__file__).resolve().parents[1]


def test_manifest_file_validates():
    manifest = PluginManifest.from_file(ROOT / "napari.yaml")
    assert manifest.name == "napari-pixelrl"
    assert manifest.display_name == "PixelRL"


def test_installed_distribution_exposes_the_manifest():
    manifest = PluginManifest.from_distribution("napari-pixelrl")
    assert manifest.name == "napari-pixelrl"
    assert manifest.package_metadata.version


def test_wheel_contains_the_manifest_as_a_real_file(tmp_path):
    """The package-level symlink to napari.yaml must be dereferenced into the wheel (npe2 reads it there)."""
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = tmp_path.glob("napari_pixelrl-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        manifest = archive.read("napari_pixelrl/napari.yaml").decode()
        entry_points = archive.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    (tmp_path / "napari.yaml").write_text(manifest)
    assert PluginManifest.from_file(tmp_path / "napari.yaml").name == "napari-pixelrl"
    assert "napari-pixelrl = napari_pixelrl:napari.yaml" in entry_points
    assert "napari-pixelrl = napari_pixelrl.cli:main" in entry_points


def test_every_command_in_the_manifest_is_importable():
    manifest = PluginManifest.from_file(ROOT / "napari.yaml")
    assert manifest.contributions.commands
    for command in manifest.contributions.commands:
        module, _, attribute = command.python_name.partition(":")
        assert callable(getattr(importlib.import_module(module), attribute)), command.python_name
