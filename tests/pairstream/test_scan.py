"""The scanner's statistics against statsmodels and numpy over the real 5-symbol universe.

Tolerances (the issue's): coint_p and johansen_trace within 1e-8 absolute; beta, alpha,
half_life and hurst within 1e-9 relative; corr within 1e-12 absolute (a Pearson coefficient of
centred sums); the 95% critical value equal to statsmodels' table; n exact.
"""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from statsmodels.tsa.coint_tables import c_sjt
from statsmodels.tsa.stattools import adfuller, coint
from statsmodels.tsa.vector_ar.vecm import coint_johansen

from pairstream.estimators import adf_tvalue
from pairstream.scan import JOHANSEN_CRIT95, hurst, johansen_trace, scan_pair
from tests.conftest import REPO

UNIVERSE = REPO / "data" / "universe"
SYMBOLS = ("ALGOUSDT", "AVAXUSDT", "FILUSDT", "LINKUSDT", "NEARUSDT")


def universe_closes() -> dict[str, np.ndarray]:
    out = {}
    for s in SYMBOLS:
        df = pd.read_csv(UNIVERSE / f"futures-um-klines-1m-{s}-2023-02-01_2023-02-14.csv")
        assert len(df) == 20_160 and (np.diff(df.open_time) == 60_000).all()
        out[s] = df.close.to_numpy(float)
    return out


def reference(y: np.ndarray, x: np.ndarray) -> dict[str, float]:
    """The issue's definitions, computed by statsmodels and numpy only."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        coint_p = float(coint(y, x, trend="c", autolag="aic")[1])
    joh = coint_johansen(np.column_stack([y, x]), det_order=0, k_ar_diff=1)
    alpha, beta = sm.OLS(y, sm.add_constant(x)).fit().params
    spread = y - beta * x
    lam = sm.OLS(np.diff(spread), sm.add_constant(spread[:-1])).fit().params[1]
    lags = np.arange(2, 101)
    sd = [np.std(spread[t:] - spread[:-t]) for t in lags]
    return {
        "beta": beta,
        "alpha": alpha,
        "coint_p": coint_p,
        "johansen_trace": float(joh.lr1[0]),
        "johansen_crit95": float(joh.cvt[0, 1]),
        "half_life": -math.log(2) / lam if lam < 0 else math.nan,
        "hurst": float(np.polyfit(np.log(lags), np.log(sd), 1)[0]),
        "corr": float(np.corrcoef(np.diff(np.log(y)), np.diff(np.log(x)))[0, 1]),
        "n": len(y),
    }


ABS = {"coint_p": 1e-8, "johansen_trace": 1e-8, "corr": 1e-12}
REL = {"beta": 1e-9, "alpha": 1e-9, "half_life": 1e-9, "hurst": 1e-9}


def assert_matches(got, ref: dict[str, float], where: str) -> None:
    for col, want in ref.items():
        v = getattr(got, col)
        if isinstance(want, float) and math.isnan(want):
            assert v is None, f"{where} {col}: {v} where the reference is undefined"
            continue
        assert v is not None, f"{where} {col}: None, reference {want}"
        if col in ABS:
            assert abs(v - want) <= ABS[col], f"{where} {col}: {v!r} vs {want!r}"
        elif col in REL:
            assert abs(v - want) <= REL[col] * abs(want), f"{where} {col}: {v!r} vs {want!r}"
        else:
            assert v == want, f"{where} {col}: {v!r} vs {want!r}"


@pytest.fixture(scope="module")
def closes() -> dict[str, np.ndarray]:
    return universe_closes()


def test_universe_every_ordered_pair_matches_statsmodels(closes) -> None:
    pairs = list(itertools.permutations(SYMBOLS, 2))
    assert len(pairs) == 20
    p_values = []
    for y, x in pairs:
        got = scan_pair(closes[y], closes[x])
        assert_matches(got, reference(closes[y], closes[x]), f"{y}/{x}")
        p_values.append(got.coint_p)
    # not vacuous: the universe spans weakly and not cointegrated pairs
    assert min(p_values) < 0.1 < max(p_values)


def test_crit95_is_statsmodels_table() -> None:
    assert JOHANSEN_CRIT95 == c_sjt(2, 0)[1]


def rng_walks(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = 50 + np.cumsum(rng.normal(0, 0.3, n))
    y = 3 + 1.7 * x + np.cumsum(rng.normal(0, 0.05, n)) * (seed % 3) + rng.normal(0, 0.4, n)
    return y, x


@pytest.mark.parametrize("seed,n", [(1, 250), (2, 600), (3, 1440), (4, 3000)])
def test_synthetic_lengths_match_statsmodels(seed: int, n: int) -> None:
    """Shorter samples (other maxlag, cointegrated and not) as the live scan windows are."""
    y, x = rng_walks(seed, n)
    assert_matches(scan_pair(y, x), reference(y, x), f"seed {seed}")


def test_adf_without_constant_is_adfuller_n() -> None:
    rng = np.random.default_rng(7)
    s = np.cumsum(rng.normal(size=500)) * 0.1 + rng.normal(size=500)
    s -= s.mean()
    want = adfuller(s, regression="n", autolag="AIC", result_object=False)[0]
    assert abs(adf_tvalue(s, False) - want) <= 1e-9 * abs(want)
    want_c = adfuller(s, regression="c", autolag="AIC", result_object=False)[0]
    assert abs(adf_tvalue(s, True) - want_c) <= 1e-9 * abs(want_c)


def test_degenerate_inputs_are_none() -> None:
    x = np.linspace(1.0, 2.0, 300)
    const = np.full(300, 5.0)
    got = scan_pair(x * 2.0 + 1.0, x)  # exact fit: statsmodels reports t = −inf, p = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert got.coint_p == coint(x * 2.0 + 1.0, x, trend="c", autolag="aic")[1] == 0.0
    flat = scan_pair(np.linspace(1, 3, 300) ** 2, const)
    assert flat.beta is None and flat.coint_p is None and flat.hurst is None
    assert hurst(np.arange(50.0)) is None  # shorter than the largest lag
    assert johansen_trace(const, const) is None
