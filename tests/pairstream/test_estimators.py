"""PairEstimator against the independent reference (statsmodels, pandas, pykalman).

Tolerances (see ``reference.assert_analytics_equal``): OLS beta/alpha, spread, z-score, corr,
ADF p-value and half-life within 1e-9 relative to each column's natural scale; Kalman
filtered means and z_kf within 1e-8. NULL patterns and ``warm`` must match exactly.
"""

from __future__ import annotations

import math
import pickle
import warnings
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from statsmodels.tsa.stattools import adfuller

from pairstream.config import AnalyticsConfig
from pairstream.estimators import PairEstimator, adf_pvalue, ols_beta_alpha, pearson, zscore
from tests.reference import (
    assert_analytics_equal,
    load_pair_closes,
    reference_analytics,
    rows_frame,
)

BASE = AnalyticsConfig(adf_window=120, adf_every=10)


@pytest.fixture(scope="module")
def week() -> pd.DataFrame:
    df = load_pair_closes()
    assert len(df) == 10_080  # 7 days of 1m bars, both legs present at every minute
    return df


def run(df: pd.DataFrame, cfg: AnalyticsConfig) -> list:
    est = PairEstimator(cfg, "BTCUSDT/ETHUSDT", "1m")
    return [est.update(ts.to_pydatetime(), y, x) for ts, y, x in zip(df.ts, df.y, df.x)]


def test_full_week_matches_reference(week: pd.DataFrame) -> None:
    rows = run(week, BASE)
    ref = reference_analytics(week.y.to_numpy(), week.x.to_numpy(), BASE)
    assert_analytics_equal(rows, ref)
    got = rows_frame(rows)
    # the comparison is not vacuous: every column is populated for most of the week
    for col in ("beta", "zscore", "corr", "adf_p", "beta_kf", "z_kf"):
        assert got[col].notna().sum() > 9_000, col
    assert got["half_life"].notna().sum() > 5_000  # None while λ ≥ 0 (no mean reversion)
    assert rows[0].pair == "BTCUSDT/ETHUSDT" and rows[0].tf == "1m"
    assert rows[5].y == week.y[5] and rows[5].x == week.x[5]  # raw closes


VARIANTS = {
    "window": {"window": 30},
    "z_window": {"z_window": 25},
    "corr_window": {"corr_window": 15},
    "adf_window": {"adf_window": 60},
    "adf_every": {"adf_every": 7},
    "prices": {"prices": "log"},
    "kalman_delta": {"kalman_delta": 1e-2},
    "kalman_obs_var": {"kalman_obs_var": 5.0},
    "kalman_p0": {"kalman_p0": 100.0},
}
# which columns each key must change
AFFECTS = {
    "window": ["beta", "zscore", "adf_p"],
    "z_window": ["zscore"],
    "corr_window": ["corr"],
    "adf_window": ["adf_p", "half_life"],
    "adf_every": ["adf_p"],
    "prices": ["beta", "alpha", "beta_kf"],
    "kalman_delta": ["beta_kf", "z_kf"],
    "kalman_obs_var": ["beta_kf", "z_kf"],
    "kalman_p0": ["beta_kf", "alpha_kf"],
}


@pytest.fixture(scope="module")
def slice_(week: pd.DataFrame) -> pd.DataFrame:
    return week.iloc[3000:4200].reset_index(drop=True)


@pytest.fixture(scope="module")
def slice_default(slice_: pd.DataFrame) -> pd.DataFrame:
    return rows_frame(run(slice_, BASE))


@pytest.mark.parametrize("key", sorted(VARIANTS))
def test_each_analytics_key_takes_effect(
    key: str, slice_: pd.DataFrame, slice_default: pd.DataFrame
) -> None:
    cfg = replace(BASE, **VARIANTS[key])
    rows = run(slice_, cfg)
    ref = reference_analytics(slice_.y.to_numpy(), slice_.x.to_numpy(), cfg)
    assert_analytics_equal(rows, ref, prices=cfg.prices)
    got = rows_frame(rows)
    for col in AFFECTS[key]:
        a, b = got[col].to_numpy(), slice_default[col].to_numpy()
        same = np.allclose(a, b, rtol=1e-7, atol=0, equal_nan=True)
        assert not same, f"{key} did not change {col}"


def test_first_rows_are_null_until_windows_fill(week: pd.DataFrame) -> None:
    cfg = replace(BASE, window=20, z_window=10, corr_window=5, adf_window=30, adf_every=4)
    got = rows_frame(run(week.iloc[:200], cfg))
    first = {c: int(got[c].first_valid_index()) for c in ("beta", "zscore", "corr", "adf_p")}
    assert first == {"beta": 19, "zscore": 28, "corr": 5, "adf_p": 48}
    assert not got["warm"][:28].any() and got["warm"][28:].all()
    assert got["beta_kf"].notna().all()  # the Kalman filter has a value from the first bar


def test_pickle_resume_is_seamless(week: pd.DataFrame) -> None:
    df = week.iloc[:700]
    whole = run(df, BASE)
    est = PairEstimator(BASE, "BTCUSDT/ETHUSDT", "1m")
    rows = [est.update(t.to_pydatetime(), y, x) for t, y, x in zip(df.ts[:333], df.y, df.x)]
    est = pickle.loads(pickle.dumps(est))
    rest = zip(df.ts[333:], df.y[333:], df.x[333:])
    rows += [est.update(t.to_pydatetime(), y, x) for t, y, x in rest]
    assert rows == whole


def test_state_is_bounded_by_the_windows(week: pd.DataFrame) -> None:
    est = PairEstimator(BASE)
    sizes = []
    for i, (t, y, x) in enumerate(zip(week.ts, week.y, week.x)):
        est.update(t.to_pydatetime(), y, x)
        if i in (500, 5_000, 9_999):
            sizes.append(len(pickle.dumps(est)))
    # a few bytes vary (counters growing, None vs float); nothing grows with the bar count
    assert max(sizes) - min(sizes) < 64, sizes


def test_constant_windows_have_no_slope_correlation_z_or_adf() -> None:
    # 60 × 3424.98 summed in order is not 60 × 3424.98: the mean is off by an ulp, so only an
    # exact constant check keeps a flat 1s window (a quiet second's filled bars) at None.
    flat = np.full(60, 3424.98)
    total = 0.0
    for v in flat.tolist():
        total += v
    assert total / 60 != 3424.98  # the premise: a running sum's mean is not the value
    other = np.linspace(63900.0, 63950.0, 60)
    assert ols_beta_alpha(flat, other) == (None, None)
    assert pearson(flat, other) is None and pearson(other, flat) is None
    assert zscore(flat, 3424.98) is None
    step = np.r_[np.zeros(119), 1.0]  # the lags fit it exactly: statsmodels says NaN
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert math.isnan(adfuller(step, regression="c", autolag="AIC")[1])
    assert adf_pvalue(step) is None
