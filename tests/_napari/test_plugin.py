"""Scripting on a viewer: napari_pixelrl.plugin.restore_layer."""

from __future__ import annotations

import numpy as np
import pytest

from napari_pixelrl import api
from napari_pixelrl.plugin import restore_layer


def test_restore_layer_from_a_script_adds_then_updates_three_layers(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-pixelrl", "camera-gaussian-25")
    noisy = viewer.layers["camera (gaussian sigma=25)"]
    noisy.data = noisy.data[:64, :80].copy()
    image, actions, values = restore_layer(viewer, noisy.name, "gaussian-25", steps=2)
    expected = api.restore(noisy.data, api.load_policy("gaussian-25"), steps=2)
    np.testing.assert_allclose(image.data, expected.image, atol=1e-4)
    assert actions.data.shape == values.data.shape == (2, 64, 80)
    count = len(viewer.layers)
    again = restore_layer(viewer, noisy, "gaussian-25", steps=2, value_map=False)
    assert again.image is image and again.actions is actions and again.values is None
    assert len(viewer.layers) == count - 1 and values not in viewer.layers  # no stale value map is left


def test_restore_layer_rejects_other_layer_types(make_napari_viewer):
    viewer = make_napari_viewer()
    labels = viewer.add_labels(np.zeros((8, 8), int))
    with pytest.raises(TypeError, match="Labels layer; PixelRL restores Image layers"):
        restore_layer(viewer, labels)
