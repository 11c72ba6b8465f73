import numpy as np
import pytest

from napari_pixelrl.core.baselines import adaptive_median_filter, auto_levels, median_filter


def _adaptive_median_loop(image: np.ndarray, max_size: int) -> np.ndarray:
    """The textbook algorithm, one pixel at a time."""
    height, width = image.shape
    out = image.copy()
    for y in range(height):
        for x in range(width):
            for size in range(3, max_size + 1, 2):
                r = size // 2
                rows = np.clip(np.arange(y - r, y + r + 1), 0, height - 1)
                cols = np.clip(np.arange(x - r, x + r + 1), 0, width - 1)
                window = image[np.ix_(rows, cols)]
                low, med, high = window.min(), np.median(window), window.max()
                if low < med < high:
                    out[y, x] = image[y, x] if low < image[y, x] < high else med
                    break
            else:
                out[y, x] = med
    return out


@pytest.mark.parametrize("density", [0.1, 0.5, 0.9])
def test_adaptive_median_matches_a_pixel_by_pixel_loop(density):
    rng = np.random.default_rng(3)
    clean = rng.integers(20, 236, (23, 17)).astype(np.float32) / 255
    hit = rng.random(clean.shape) < density
    noisy = np.where(hit, (rng.random(clean.shape) < 0.5).astype(np.float32), clean)
    np.testing.assert_array_equal(adaptive_median_filter(noisy, 7), _adaptive_median_loop(noisy, 7))


def test_adaptive_median_keeps_clean_pixels_and_removes_isolated_impulses():
    clean = np.tile(np.linspace(0.2, 0.8, 16, dtype=np.float32), (16, 1))
    noisy = clean.copy()
    noisy[5, 7], noisy[10, 3] = 1.0, 0.0
    restored = adaptive_median_filter(noisy)
    assert restored[5, 7] != 1.0 and restored[10, 3] != 0.0
    mask = np.ones_like(clean, bool)
    mask[5, 7] = mask[10, 3] = False
    np.testing.assert_array_equal(restored[mask], clean[mask])


def test_median_filter_and_bad_sizes():
    image = np.arange(25, dtype=np.float32).reshape(5, 5)
    assert median_filter(image, 3)[2, 2] == 12
    assert median_filter(image, 3)[0, 0] == np.median([0, 0, 1, 0, 0, 1, 5, 5, 6])
    with pytest.raises(ValueError, match="odd"):
        median_filter(image, 4)
    with pytest.raises(ValueError, match="max_size"):
        adaptive_median_filter(image, 5 + 1)


def test_auto_levels_stretches_percentiles_to_black_and_white():
    rng = np.random.default_rng(0)
    image = (0.2 + 0.5 * rng.random((40, 30, 3)) * [1.0, 0.8, 0.6]).astype(np.float32)
    per_channel = auto_levels(image, 1, 99)
    for c in range(3):
        lo, hi = np.percentile(image[..., c], [1, 99])
        np.testing.assert_allclose(per_channel[..., c], np.clip((image[..., c] - lo) / (hi - lo), 0, 1), atol=1e-6)
    lo, hi = np.percentile(image, [1, 99])
    expected = np.clip((image - lo) / (hi - lo), 0, 1)
    np.testing.assert_allclose(auto_levels(image, 1, 99, per_channel=False), expected, atol=1e-6)
    with pytest.raises(ValueError, match="RGB"):
        auto_levels(image[..., 0])
