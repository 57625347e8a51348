"""Cost of the pair estimators per bar, and of one ADF evaluation, on the 7-day 1m klines.

Prints figures only (no pass/fail): ``python bench/bench_estimators.py``.
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pairstream.config import AnalyticsConfig  # noqa: E402
from pairstream.estimators import PairEstimator, adf_pvalue  # noqa: E402

KLINES = ROOT / "data" / "klines"


def closes(symbol: str) -> pd.Series:
    df = pd.read_csv(KLINES / f"futures-um-klines-1m-{symbol}-2024-07-01_2024-07-07.csv")
    return pd.Series(df["close"].to_numpy(), index=pd.to_datetime(df["open_time"], unit="ms"))


def per_bar_us(cfg: AnalyticsConfig, ts: list, y: np.ndarray, x: np.ndarray) -> float:
    best = float("inf")
    for _ in range(3):
        est = PairEstimator(cfg, "BTCUSDT/ETHUSDT", "1m")
        t0 = time.perf_counter()
        for t, yy, xx in zip(ts, y, x):
            est.update(t, yy, xx)
        best = min(best, time.perf_counter() - t0)
    return best / len(ts) * 1e6


def main() -> None:
    y, x = closes("BTCUSDT"), closes("ETHUSDT")
    ts = [t.to_pydatetime() for t in y.index]
    yv, xv = y.to_numpy(), x.to_numpy()
    base = AnalyticsConfig()
    # ADF "off": an evaluation cadence longer than the data
    no_adf = replace(base, adf_every=10**9)
    print(f"bars: {len(ts)} (BTCUSDT y, ETHUSDT x, 1m)")
    for prices in ("raw", "log"):
        us = per_bar_us(replace(no_adf, prices=prices), ts, yv, xv)
        print(f"estimators without ADF, prices={prices}: {us:.1f} µs/bar")
    us = per_bar_us(base, ts, yv, xv)
    print(f"all estimators, adf_every={base.adf_every}, adf_window={base.adf_window}: "
          f"{us:.1f} µs/bar")  # fmt: skip
    est = PairEstimator(base)
    for t, yy, xx in zip(ts, yv, xv):
        est.update(t, yy, xx)
    w = est._sadf.ordered()
    n = 300
    t0 = time.perf_counter()
    for _ in range(n):
        adf_pvalue(w)
    print(f"one ADF evaluation (window {len(w)}): {(time.perf_counter() - t0) / n * 1e6:.0f} µs")
    try:
        import warnings

        from statsmodels.tsa.stattools import adfuller

        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        for _ in range(50):
            adfuller(w, regression="c", autolag="AIC")
        print(
            f"  (statsmodels adfuller, same window: {(time.perf_counter() - t0) / 50 * 1e6:.0f} µs)"
        )
    except ImportError:
        pass


if __name__ == "__main__":
    main()
