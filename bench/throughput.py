"""End-to-end throughput of the whole flow into a real QuestDB, and two baselines on the same ticks.

Prints figures, never pass/fail.
``python -m bench.throughput [--ticks 1000000] [--passes 2] [--profile] [--no-compare]``

1. **flow**: the repeated window-A tape (:mod:`bench.common`, ≥ 1M real ticks as a frame file)
   replayed by ``build(cfg)`` — ticks, 1s/1m/5m bars, one pair's analytics, signals, alerts —
   into a QuestDB started here on free ports, one worker; wall time from start until every row
   is applied (``wait_applied``). Twice on the same server: pass 1 meets a QuestDB whose JVM
   has just started, pass 2 (tables dropped in between) one that has been running, as a
   deployed QuestDB has; both are printed. Also the flow process's and QuestDB's CPU time.
2. **batch**: a vectorised pandas/statsmodels/pykalman pass over the same ticks computing the
   same bars (``resample``) and analytics (``tests/flows/reference.py``: RollingOLS, rolling z,
   corr, adfuller every K bars, Kalman filter) with no database.
3. **dashboard**: the recompute-on-every-update loop of a Streamlit-style dashboard: per second
   of tape, append the second's ticks to a buffer, re-resample the whole buffer to 1s bars and
   re-fit OLS + z-score on the last W bars. Its cost grows with the buffer, so it runs for a
   bounded time and the full-tape total is extrapolated from a least-squares fit of the
   per-update cost against the buffer size (clearly labelled).
"""

from __future__ import annotations

import argparse
import cProfile
import logging
import os
import pstats
import resource
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import orjson
import pandas as pd

from bench.common import (
    cpu_seconds,
    machine,
    questdb,
    replay_config,
    table_counts,
    write_frame_file,
)
from connectors.questdb_sink import drop_tables, ensure_tables
from pairstream.config import AnalyticsConfig

TFS = {"1s": "1s", "1m": "1min", "5m": "5min"}


def run_flow(path: Path, profile: bool = False, passes: int = 2, **questdb_kw) -> list[dict]:
    """Replay ``path`` through ``build(cfg)`` into one QuestDB ``passes`` times (tables dropped
    in between); timings and row counts of each pass.

    Pass 1 meets a QuestDB that has just started: its JVM is still compiling the ILP, WAL and
    dedup code (~3 s of CPU on the same two cores). A deployed QuestDB is a long-running
    service, so pass 2, on the same server with empty tables, is the figure for the flow.
    """
    from bytewax.testing import run_main

    from flows.pairs import build
    from flows.startup import tune_gc, warm_kernels

    out = []
    with questdb() as srv:
        cfg = replay_config([str(path)], srv.conf, **questdb_kw)
        warm_kernels()  # start-up, like imports: `prepare()` does it before the flow starts
        for i in range(passes):
            drop_tables(srv.http)
            ensure_tables(srv.conf)
            r0 = resource.getrusage(resource.RUSAGE_SELF)
            q0 = cpu_seconds(srv.proc.pid)
            load0 = os.getloadavg()[0]
            t0 = time.perf_counter()
            tune_gc()  # as `python -m bytewax.run flows.pairs` and `pairstream` do at start
            flow = build(cfg)
            prof = cProfile.Profile() if profile and i == passes - 1 else None
            if prof:
                prof.enable()
            run_main(flow)
            if prof:
                prof.disable()
            t_flow = time.perf_counter() - t0
            srv.http.wait_applied(timeout=600)
            wall = time.perf_counter() - t0
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            q1 = cpu_seconds(srv.proc.pid)
            out.append({
                "wall": wall,
                "flow": t_flow,
                "cpu": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime),
                "questdb_cpu": q1 - q0,
                "counts": table_counts(srv),
                "load": (load0, os.getloadavg()[0]),
            })  # fmt: skip
            if prof:
                dump = Path("/tmp/pairstream-throughput.prof")
                prof.dump_stats(dump)
                print(f"\ncProfile of the worker thread ({dump}), top 25 by own time:")
                pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    return out


def load_ticks(path: Path) -> pd.DataFrame:
    """The tape as a DataFrame (what a batch job would start from)."""
    cols: dict[str, list] = {k: [] for k in ("s", "T", "p", "q", "m")}
    with open(path, "rb") as fh:
        for line in fh:
            d = orjson.loads(line.partition(b" ")[2])["data"]
            for k, v in cols.items():
                v.append(d[k])
    df = pd.DataFrame(
        {
            "symbol": cols["s"],
            "ms": np.asarray(cols["T"], dtype="int64"),
            "ts": pd.to_datetime(np.asarray(cols["T"], dtype="int64"), unit="ms", utc=True),
            "price": np.asarray(cols["p"], dtype=float),
            "qty": np.asarray(cols["q"], dtype=float),
            "buyer_maker": np.asarray(cols["m"], dtype=bool),
        }
    )
    return df


def batch_bars(ticks: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """OHLCV per symbol and timeframe with ``resample`` (empty intervals filled, like ours)."""
    out = {}
    t = ticks.assign(
        quote=ticks.price * ticks.qty, taker=np.where(ticks.buyer_maker, 0.0, ticks.qty)
    ).set_index("ts")
    for tf, rule in TFS.items():
        frames = []
        for sym, g in t.groupby("symbol"):
            r = g.resample(rule)
            b = r["price"].ohlc()
            b["volume"] = r["qty"].sum()
            b["quote_volume"] = r["quote"].sum()
            b["trades"] = r["price"].count()
            b["taker_buy_volume"] = r["taker"].sum()
            b["close"] = b["close"].ffill()
            for c in ("open", "high", "low"):
                b[c] = b[c].fillna(b["close"])
            b["vwap"] = (b.quote_volume / b.volume).fillna(b.close)
            b["symbol"] = sym
            frames.append(b)
        out[tf] = pd.concat(frames)
    return out


def batch_analytics(bars: dict[str, pd.DataFrame], cfg: AnalyticsConfig) -> int:
    from tests.reference import reference_analytics

    rows = 0
    for _tf, b in bars.items():
        closes = b.pivot_table(index=b.index, columns="symbol", values="close").ffill().dropna()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            y, x = closes["BTCUSDT"].to_numpy(), closes["ETHUSDT"].to_numpy()
            ref = reference_analytics(y, x, cfg)
        rows += len(ref)
    return rows


def run_batch(path: Path, cfg: AnalyticsConfig) -> dict:
    t0 = time.perf_counter()
    ticks = load_ticks(path)
    t1 = time.perf_counter()
    bars = batch_bars(ticks)
    t2 = time.perf_counter()
    rows = batch_analytics(bars, cfg)
    t3 = time.perf_counter()
    return {
        "load": t1 - t0,
        "bars": t2 - t1,
        "analytics": t3 - t2,
        "total": t3 - t0,
        "n_bars": sum(len(b) for b in bars.values()),
        "n_rows": rows,
        "ticks": ticks,
    }


def dashboard_update(buf: dict[str, list], window: int) -> float:
    """One dashboard refresh: whole buffer → 1s bars → OLS + z on the last ``window`` bars."""
    import statsmodels.api as sm

    df = pd.DataFrame(buf)
    df["ts"] = pd.to_datetime(df["ts"], unit="ms", utc=True)
    closes = (
        df.set_index("ts").groupby("symbol")["price"].resample("1s").last().unstack(0).ffill()
    )
    closes = closes.dropna()
    if len(closes) < window:
        return float("nan")
    w = closes.iloc[-window:]
    fit = sm.OLS(w["BTCUSDT"].to_numpy(), sm.add_constant(w["ETHUSDT"].to_numpy())).fit()
    spread = w["BTCUSDT"] - fit.params[1] * w["ETHUSDT"]
    return float((spread.iloc[-1] - spread.mean()) / spread.std(ddof=1))


def run_dashboard(ticks: pd.DataFrame, budget: float, window: int = 60) -> dict:
    """Measure refreshes for ``budget`` seconds, then extrapolate to the whole tape."""
    ms = ticks["ms"].to_numpy()
    sec = ms // 1000
    sym = ticks["symbol"].to_numpy()
    price = ticks["price"].to_numpy()
    qty = ticks["qty"].to_numpy()
    bounds = np.flatnonzero(np.diff(sec)) + 1
    ends = np.append(bounds, len(sec))  # buffer size after each second of tape with trades
    seconds_total = int(sec[-1] - sec[0] + 1)  # a dashboard refreshes every second, trades or not
    buf: dict[str, list] = {"symbol": [], "ts": [], "price": [], "qty": []}
    sizes, costs = [], []
    start = 0
    t_start = time.perf_counter()
    for end in ends:
        buf["symbol"].extend(sym[start:end])
        buf["ts"].extend(ms[start:end])
        buf["price"].extend(price[start:end])
        buf["qty"].extend(qty[start:end])
        start = end
        t0 = time.perf_counter()
        dashboard_update(buf, window)
        costs.append(time.perf_counter() - t0)
        sizes.append(end)
        if time.perf_counter() - t_start > budget:
            break
    b, a = np.polyfit(np.asarray(sizes, float), np.asarray(costs), 1)  # cost ≈ a + b·size
    # every second of the tape, with the buffer as it stands then (seconds without trades too)
    full_sizes = np.searchsorted(sec, np.arange(sec[0], sec[-1] + 1), side="right")
    extrapolated = float(np.sum(a + b * full_sizes))
    return {
        "updates": len(costs),
        "measured": float(np.sum(costs)),
        "ticks_seen": int(sizes[-1]),
        "a": a,
        "b": b,
        "seconds_total": seconds_total,
        "extrapolated": extrapolated,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ticks", type=int, default=1_000_000)
    ap.add_argument("--profile", action="store_true", help="cProfile the worker thread")
    ap.add_argument("--passes", type=int, default=2, help="flow runs on one QuestDB (≥ 1)")
    ap.add_argument("--no-compare", action="store_true", help="flow only")
    ap.add_argument("--dashboard-budget", type=float, default=30.0, help="seconds")
    args = ap.parse_args(argv)
    logging.disable(logging.WARNING)  # alert FIRING lines would flood the output

    print(f"machine: {machine()}")
    path = write_frame_file(args.ticks)
    print(f"tape: {args.ticks:,} ticks (window A repeated), frame file {path}")

    runs = run_flow(path, profile=args.profile, passes=args.passes)
    n = args.ticks
    for i, f in enumerate(runs, 1):
        what = "QuestDB just started" if i == 1 else "same QuestDB, tables dropped"
        print(
            f"\nflow pass {i} ({what}; 1 worker): {f['wall']:.1f} s wall to all rows applied "
            f"(dataflow {f['flow']:.1f} s) -> {n / f['wall']:,.0f} ticks/s end to end"
        )
        print(
            f"  flow process CPU {f['cpu']:.1f} s -> {n / f['cpu']:,.0f} ticks per CPU-second "
            f"(load average {f['load'][0]:.1f} -> {f['load'][1]:.1f} on {os.cpu_count()} cores)"
        )
        print(f"  QuestDB server CPU in the same time: {f['questdb_cpu']:.1f} s")
        print(f"  rows: {f['counts']}")
    f = runs[-1]
    if len(runs) > 1:
        print(
            f"\nend to end against a running QuestDB (pass {len(runs)}): "
            f"{n / f['wall']:,.0f} ticks/s; a freshly started one (pass 1, its JIT warming up): "
            f"{n / runs[0]['wall']:,.0f} ticks/s"
        )
    if args.no_compare:
        return 0

    acfg = replay_config([str(path)], "http::addr=127.0.0.1:9000;").analytics_for("1s")
    b = run_batch(path, acfg)
    print(
        f"\n(a) vectorised batch (pandas resample + statsmodels/pykalman, no database): "
        f"{b['total']:.1f} s = load {b['load']:.1f} + bars {b['bars']:.1f} + analytics "
        f"{b['analytics']:.1f} ({b['n_bars']:,} bars, {b['n_rows']:,} analytics rows)"
    )
    print(
        f"  -> {n / b['total']:,.0f} ticks/s; flow / batch time = {f['wall'] / b['total']:.2f}x "
        f"(flow CPU / batch = {f['cpu'] / b['total']:.2f}x)"
    )

    d = run_dashboard(b["ticks"], args.dashboard_budget)
    print(
        f"\n(b) dashboard recompute-every-second: measured {d['updates']:,} refreshes "
        f"({d['ticks_seen']:,} ticks in the buffer at the end) in {d['measured']:.1f} s; "
        f"cost per refresh ~ {d['a'] * 1e3:.1f} ms + {d['b'] * 1e9:.0f} ns x buffered ticks"
    )
    print(
        f"  EXTRAPOLATED to the whole tape ({d['seconds_total']:,} refreshes): "
        f"{d['extrapolated']:,.0f} s -> {n / d['extrapolated']:,.0f} ticks/s; "
        f"dashboard / flow time = {d['extrapolated'] / f['wall']:,.0f}x; at the tape's end one "
        f"refresh takes {(d['a'] + d['b'] * n) * 1e3:,.0f} ms "
        f"({'cannot' if d['a'] + d['b'] * n > 1 else 'can'} keep up with 1 refresh/s; it falls "
        f"behind once the buffer holds {(1 - d['a']) / d['b']:,.0f} ticks)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
