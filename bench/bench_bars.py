"""Throughput of the bars stage: prints ticks/s, never pass/fail.

Window A (both symbols, 24,356 real trades) is repeated, each copy shifted by the window's
length, to about 1M ticks; then timed through the pure accumulator (:class:`SymbolBars`) and
through the ``bars`` operator in a one-worker Bytewax dataflow (``run_main``); and as
TickBatches through ``SymbolBars.add_batch`` (the columnar path of a full-speed replay).

``--baseline REV`` instead times ``add_batch`` over the replay's own TickBatches of the
``bench.replay`` tape (2 MiB frame blocks, 1,022,952 ticks), with this tree's
``pairstream/ohlcv.py`` and the one at git revision REV, alternating in one process (the box is
shared: only the ratio means something), and checks both give the same records.

    .venv/bin/python -m bench.bench_bars [--ticks 1000000] [--batch 1000] [--baseline main]
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main

from bench.common import ROOT, write_frame_file
from connectors.frames import csv_trade_to_tick
from connectors.replay import _batches, _frame_blocks
from connectors.trade_block import trade_columns
from flows.bars import bars
from pairstream.ohlcv import SymbolBars
from pairstream.records import Tick, TickBatch

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample"
WINDOW = "2024-07-18T23-57_2024-07-19T00-05"
TFS = ("1s", "1m", "5m")
LATENESS = timedelta(milliseconds=500)


def tape(n: int) -> list[Tick]:
    one: list[Tick] = []
    for sym in ("BTCUSDT", "ETHUSDT"):
        with open(SAMPLE / f"futures-um-trades-{sym}-{WINDOW}.csv", newline="") as fh:
            one += [csv_trade_to_tick(sym, r) for r in csv.DictReader(fh)]
    one.sort(key=lambda t: (t.ts, t.symbol))
    span = one[-1].ts - one[0].ts + timedelta(seconds=1)
    out: list[Tick] = []
    k = 0
    while len(out) < n:
        shift = span * k
        out += [replace(t, ts=t.ts + shift) for t in one]
        k += 1
    return out[:n]


def bench_pure(ticks: list[Tick]) -> tuple[float, int]:
    states = {s: SymbolBars(s, TFS, LATENESS) for s in {t.symbol for t in ticks}}
    n_bars = 0
    t0 = time.perf_counter()
    for t in ticks:
        states[t.symbol].add_tick(t)
    for sb in states.values():
        sb.flush()
        n_bars += len(sb.drain())
    return time.perf_counter() - t0, n_bars


def bench_batches(ticks: list[Tick], batch: int) -> tuple[float, int]:
    """The columnar path: the same ticks as TickBatches of ``batch`` ticks of one symbol."""
    by_symbol: dict[str, list[Tick]] = {}
    for t in ticks:
        by_symbol.setdefault(t.symbol, []).append(t)
    batches = {
        s: [TickBatch.from_ticks(v[i : i + batch]) for i in range(0, len(v), batch)]
        for s, v in by_symbol.items()
    }
    states = {s: SymbolBars(s, TFS, LATENESS) for s in by_symbol}
    n_bars = 0
    t0 = time.perf_counter()
    for s, bs in batches.items():
        for b in bs:
            states[s].add_batch(b)
    for sb in states.values():
        sb.flush()
        n_bars += len(sb.drain())
    return time.perf_counter() - t0, n_bars


def bench_operator(ticks: list[Tick], batch: int) -> tuple[float, int]:
    flow = Dataflow("bench_bars")
    out = bars("bars", op.input("in", flow, TestingSource(ticks, batch)), TFS, LATENESS)
    got: list = []
    op.output("out", out.bars, TestingSink(got))
    t0 = time.perf_counter()
    run_main(flow)
    return time.perf_counter() - t0, len(got)


def replay_batches(n: int = 1_022_952) -> list[TickBatch]:
    """The TickBatches a full-speed replay of the ``bench.replay`` tape hands the bars step."""
    out: list[TickBatch] = []
    for block in _frame_blocks(str(write_frame_file(n)), 0, 2 << 20):
        out += _batches(trade_columns(block, by_symbol=True), frozenset({"BTCUSDT", "ETHUSDT"}), 0)
    return out


def ohlcv_at(rev: str) -> type:
    """``SymbolBars`` of ``pairstream/ohlcv.py`` as of git revision ``rev``."""
    src = subprocess.run(
        ["git", "show", f"{rev}:pairstream/ohlcv.py"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "ohlcv_baseline.py"
    path.write_bytes(src)
    spec = importlib.util.spec_from_file_location("ohlcv_baseline", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod.SymbolBars


def run_replay(cls: type, batches: list[TickBatch]) -> tuple[float, list]:
    states: dict = {}
    out: list = []
    t0 = time.perf_counter()
    for b in batches:
        sb = states.get(b.symbol)
        if sb is None:
            sb = states[b.symbol] = cls(b.symbol, TFS, LATENESS)
        sb.add_batch(b)
        out += sb.drain()
    for sb in states.values():
        sb.flush()
        out += sb.drain()
    return time.perf_counter() - t0, out


def compare(rev: str, rounds: int = 5) -> None:
    batches = replay_batches()
    old_cls = ohlcv_at(rev)
    _, ref = run_replay(old_cls, batches)
    _, got = run_replay(SymbolBars, batches)
    if got != ref:
        raise SystemExit(f"DIFFERENT records from {rev}'s SymbolBars")
    best = {"old": float("inf"), "new": float("inf")}
    for _ in range(rounds):
        for name, cls in (("old", old_cls), ("new", SymbolBars)):
            best[name] = min(best[name], run_replay(cls, batches)[0])
    n = sum(map(len, batches))
    for name in ("old", "new"):
        report(f"add_batch {name}", n, best[name], f"{len(ref):,} records, best of {rounds}")
    print(f"old/new: {best['old'] / best['new']:.2f}x (same records: {len(ref):,})")


def report(what: str, n: int, secs: float, extra: str) -> None:
    print(f"{what:<16}: {n:>9,} ticks {secs:6.2f}s {n / secs:>10,.0f} ticks/s  ({extra})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ticks", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=1000, help="TestingSource batch size")
    ap.add_argument("--baseline", metavar="REV", help="old vs new add_batch on the replay tape")
    args = ap.parse_args()
    if args.baseline:
        compare(args.baseline)
        return
    ticks = tape(args.ticks)
    secs, n = bench_pure(ticks)
    report("pure add_tick", len(ticks), secs, f"{n:,} bars")
    secs_b, n_b = bench_batches(ticks, args.batch * 5)
    report("pure add_batch", len(ticks), secs_b, f"{n_b:,} bars, {secs / secs_b:.1f}x add_tick")
    secs, n = bench_operator(ticks, args.batch)
    report("bytewax bars()", len(ticks), secs, f"{n:,} bars, batch {args.batch}")


if __name__ == "__main__":
    main()
