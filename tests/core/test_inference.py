"""n-D arrays, channels, RGB, lazy (dask, zarr) inputs and outputs, each against plain 2-D restores."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import zarr
from conftest import make_policy

from napari_pixelrl import api
from napari_pixelrl.core import inference
from napari_pixelrl.core.inference import image_layout


@pytest.fixture(scope="module")
def varied():
    policy = make_policy(seed=1)
    policy.model.policy_head.weight.data.mul_(30.0)  # actions change from pixel to pixel
    return policy


def test_layout_of_stacks_channels_and_rgb():
    assert image_layout((5, 7)).map_shape(3) == (3, 5, 7)
    stack = image_layout((2, 4, 5, 7))
    assert stack.plane_axes == (2, 3) and stack.stack_shape == (2, 4) and stack.map_shape(3) == (2, 4, 3, 5, 7)
    rgb = image_layout((40, 30, 3))
    assert rgb.channel_axis == 2 and rgb.plane_axes == (0, 1) and rgb.map_shape(5) == (3, 5, 40, 30)
    assert image_layout((40, 30, 3), rgb=False).plane_axes == (1, 2)  # 40 planes of 30 x 3
    channels = image_layout((6, 2, 40, 30), channel_axis=1)
    assert channels.index((4, 1), slice(0, 5), slice(2, 3)) == (4, 1, slice(0, 5), slice(2, 3))
    assert channels.channel((4, 1)) == 1
    with pytest.raises(ValueError, match="channel_axis 3 does not fit"):
        image_layout((40, 30, 3), channel_axis=3)


def test_a_4d_array_is_restored_plane_by_plane_in_the_arrays_range(varied):
    image = np.random.default_rng(0).integers(0, 3000, (2, 3, 21, 19)).astype(np.uint16)
    result = api.restore(image, varied, return_values=True)
    assert result.image.shape == image.shape and result.actions.shape == (2, 3, 3, 21, 19)
    whole = api.default_intensity_range(image)
    for z in range(2):
        for t in range(3):
            alone = api.restore(image[z, t], varied, return_values=True, intensity_range=whole)
            np.testing.assert_allclose(result.image[z, t], alone.image, rtol=1e-6)
            np.testing.assert_array_equal(result.actions[z, t], alone.actions)
            np.testing.assert_allclose(result.values[z, t], alone.values, atol=1e-5)


def test_rgb_is_restored_channel_by_channel(varied):
    image = np.random.default_rng(1).integers(0, 256, (24, 20, 3)).astype(np.uint8)
    result = api.restore(image, varied)
    assert result.image.shape == (24, 20, 3) and result.actions.shape == (3, 3, 24, 20)
    for c in range(3):
        alone = api.restore(np.ascontiguousarray(image[..., c]), varied)
        np.testing.assert_allclose(result.image[..., c], alone.image, rtol=1e-6)
        np.testing.assert_array_equal(result.actions[c], alone.actions)


def test_each_channel_gets_its_own_default_range(varied):
    rng = np.random.default_rng(2)
    image = np.stack([rng.integers(0, 100, (2, 22, 18)), rng.integers(1000, 60000, (2, 22, 18))], axis=1)
    image = image.astype(np.uint16)  # (Z=2, C=2, Y, X), channels far apart in brightness
    result = api.restore(image, varied, channel_axis=1)
    assert result.actions.shape == (2, 2, 3, 22, 18)
    for c in range(2):
        own = api.default_intensity_range(image[:, c])
        alone = api.restore(image[:, c], varied, intensity_range=own)
        np.testing.assert_allclose(result.image[:, c], alone.image, rtol=1e-6)
        np.testing.assert_array_equal(result.actions[:, c], alone.actions)


class ReadRecorder:
    """An array-like over a NumPy array that records the shape of every read."""

    def __init__(self, array: np.ndarray) -> None:
        self.array, self.reads = array, []
        self.shape, self.dtype, self.ndim = array.shape, array.dtype, array.ndim

    def __getitem__(self, index):
        part = self.array[index]
        self.reads.append(part.shape)
        return part


def test_dask_input_is_read_tile_by_tile_and_never_whole(varied):
    image = np.random.default_rng(3).random((2, 150, 140)).astype(np.float32) * 7.0  # range from the data
    recorder = ReadRecorder(image)
    lazy = da.from_array(recorder, chunks=(1, 50, 70), asarray=False)
    result = api.restore(lazy, varied, tile_size=40)
    expected = api.restore(image, varied, tile_size=40)
    np.testing.assert_array_equal(result.actions, expected.actions)
    np.testing.assert_allclose(result.image, expected.image, rtol=1e-6)
    largest = max(int(np.prod(shape)) for shape in recorder.reads)
    assert largest <= 50 * 70  # dask read chunk by chunk; no read of a whole plane, let alone the array


def test_zarr_in_zarr_out(tmp_path, varied):
    image = np.random.default_rng(4).integers(0, 4096, (3, 90, 70)).astype(np.uint16)
    source = zarr.open_array(str(tmp_path / "in.zarr"), mode="w", shape=image.shape, chunks=(1, 32, 32), dtype="u2")
    source[:] = image
    out = api.zarr_restoration(tmp_path / "out.zarr", source.shape, 3, values=True)
    result = api.restore(source, varied, return_values=True, out=out, tile_size=32)
    assert result is out
    expected = api.restore(image, varied, return_values=True)
    reopened = zarr.open_group(str(tmp_path / "out.zarr"), mode="r")
    np.testing.assert_array_equal(reopened["actions"][:], expected.actions)
    np.testing.assert_allclose(reopened["image"][:], expected.image, rtol=1e-6)
    np.testing.assert_allclose(reopened["values"][:], expected.values, atol=1e-5)


def test_lazy_input_with_nan_is_refused_before_any_work(varied):
    image = np.zeros((2, 30, 30), np.float32)
    image[1, 20, 3] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinite pixel\(s\) in plane \(1,\)"):
        next(api.restore_steps(da.from_array(image, chunks=(1, 30, 30)), varied))


def test_out_of_the_wrong_shape_is_refused(varied):
    image = np.zeros((30, 30), np.float32)
    wrong = api.Restoration(np.empty((30, 30), np.float32), np.empty((2, 30, 30), np.uint8), None)
    with pytest.raises(ValueError, match=r"out.actions must have shape \(3, 30, 30\)"):
        api.restore(image, varied, out=wrong)


def test_results_larger_than_memory_ask_for_a_zarr_output(monkeypatch, varied):
    image = np.zeros((100, 20, 24), np.float32)  # results 100 x 480 x (4 + 3) bytes = 336 kB; a plane 245 kB
    monkeypatch.setattr(inference, "available_bytes", lambda device: 300_000)
    with pytest.raises(MemoryError, match="zarr_restoration"):
        api.restore(image, varied)
