"""The owned MacKinnon tables and p-value against statsmodels and scipy (the references).

Tolerance zero: the tables are the same floats, the normal CDF is Cephes' ``ndtr`` (what scipy
evaluates) written out, so p-values equal statsmodels' bit for bit — the flow's ``adf_p`` column
and the alerts on it stay exactly what they were with statsmodels' tables and scipy's ``ndtr``.
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
    assert np.array_equal(ours, ref)


def test_norm_cdf_matches_scipy_ndtr() -> None:
    edges = [0.0, -0.0, 1.0, -1.0, 8.0, -8.0, 38.0, -38.0, 40.0, -40.0, np.inf, -np.inf]
    edges += [e * np.sqrt(2.0) for e in edges]  # erf/erfc switch at |x/√2| = 1 and 8
    xs = np.r_[np.linspace(-40.0, 40.0, 200_001), np.random.default_rng(0).normal(0, 3, 50_000)]
    xs = np.r_[xs, edges, np.nextafter(edges, np.inf), np.nextafter(edges, -np.inf)]
    ours = np.array([norm_cdf(float(x)) for x in xs])
    assert np.array_equal(ours, ndtr(xs))
    assert np.isnan(norm_cdf(float("nan")))
