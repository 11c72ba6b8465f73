"""The benchmark scripts' own helpers (the scripts themselves need the shared data and run for minutes)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _common import fit, fitted_scores


def test_fit_finds_the_least_squares_gain_and_offset():
    # By hand: mean(o) = 1.5, mean(r) = 4.25, cov = 11.5, var = 5, so a = 2.3 and b = 4.25 - 2.3 * 1.5 = 0.8.
    output = np.array([[0.0, 1.0], [2.0, 3.0]])
    reference = np.array([[1.0, 3.0], [5.0, 8.0]])
    np.testing.assert_allclose(fit(output, reference), [[0.8, 3.1], [5.4, 7.7]], rtol=1e-6)


@pytest.mark.parametrize("units", [1.0, 3.0, 1 / 255])
def test_fitted_psnr_ignores_gain_and_offset_and_counts_what_is_left(units):
    # clean = 2 · output + 5 grey levels, plus ±1 grey level orthogonal to both: the fit leaves exactly that ±1,
    # an MSE of 1 grey level², so PSNR = 10 log10(255²) = 48.13 dB whatever the output's units.
    output = np.tile([[10.0, 20.0], [30.0, 40.0]], (4, 4)) * units  # 8x8: big enough for SSIM's window
    clean = np.tile([[26.0, 44.0], [64.0, 86.0]], (4, 4)) / 255
    value, _ = fitted_scores(output, clean)
    assert value == pytest.approx(20 * np.log10(255), abs=1e-9)


def test_fitted_ssim_of_a_rescaled_copy_is_one():
    clean = np.random.default_rng(0).integers(0, 256, (32, 32)) / 255
    assert fitted_scores(0.5 * clean + 0.2, clean) == (float("inf"), pytest.approx(1.0))


def test_every_recipe_idea_spends_its_whole_budget_on_valid_stages():
    from napari_pixelrl.core.config import TrainConfig
    from recipes import BASE, DESCRIBED, IDEAS

    assert set(DESCRIBED) == set(IDEAS)
    for name, stages in IDEAS.items():
        assert sum(share for share, _ in stages) == pytest.approx(1.0), name
        for _, fields in stages:
            TrainConfig(data="images", episodes=1, **{**BASE, **fields})  # raises on an unknown field or value


def test_shares_cell_names_the_two_most_taken_actions_per_step():
    from recipes import shares_cell

    shares = np.array([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]])
    assert shares_cell(shares, ("box", "+1", "-1")) == "+1 60% · -1 30% / box 50% · -1 30%"
