"""Each action against OpenCV (the reference the paper used) and scipy, everywhere including borders."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest
import torch
from scipy import ndimage

from napari_pixelrl.core.actions import (
    DENOISE,
    Action,
    ActionSet,
    apply_actions,
    bilateral_filter,
    box_filter,
    gaussian_blur,
    get_action_set,
    median_blur,
)

SHAPES = [(3, 3), (5, 7), (23, 31)]


def _image(shape, seed=0, low=-0.1, high=1.1):
    # States are not clipped during an episode, so values slightly outside [0, 1] must work too.
    return np.random.default_rng(seed).uniform(low, high, shape).astype(np.float32)


def _torch(image, dtype=torch.float32):
    return torch.from_numpy(image)[None, None].to(dtype)


OPENCV_CASES = {
    "gaussian 0.5": (lambda t: gaussian_blur(t, 0.5), lambda a: cv2.GaussianBlur(a, (5, 5), 0.5)),
    "gaussian 1.5": (lambda t: gaussian_blur(t, 1.5), lambda a: cv2.GaussianBlur(a, (5, 5), 1.5)),
    "bilateral 0.1": (lambda t: bilateral_filter(t, 0.1, 5.0), lambda a: cv2.bilateralFilter(a, 5, 0.1, 5)),
    "bilateral 1.0": (lambda t: bilateral_filter(t, 1.0, 5.0), lambda a: cv2.bilateralFilter(a, 5, 1.0, 5)),
    "median": (median_blur, lambda a: cv2.medianBlur(a, 5)),
    "box": (box_filter, lambda a: cv2.boxFilter(a, -1, (5, 5))),
}


@pytest.mark.parametrize(("name", "shape"), list(itertools.product(OPENCV_CASES, SHAPES)))
def test_filter_matches_opencv_everywhere(name, shape):
    ours, reference = OPENCV_CASES[name]
    image = _image(shape)
    expected = reference(image)
    got = ours(_torch(image))[0, 0].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


def test_gaussian_border_is_reflect_101_like_scipy_mirror():
    image = _image((9, 12), seed=1)
    kernel = cv2.getGaussianKernel(5, 1.5)[:, 0]
    # scipy's "mirror" mode is dcb|abcd|cba, i.e. reflect-101; truncate=2/1.5 keeps a 5-tap kernel.
    expected = ndimage.correlate(image.astype(np.float64), np.outer(kernel, kernel), mode="mirror")
    got = gaussian_blur(_torch(image, torch.float64), 1.5)[0, 0].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-12)


def test_median_border_replicates_edge_like_scipy_nearest():
    image = _image((8, 11), seed=2)
    expected = ndimage.median_filter(image, size=5, mode="nearest")
    np.testing.assert_array_equal(median_blur(_torch(image))[0, 0].numpy(), expected)


def test_box_border_is_reflect_101():
    image = _image((6, 6), seed=3).astype(np.float64)
    expected = ndimage.uniform_filter(image, size=5, mode="mirror")
    np.testing.assert_allclose(box_filter(_torch(image, torch.float64))[0, 0].numpy(), expected, atol=1e-12)


def test_bilateral_window_is_the_13_pixel_disk():
    # A single bright pixel at distance (2, 1) from the centre lies outside the radius-2 disk: no influence.
    image = np.zeros((5, 5), np.float32)
    image[0, 1] = 1.0
    image_on_disk = np.zeros((5, 5), np.float32)
    image_on_disk[0, 2] = 1.0  # distance 2: inside
    centre = lambda a: bilateral_filter(_torch(a), 1.0, 5.0)[0, 0, 2, 2].item()  # noqa: E731
    assert centre(image) == 0.0
    assert centre(image_on_disk) > 0.0


def test_shift_actions_add_one_grey_level_without_clipping():
    image = _torch(np.array([[0.0, 1.0, 0.5]] * 3, np.float32))
    minus, _, plus = (DENOISE.actions[i].apply(image) for i in range(3))
    np.testing.assert_allclose((plus - image).numpy(), 1 / 255, atol=1e-7)
    np.testing.assert_allclose((image - minus).numpy(), 1 / 255, atol=1e-7)
    assert plus.max() > 1.0 and minus.min() < 0.0


def test_filters_work_batched_and_in_float64():
    images = np.stack([_image((7, 9), seed=s) for s in range(3)])
    batch = torch.from_numpy(images)[:, None]
    for action in DENOISE.actions:
        together = action.apply(batch)
        alone = torch.cat([action.apply(batch[i : i + 1]) for i in range(3)])
        torch.testing.assert_close(together, alone)
        assert action.apply(batch.double()).dtype == torch.float64


def _loop_reference(image, action_map, action_set):
    """Per pixel, run that pixel's action on the whole image and keep that pixel: the definition, slowly."""
    out = np.empty_like(image)
    for y, x in np.ndindex(*image.shape):
        candidate = action_set.actions[action_map[y, x]].apply(_torch(image))[0, 0].numpy()
        out[y, x] = candidate[y, x]
    return out


def test_selection_matches_a_per_pixel_loop():
    image = _image((6, 7), seed=4)
    action_map = np.random.default_rng(5).integers(0, len(DENOISE), image.shape)
    got = apply_actions(_torch(image), torch.from_numpy(action_map)[None], DENOISE)[0, 0].numpy()
    np.testing.assert_array_equal(got, _loop_reference(image, action_map, DENOISE))


def test_only_chosen_filters_are_computed():
    calls = []

    def recording(index):
        return Action(str(index), lambda t: calls.append(index) or t + index)

    action_set = ActionSet("recording", 1, tuple(recording(i) for i in range(5)))
    action_map = torch.tensor([[[1, 3, 1], [3, 1, 3], [1, 1, 1]]])
    out = apply_actions(torch.zeros(1, 1, 3, 3), action_map, action_set)
    assert sorted(calls) == [1, 3]
    np.testing.assert_array_equal(out[0, 0].numpy(), action_map[0].numpy())


def test_bad_inputs_are_rejected_clearly():
    with pytest.raises(ValueError, match="at least 3x3"):
        gaussian_blur(torch.zeros(1, 1, 2, 5), 0.5)
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        box_filter(torch.zeros(5, 5))
    with pytest.raises(ValueError, match="action indices"):
        apply_actions(torch.zeros(1, 1, 4, 4), torch.full((1, 4, 4), 9), DENOISE)
    with pytest.raises(ValueError, match="unknown action set"):
        get_action_set("colour", 1)


def test_median_handles_ties_and_constant_regions_exactly():
    image = np.random.default_rng(6).integers(0, 3, (17, 19)).astype(np.float32)
    image[:6, :6] = 2.0
    np.testing.assert_array_equal(median_blur(_torch(image))[0, 0].numpy(), cv2.medianBlur(image, 5))


def test_median_network_is_a_median_for_every_position_of_the_middle_value():
    # Each of the 25 inputs in turn holds the median (12 smaller, 12 larger values around it).
    values = torch.arange(25, dtype=torch.float32)
    rng = np.random.default_rng(7)
    for _ in range(50):
        order = torch.from_numpy(rng.permutation(25))
        windows = values[order].view(1, 1, 5, 5)
        assert median_blur(windows)[0, 0, 2, 2].item() == 12.0


def _brighten(image):
    return image + 0.1


def test_custom_action_set_from_functions_registers_and_runs():
    from napari_pixelrl.core.actions import register_action_set, registered_action_sets

    custom = ActionSet.from_functions(
        "test-brightness", {"keep": lambda x: x, "brighten": _brighten, "blur": box_filter}, radius=2
    )
    assert custom.names == ["keep", "brighten", "blur"] and len(set(custom.colors)) == 3
    register_action_set(custom)
    register_action_set(custom)  # the same object again is harmless
    assert get_action_set("test-brightness") is custom
    assert custom in registered_action_sets() and DENOISE in registered_action_sets()
    image = _torch(_image((9, 11)))
    action_map = torch.tensor([[0, 1, 2] * 33]).reshape(1, 9, 11)
    out = apply_actions(image, action_map, custom)
    expected = torch.where(
        action_map == 1, image[:, 0] + 0.1, torch.where(action_map == 2, box_filter(image)[:, 0], image[:, 0])
    )
    torch.testing.assert_close(out[:, 0], expected)
    other = ActionSet.from_functions("test-brightness", {"a": lambda x: x, "b": _brighten}, radius=0)
    with pytest.raises(ValueError, match="already registered"):
        register_action_set(other)
    newer = ActionSet.from_functions("test-brightness", {"a": lambda x: x, "b": _brighten}, radius=0, version=2)
    register_action_set(newer)
    assert get_action_set("test-brightness") is newer and get_action_set("test-brightness", 1) is custom


@pytest.mark.parametrize(
    ("functions", "kwargs", "message"),
    [
        ({"only": lambda x: x}, {"radius": 0}, "at least two"),
        ({"a": lambda x: x, "b": lambda x: x[..., :-1]}, {"radius": 0}, "same shape"),
        ({"a": lambda x: x, "b": lambda x: x.double()}, {"radius": 0}, "dtype"),
        ({"a": lambda x: x, "b": lambda x: x.numpy()}, {"radius": 0}, "returned ndarray"),
        ({"a": lambda x: x, "b": lambda x: x}, {"radius": -1}, "radius"),
        ({"a": lambda x: x, "b": lambda x: x}, {"radius": 0, "colors": [(1, 2, 3)]}, "colours"),
    ],
)
def test_bad_custom_action_sets_are_refused_with_the_reason(functions, kwargs, message):
    with pytest.raises(ValueError, match=message):
        ActionSet.from_functions("test-bad", functions, **kwargs)


def test_action_sets_from_entry_points_are_found_on_first_miss(monkeypatch):
    from napari_pixelrl.core import actions

    provided = ActionSet.from_functions("test-plugin", {"a": lambda x: x, "b": _brighten}, radius=0)

    class Entry:
        name, value = "test-plugin", "somepkg:SET"

        def load(self):
            return provided

    monkeypatch.setattr(actions, "_entry_points_loaded", False)
    monkeypatch.setattr(actions.importlib.metadata, "entry_points", lambda group: [Entry()])
    assert get_action_set("test-plugin") is provided


def _recording(action_set, shapes):
    def record(action):
        return Action(action.name, lambda t: shapes.append((action.name, tuple(t.shape[-2:]))) or action.apply(t))

    return ActionSet(f"recording {action_set.name}", 1, tuple(map(record, action_set.actions)), action_set.radius)


@pytest.mark.parametrize("set_name", ["denoise", "denoise-cnn-25"])
def test_actions_that_few_pixels_chose_run_in_cells_with_the_same_result(set_name):
    # A cluster of each filter in a corner, at an edge, inside and in the partial last cells; "do nothing" elsewhere.
    action_set = get_action_set(set_name)
    image = torch.from_numpy(_image((2, 1, 90, 77), seed=8))
    action_map = torch.ones(2, 90, 77, dtype=torch.long)
    spots = [(0, 0), (40, 0), (45, 38), (86, 73), (0, 74), (60, 20)]
    for index, (y, x) in zip(itertools.cycle([i for i in range(len(action_set)) if i != 1]), spots * 2, strict=False):
        action_map[index % 2, y : y + 4, x : x + 3] = index
    shapes = []
    recording = _recording(action_set, shapes)
    whole = apply_actions(image, action_map, recording)
    assert all(shape == (90, 77) for _, shape in shapes)
    shapes.clear()
    in_cells = apply_actions(image, action_map, recording, block=16)
    np.testing.assert_allclose(in_cells.numpy(), whole.numpy(), rtol=0, atol=1e-5)
    assert any(h * w < 90 * 77 / 2 for _, (h, w) in shapes)  # crops of a cell and its halo
    assert ("do nothing", (90, 77)) in shapes  # chosen almost everywhere: the whole image at once


def test_an_action_most_pixels_chose_runs_on_the_whole_image():
    shapes = []
    recording = _recording(DENOISE, shapes)
    action_map = torch.full((1, 64, 64), 3, dtype=torch.long)
    action_map[0, :2, :2] = 1
    image = torch.from_numpy(_image((1, 1, 64, 64), seed=9))
    out = apply_actions(image, action_map, recording, block=16)
    np.testing.assert_array_equal(out.numpy(), apply_actions(image, action_map, DENOISE).numpy())
    assert ("gaussian sigma=0.5", (64, 64)) in shapes and ("do nothing", (18, 18)) in shapes
