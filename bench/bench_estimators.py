"""Cost of the pair estimators per bar, and of one ADF evaluation, on the 7-day 1m klines.

Prints figures only (no pass/fail): ``python bench/bench_estimators.py [--against REV]``. With
``--against``, the ``pairstream/estimators.py`` of git revision REV runs in the same process,
alternating with the current one, and the old/new ratio per bar is printed too (the machine's
load changes between processes, not between alternating runs).
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
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


def per_bar_us(
    cfg: AnalyticsConfig, ts: list, y: np.ndarray, x: np.ndarray, cls: type = PairEstimator
) -> float:
    best = float("inf")
    for _ in range(3):
        est = cls(cfg, "BTCUSDT/ETHUSDT", "1m")
        t0 = time.perf_counter()
        for t, yy, xx in zip(ts, y, x):
            est.update(t, yy, xx)
        best = min(best, time.perf_counter() - t0)
    return best / len(ts) * 1e6


def estimator_at(rev: str) -> type:
    """``PairEstimator`` of ``pairstream/estimators.py`` at git revision ``rev``."""
    src = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{rev}:pairstream/estimators.py"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    path = Path(tempfile.mkdtemp()) / "estimators_at_rev.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("estimators_at_rev", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.PairEstimator


def compare(rev: str, ts: list, y: list, x: list) -> None:
    """Old (``rev``) vs current per bar, alternating in this process; the rows must be equal."""
    old = estimator_at(rev)
    for cfg in (AnalyticsConfig(), AnalyticsConfig(prices="log", adf_every=10**9)):
        a, b = old(cfg), PairEstimator(cfg)
        same = all(a.update(*r) == b.update(*r) for r in zip(ts, y, x))
        t = {"old": [], "new": []}
        for i in range(6):
            label, cls = ("old", old) if i % 2 == 0 else ("new", PairEstimator)
            t[label].append(per_bar_us(cfg, ts, y, x, cls))
        o, n = min(t["old"]), min(t["new"])
        print(f"{rev} vs current, prices={cfg.prices}, adf_every={cfg.adf_every}: "
              f"{o:.1f} vs {n:.1f} µs/bar, old/new {o / n:.2f}, rows equal: {same}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--against", metavar="REV", help="also time this git revision's estimators")
    args = ap.parse_args()
    y, x = closes("BTCUSDT"), closes("ETHUSDT")
    ts = [t.to_pydatetime() for t in y.index]
    yv, xv = y.to_numpy(), x.to_numpy()
    if args.against:
        compare(args.against, ts, y.tolist(), x.tolist())
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
    w = est.adf_window_values()
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
