"""PairEstimator against the independent reference (statsmodels, pandas, pykalman).

Tolerances (see ``reference.assert_analytics_equal``): OLS beta/alpha, spread, z-score, corr,
ADF p-value and half-life within 1e-9 relative to each column's natural scale; Kalman
filtered means and z_kf within 1e-8. NULL patterns and ``warm`` must match exactly.
"""

from __future__ import annotations

import base64
import math
import pickle
import warnings
import zlib
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


# pickle of the previous layout's PairEstimator (one Ring per series, a Kalman2 object), made
# by the version before the fused per-bar kernel: window=8, z_window=6, corr_window=5,
# adf_window=24, adf_every=3, preset "fast", after the first 150 bars of the week
OLD_SNAPSHOT = (
    "eNqNVH1sU1UUf6XftbDMyJhk4cONUgyUbsyxxGEvK6wLL84xhgxofHlt36Mv9GvvvW4tKgzcZDMXloVboAZiIiIx"
    "NRMT/EiAtOMPM+NQWZwscerwA7YsfAyjhlE37+srzTRZ9P5xT87vnvM75/fyzmlTxfaricyBC0M0xwsiz9B+CyOI"
    "nJ8Wg7yA4Px6jG9+BKBjaNVB9CoyQ6Wb3YNg/qwsdzDAchjL2xigfVGRcwt2GcnlaEI852YwqZKnWxHUtHIBT7AV"
    "kTqo20c9cjTwMXeQ53O+GhpoD5tzC6FecpkWho8iUgmNe2mfnw5QHsYn0shhW1zx00SRfQ1ckMWDLoFqoXn8Uu96"
    "fnDyvTTUZ19CVgzek+WHXVAlScHdVzfat2/b1Lh2c2OtZBGcJ7L4KvUjqX9GYEQEVSwtSIbyBfegLqikQlHkJaCq"
    "gQtk5cKCQNgfiloorIWx+MM+kaN5no4iaKR4Bn8q/NHCbhEHQ3UmEkFtwCOHHEMk0YHsChc6jBqQmVSQug7kLYZq"
    "jxgNMVLKPLYSdXXKr0qoqEJ1dXVbZvDJXCQhIleXHbD4mNR3wdWBgQGnSrZF+rsZ/F2MvxmPx7ksbszin+ll/xLG"
    "EaYhNeTxw8glSYwg7xKszPuUd4XUn3fl7O7W4np/mJ3d1dsTwHD9TOhyUwI80eu4MbUrAZZ2TGytxLb7yu/mkd0J"
    "sMrZfSVMJYBTAl6S4zfsSPyrnrBvrnoauZ514S8X3hg8MAbMW5+umoJjYF1FZ2367E1wbll5x0jbKHhYUXI/ffoG"
    "+DLPzZw6NC7zq8luiV9NCfg3mqtCoVwhFdPUJM42ExvTJ78Y7e9Ng3ZbTfVHO6dApSll+Dr5AAzHE5Hir34Gkf6a"
    "pOmFPnC+6vNLBdzboG304OpCXSzV5J+cPLEyCTyNrZsm+q6C9ALt8cUf9INDzWd6zPnfgx/yDX/1bfsxZbp/YcbZ"
    "OZgyGm/fi1+/BizjTe+/8vFt0DOs8UNyLKfg/yqeHjkydGvdjKx4kaxYSeGBmUOvWtZrJtqmf3vnpN1GEL6OFT1V"
    "SWzfmvaVYGt9dmi5hKfb62eeTGZ4VWQsyxv5T15ikK/9sxznT3tYoQjzpXaOf2jBfu+tc98CG5Eq/uTOFmCbzauj"
    "8LS1UL4ocgDTkhOq8teGclgEY8saLuapli+CGkraByE8y9/duXZ0feg8NFBe2sdSPo5lcNzjz2iN9jW7cJ97WWlI"
    "tWRm/MvkOa2T9pKiWVoc649efLDjV6iYvSvwDDpAWYlh6Xg7gAppv7z84vz9mt1GqAxZ8f54rqXiG9XNYUJyS5Ej"
    "WfbwcuwA3YTdUus/3VJp2WzQr/60YABqBZHmRcaDOsOvI1fYZfkbBSBTyQ=="
)


def test_snapshot_of_the_previous_layout_resumes_seamlessly(week: pd.DataFrame) -> None:
    cfg = AnalyticsConfig(window=8, z_window=6, corr_window=5, adf_window=24, adf_every=3)
    est = pickle.loads(zlib.decompress(base64.b64decode(OLD_SNAPSHOT)))
    assert est.cfg == cfg and est.preset == "fast"
    fresh = PairEstimator(cfg, "BTCUSDT/ETHUSDT", "1m", "fast")
    df = week.iloc[:400]
    rows = [fresh.update(t.to_pydatetime(), y, x) for t, y, x in zip(df.ts, df.y, df.x)]
    rest = zip(df.ts[150:], df.y[150:], df.x[150:])
    resumed = [est.update(t.to_pydatetime(), y, x) for t, y, x in rest]
    assert resumed == rows[150:]
    assert sum(r.adf_p is not None for r in resumed) > 200  # every column is live


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
