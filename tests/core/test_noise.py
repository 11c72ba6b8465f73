import numpy as np
import pytest

from napari_pixelrl.core.config import NoiseModel
from napari_pixelrl.core.noise import add_gaussian_noise, degrade, overlay_text


def test_fixed_gaussian_draws_like_the_benchmark_protocol():
    clean = np.random.default_rng(5).random((20, 30)).astype(np.float32)
    expected = add_gaussian_noise(clean, 25.0, np.random.default_rng(1))
    np.testing.assert_array_equal(degrade(clean, NoiseModel(sigma=25.0), np.random.default_rng(1)), expected)


def test_blind_gaussian_draws_one_sigma_per_image_within_the_range():
    clean = np.full((40, 1, 64, 64), 0.5, dtype=np.float32)
    noisy = degrade(clean, NoiseModel(sigma=(5.0, 55.0)), np.random.default_rng(0))
    sigmas = (noisy - clean).reshape(40, -1).std(axis=1) * 255
    assert sigmas.min() > 4.0 and sigmas.max() < 57.0
    assert sigmas.max() - sigmas.min() > 30.0  # really different per image


def test_poisson_gaussian_mean_and_variance():
    # Var[gain · Poisson(x/gain) + N(0, s)] = gain · x + s².
    x, gain, read = 0.3, 0.02, 4.0
    clean = np.full((200, 200), x, dtype=np.float32)
    noisy = degrade(clean, NoiseModel(kind="poisson-gaussian", gain=gain, sigma=read), np.random.default_rng(0))
    assert noisy.mean() == pytest.approx(x, abs=2e-3)
    assert noisy.var() == pytest.approx(gain * x + (read / 255) ** 2, rel=0.03)


def test_salt_and_pepper_replaces_the_given_fraction_with_0_or_1():
    clean = np.full((200, 200), 0.4, dtype=np.float32)
    noisy = degrade(clean, NoiseModel(kind="salt-and-pepper", sigma=None, density=0.3), np.random.default_rng(0))
    hit = noisy != clean
    assert hit.mean() == pytest.approx(0.3, abs=0.01)
    assert set(np.unique(noisy[hit])) == {0.0, 1.0}
    assert (noisy[hit] == 1.0).mean() == pytest.approx(0.5, abs=0.02)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "speckle"}, "unknown noise kind"),
        ({"sigma": (30.0, 10.0)}, "low <= high"),
        ({"sigma": -1.0}, ">= 0"),
        ({"kind": "poisson-gaussian"}, "needs a gain"),
        ({"kind": "salt-and-pepper"}, "needs a density"),
        ({"kind": "text"}, "needs a density"),
        ({"kind": "text", "density": 1.5}, "at most 1"),
        ({"kind": "text", "density": 0.1, "font_size": 2}, "at least 4"),
    ],
)
def test_invalid_noise_models_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        NoiseModel(**kwargs)


def test_noise_model_round_trips_through_json_lists():
    model = NoiseModel(kind="poisson-gaussian", sigma=(1.0, 10.0), gain=(0.01, 0.1))
    again = NoiseModel.from_dict({k: list(v) if isinstance(v, tuple) else v for k, v in model.to_dict().items()})
    assert again == model and again.is_blind
    assert model.describe() == "poisson-gaussian sigma=1-10 gain=0.01-0.1"


@pytest.mark.parametrize("density", [0.05, 0.2])
def test_text_covers_the_asked_fraction_and_changes_nothing_else(density):
    clean = np.random.default_rng(1).random((120, 90)).astype(np.float32)
    degraded, alpha = overlay_text(clean, density, (10, 20), np.random.default_rng(2))
    covered = alpha > 0
    # strings are added until the fraction is reached; one string covers well under 5% of this image
    assert density <= covered.mean() < density + 0.05
    np.testing.assert_array_equal(degraded[~covered], clean[~covered])
    opaque = alpha == 1
    assert opaque.any() and not np.allclose(degraded[opaque], clean[opaque])
    # where opaque, a pixel holds its string's grey level: few distinct values, unlike the random background
    assert len(np.unique(degraded[opaque])) < 0.25 * opaque.sum()  # (later strings' soft edges blend a few)
    again, _ = overlay_text(clean, density, (10, 20), np.random.default_rng(2))
    np.testing.assert_array_equal(again, degraded)


def test_text_noise_model_draws_density_per_image_and_skips_sigma():
    model = NoiseModel(kind="text", density=(0.05, 0.3))
    assert model.sigma is None and model.font_size == (10.0, 20.0) and model.is_blind
    assert model.describe() == "text density=0.05-0.3 font_size=10-20"
    assert NoiseModel(kind="salt-and-pepper", density=0.5).describe() == "salt-and-pepper density=0.5"
    clean = np.full((8, 64, 64), 0.5, dtype=np.float32)
    covered = (degrade(clean, model, np.random.default_rng(0)) != 0.5).mean(axis=(1, 2))
    assert covered.min() > 0.03 and covered.max() < 0.4 and covered.std() > 0.02
    batch = degrade(clean[:, None], model, np.random.default_rng(0))  # (B, 1, H, W), as the trainer draws them
    np.testing.assert_array_equal(batch[:, 0], degrade(clean, model, np.random.default_rng(0)))
