"""Scripting on a viewer: napari_pixelrl.plugin.restore_layer."""

from __future__ import annotations

import numpy as np
import pytest

from napari_pixelrl import api
from napari_pixelrl._napari.layers import step_contrast_limits
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


def test_the_value_map_contrast_follows_the_step_slider(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-pixelrl", "camera-gaussian-25")
    noisy = viewer.layers["camera (gaussian sigma=25)"]
    stack = np.stack([noisy.data[:64, :80], noisy.data[200:264, 300:380]])  # (z, y, x): maps are (z, step, y, x)
    layer = viewer.add_image(stack, name="stack")
    values = restore_layer(viewer, layer, "gaussian-25", steps=3).values
    step_axis = viewer.dims.ndim - 3
    for step in (0, 2, 1):
        viewer.dims.set_current_step(step_axis, step)
        pooled = values.data[:, step]  # both planes of this step
        np.testing.assert_allclose(values.contrast_limits, np.percentile(pooled, [1, 99]), rtol=1e-5)
    # The steps differ by far more than one step's spread, so one range for all would flatten the later ones.
    first, last = np.percentile(values.data[:, 0], [1, 99]), np.percentile(values.data[:, 2], [1, 99])
    assert first[1] - first[0] > 3 * (last[1] - last[0])


def test_step_contrast_limits_of_a_constant_step_are_a_real_range():
    values = np.zeros((2, 4, 4), np.float32)
    values[1] = np.arange(16).reshape(4, 4)
    (low0, high0), (low1, high1) = step_contrast_limits(values)
    assert (low0, high0) == (-0.5, 0.5)
    np.testing.assert_allclose((low1, high1), np.percentile(np.arange(16), [1, 99]))
    with pytest.raises(ValueError, match="steps, H, W"):
        step_contrast_limits(np.zeros((4, 4)))
