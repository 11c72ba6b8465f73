"""Machine facts: the CPU family named in training records, and bfloat16 only where it is native."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import make_policy

from napari_pixelrl import api
from napari_pixelrl.core import environment
from napari_pixelrl.core.environment import PrecisionWarning, describe_machine, usable_precision


@pytest.fixture(params=[True, False], ids=["native bf16", "no native bf16"])
def native(request, monkeypatch):
    """Both answers of the capability probe, whatever this CPU has."""
    monkeypatch.setattr(environment, "has_native_bfloat16", lambda device="cpu": request.param)
    return request.param


def test_bfloat16_is_kept_only_where_native_and_the_fallback_warns(native):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert usable_precision("float32") == "float32"
        assert usable_precision("bfloat16") == ("bfloat16" if native else "float32")
    assert [w.category for w in caught] == ([] if native else [PrecisionWarning])
    if not native:
        assert "no native bfloat16" in str(caught[0].message) and "11x slower" in str(caught[0].message)


def test_restore_in_bfloat16_runs_float32_where_bfloat16_is_not_native(native):
    policy = make_policy(width=16)
    noisy = np.random.default_rng(0).random((40, 40), dtype=np.float32)
    exact = api.restore(noisy, policy, return_values=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        asked = api.restore(noisy, policy, precision="bfloat16", return_values=True)
    if native:  # the network really ran in bfloat16: the value map is not the float32 one
        assert not caught and not np.array_equal(asked.values, exact.values)
    else:
        assert [w.category for w in caught] == [PrecisionWarning]
        np.testing.assert_array_equal(asked.image, exact.image)
        np.testing.assert_array_equal(asked.values, exact.values)


def test_the_machine_line_names_the_vector_family_and_bfloat16(native):
    line = describe_machine()
    assert environment.cpu_family() in line
    assert ("native bf16" if native else "no native bf16") in line
