"""The owned MacKinnon tables and p-value against statsmodels and scipy (the references).

Tables: exactly equal (same floats). p-values: the same branch and polynomial, the normal CDF
from libm's erf/erfc instead of scipy's Cephes ``ndtr``, so within 1e-13 relative (measured:
~8e-15 over t in [-20, 3]).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import ndtr
from statsmodels.tsa import adfvalues

from pairstream.mackinnon import (
    TAU_C_LARGEP,
    TAU_C_SMALLP,
    TAU_MAX_C,
    TAU_MIN_C,
    TAU_STAR_C,
    mackinnon_p_c,
    norm_cdf,
)

N_ROWS = 6


def test_tables_equal_statsmodels_exactly() -> None:
    assert list(TAU_STAR_C) == list(adfvalues._tau_stars["c"])
    assert list(TAU_MIN_C) == list(adfvalues._tau_mins["c"])
    assert list(TAU_MAX_C) == list(adfvalues._tau_maxs["c"])
    small = np.asarray(TAU_C_SMALLP)
    large = np.asarray(TAU_C_LARGEP)
    assert small.shape == (N_ROWS, 3) and large.shape == (N_ROWS, 4)
    assert np.array_equal(small, adfvalues._tau_smallps["c"])
    assert np.array_equal(large, adfvalues._tau_largeps["c"])


@pytest.mark.parametrize("n", range(1, N_ROWS + 1))
def test_pvalue_matches_statsmodels(n: int) -> None:
    ts = np.r_[np.linspace(-25.0, 4.0, 20_001), np.random.default_rng(n).uniform(-20, 3, 5_000)]
    ts = np.r_[ts, TAU_STAR_C[n - 1], TAU_MIN_C[n - 1], TAU_MAX_C[n - 1]]  # branch edges
    ours = np.array([mackinnon_p_c(float(t), n) for t in ts])
    ref = np.array([adfvalues.mackinnonp(float(t), regression="c", N=n) for t in ts])
    assert np.array_equal(ours == 0.0, ref == 0.0) and np.array_equal(ours == 1.0, ref == 1.0)
    np.testing.assert_allclose(ours, ref, rtol=1e-13, atol=0)


def test_norm_cdf_matches_scipy_ndtr() -> None:
    xs = np.r_[np.linspace(-37.0, 9.0, 100_001), 0.0, -0.0, np.sqrt(0.5), -np.sqrt(0.5)]
    ours = np.array([norm_cdf(float(x)) for x in xs])
    np.testing.assert_allclose(ours, ndtr(xs), rtol=1e-10, atol=0)  # deep left tail: 6e-11
    mid = np.abs(xs) < 8
    np.testing.assert_allclose(ours[mid], ndtr(xs[mid]), rtol=1e-13, atol=0)
