"""The pictures in docs/images show the colours they claim to show."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_pixelrl import api

IMAGES = Path(__file__).resolve().parents[1] / "docs" / "images"


@pytest.mark.parametrize("path", sorted(IMAGES.glob("*.png")), ids=lambda path: path.name)
def test_screenshots_are_true_colour(path):
    # A palette of 256 colours moves the action colours (the box filter's olive became a pinkish beige).
    assert Image.open(path).mode in ("RGB", "RGBA")


def test_every_action_colour_of_the_action_map_picture_is_in_it():
    pixels = np.asarray(Image.open(IMAGES / "action-steps.png").convert("RGB")).astype(int).reshape(-1, 3)
    action_set = api.load_policy("gaussian-25").action_set
    for name, color in zip(action_set.names, action_set.colors, strict=True):
        nearest = np.abs(pixels - np.asarray(color)).max(axis=1).min()
        assert nearest <= 4, f"{name}: legend colour {color} is {nearest} grey levels away in the picture"
