"""The pair scanner on a universe of ≥ 50 symbols × 20,160 bars against statsmodels, same run.

Prints figures only (no pass/fail): ``python -m bench.scan`` (``make bench-scan``).

Synthetic closes (timing only): symbols in clusters that share a random-walk factor, so the
universe holds cointegrated and unrelated pairs. The scanner runs every ordered pair
(``pairstream.scan.scan_universe``, a process pool over the cores). The baseline is the loop a
user would write: ``statsmodels.tsa.stattools.coint(y, x, trend="c", autolag="aic")`` and
``coint_johansen(column_stack([y, x]), 0, 1)`` per ordered pair. statsmodels needs seconds per
pair at 20,160 bars (~2 h for 2,450 pairs on one core), so by default it is timed on
``--baseline-pairs`` pairs and its per-pair time multiplied out (the figure says so);
``--baseline-pairs 0`` runs it on every pair. The scanner is also timed on the same pairs in one
process, which gives a per-pair ratio free of the pool.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np


def universe(n_symbols: int, n_bars: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    factors = np.cumsum(rng.normal(0, 0.002, (max(1, n_symbols // 5), n_bars)), axis=1)
    ms = 1_675_209_600_000 + 60_000 * np.arange(n_bars, dtype=np.int64)
    out = {}
    for i in range(n_symbols):
        f = factors[i % factors.shape[0]]
        own = np.cumsum(rng.normal(0, 0.0005 * (i % 3), n_bars))  # 1 in 3 cointegrates
        noise = rng.normal(0, 0.002, n_bars)
        out[f"S{i:03d}USDT"] = (ms, 10.0 * (1 + i % 7) * np.exp(f + own + noise))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=50)
    ap.add_argument("--bars", type=int, default=20_160)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--baseline-pairs", type=int, default=20, help="0 = every pair")
    a = ap.parse_args()

    from statsmodels.tsa.stattools import coint
    from statsmodels.tsa.vector_ar.vecm import coint_johansen

    from pairstream.scan import ordered_pairs, scan_pair, scan_universe

    series = universe(a.symbols, a.bars)
    pairs = ordered_pairs(list(series))
    rng = np.random.default_rng(1)
    k = len(pairs) if a.baseline_pairs <= 0 else min(a.baseline_pairs, len(pairs))
    sample = [pairs[i] for i in sorted(rng.choice(len(pairs), k, replace=False))]
    print(f"universe: {a.symbols} symbols x {a.bars:,} bars, {len(pairs):,} ordered pairs; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")

    scan_pair(series[sample[0][0]][1], series[sample[0][1]][1])  # compile / load the kernels
    t0 = time.perf_counter()
    ours = {}
    for y, x in sample:
        ours[(y, x)] = scan_pair(series[y][1], series[x][1])
    ours_pp = (time.perf_counter() - t0) / k

    t0 = time.perf_counter()
    rows = scan_universe(series, "1m", 60_000, workers=a.workers)
    wall = time.perf_counter() - t0

    worst = 0.0
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for y, x in sample:
            yy, xx = series[y][1], series[x][1]
            p = coint(yy, xx, trend="c", autolag="aic")[1]
            tr = coint_johansen(np.column_stack([yy, xx]), 0, 1).lr1[0]
            worst = max(worst, abs(p - ours[(y, x)].coint_p), abs(tr - ours[(y, x)].johansen_trace))
    sm_pp = (time.perf_counter() - t0) / k
    sm_total = sm_pp * len(pairs)
    how = "measured" if k == len(pairs) else f"{k} pairs timed x {len(pairs):,}"

    print(f"pairstream scan, {a.workers} process(es): {wall:8.1f} s for {len(rows):,} pairs "
          f"({wall / len(pairs) * 1e3:.1f} ms/pair wall)")
    print(f"pairstream, one process, same {k} pairs:  {ours_pp * 1e3:8.1f} ms/pair")
    print(f"statsmodels coint + coint_johansen loop: {sm_total:8.1f} s ({how}; "
          f"{sm_pp * 1e3:.1f} ms/pair)")
    print(f"ratio statsmodels / pairstream scan (wall):      {sm_total / wall:6.1f}x")
    print(f"ratio per pair, both in one process:              {sm_pp / ours_pp:6.1f}x")
    print(f"largest |difference| in coint_p / johansen_trace over the timed pairs: {worst:.1e}")


if __name__ == "__main__":
    main()
