"""The npe2 manifest is valid and napari finds it through the installed package's entry point."""

from __future__ import annotations

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
