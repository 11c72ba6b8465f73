import numpy as np
import pytest

from napari_pixelrl.core.data import ImageSet, center_crops, random_crops, to_unit_gray
from napari_pixelrl.core.io import write_tiff


def test_crops_without_augmentation_are_windows_of_the_images():
    image = np.arange(40 * 50, dtype=np.float32).reshape(40, 50) / 2000
    crops = random_crops([image], 6, 16, np.random.default_rng(0))
    assert crops.shape == (6, 1, 16, 16) and crops.dtype == np.float32
    for crop in crops[:, 0]:
        top, left = np.argwhere(image == crop[0, 0])[0]
        np.testing.assert_array_equal(crop, image[top : top + 16, left : left + 16])


def test_quarter_turns_and_flips_give_the_eight_exact_orientations_of_a_window():
    image = np.arange(40 * 50, dtype=np.float32).reshape(40, 50) / 2000  # every value unique: a crop names its window
    crops = random_crops([image], 200, 16, np.random.default_rng(0), flip=True, quarter_turns=True)
    seen = set()
    for crop in crops[:, 0]:
        top, left = np.argwhere(image == crop.min())[0]  # the window's top-left value is its smallest
        window = image[top : top + 16, left : left + 16]
        orientations = [np.rot90(w, k) for w in (window, window[:, ::-1]) for k in range(4)]
        matches = [i for i, o in enumerate(orientations) if np.array_equal(crop, o)]
        assert len(matches) == 1  # an exact permutation of the window's pixels, no interpolation
        seen.add(matches[0])
    assert seen == set(range(8))


def test_crops_are_reproducible_and_rotation_changes_them():
    image = np.random.default_rng(1).random((60, 60)).astype(np.float32)
    a = random_crops([image], 4, 20, np.random.default_rng(3), max_rotation=10, flip=True)
    b = random_crops([image], 4, 20, np.random.default_rng(3), max_rotation=10, flip=True)
    plain = random_crops([image], 4, 20, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, plain)
    assert a.min() >= 0 and a.max() <= 1


def test_small_images_are_padded_not_refused():
    crops = random_crops([np.ones((10, 12), np.float32)], 2, 16, np.random.default_rng(0), max_rotation=5)
    assert crops.shape == (2, 1, 16, 16)
    np.testing.assert_allclose(crops, 1.0, atol=1e-6)


def test_to_unit_gray_scales_by_dtype_and_refuses_colour():
    np.testing.assert_allclose(to_unit_gray(np.array([[0, 65535]], np.uint16)), [[0.0, 1.0]])
    np.testing.assert_allclose(to_unit_gray(np.array([[0, 255]], np.uint8)), [[0.0, 1.0]])
    with pytest.raises(ValueError, match="2-D grayscale"):
        to_unit_gray(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="finite"):
        to_unit_gray(np.array([[np.nan, 0.0]]))


def test_image_set_holds_out_the_last_files(tmp_path):
    for i in range(4):
        write_tiff(tmp_path / f"{i}.tif", np.full((20, 20), i * 60, np.uint8))
    images = ImageSet.from_folder(tmp_path, validation_images=1)
    assert len(images.train) == 3 and images.validation[0].max() == pytest.approx(180 / 255)
    assert len(images.fingerprint) == 16
    with pytest.raises(ValueError, match="needs more than"):
        ImageSet.from_folder(tmp_path, validation_images=4)


def test_center_crops():
    image = np.arange(100, dtype=np.float32).reshape(10, 10)
    np.testing.assert_array_equal(center_crops([image], 4)[0], image[3:7, 3:7])
