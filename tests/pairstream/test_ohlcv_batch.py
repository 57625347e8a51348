"""``SymbolBars.add_batch`` (the columnar path) against ``add_tick`` on each tick, the reference.

Same drained bars and ``late_ticks`` rows (each in order) and same state, whatever the
batching, with late ticks, duplicates, out-of-order arrival, Progress in between, a flush, a
resume with another lateness, quantities past the float fast path and the real window-A tape.
"""

from __future__ import annotations

import csv
import random
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.frames import csv_trade_to_tick, ms_to_dt
from pairstream.ohlcv import _INT64_RUN, SymbolBars, _second_sums
from pairstream.records import Bar, Health, Progress, Tick, TickBatch

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample"
TFS = ("1s", "1m", "5m")


def state(sb: SymbolBars) -> dict:
    d = dict(vars(sb))
    d.pop("out")
    d["levels"] = [(lv.label, lv.size, lv.acc) for lv in sb.levels]
    return d


def feed(items, lateness: timedelta, cuts: list[int] | None, resume_lateness=None):
    """Drained output and final state; ``cuts`` None = one tick at a time (the reference)."""
    sb = SymbolBars("XYZUSDT", TFS, lateness)
    out: list = []
    i = 0
    cuts = sorted(set(cuts or []))
    while i < len(items):
        it = items[i]
        if isinstance(it, Progress):
            sb.add_progress(it.ts)
            i += 1
        elif it == "resume":
            sb.lateness_us = resume_lateness // timedelta(microseconds=1)
            i += 1
        else:
            j = i
            while j < len(items) and isinstance(items[j], Tick):
                j += 1
            run = items[i:j]
            if cuts is None:
                for t in run:
                    sb.add_tick(t)
            else:
                edges = sorted({0, *[c - i for c in cuts if 0 < c - i < len(run)], len(run)})
                for a, b in zip(edges, edges[1:]):
                    sb.add_batch(TickBatch.from_ticks(run[a:b]))
            i = j
        out += sb.drain()
    sb.flush()
    out += sb.drain()
    # Bars and late_ticks rows leave the bars step on separate streams: compare each in order.
    return (
        [o for o in out if isinstance(o, Bar)],
        [o for o in out if isinstance(o, Health)],
        state(sb),
    )


def check(items, lateness, seed, resume_lateness=None) -> None:
    ref = feed(items, lateness, None, resume_lateness)
    rng = random.Random(seed)
    for k in (1, 3, len(items) // 2 + 1):
        cuts = rng.sample(range(len(items) + 1), min(k, len(items) + 1))
        got = feed(items, lateness, cuts, resume_lateness)
        assert got[0] == ref[0]
        assert got[1] == ref[1]
        assert got[2] == ref[2]
    assert feed(items, lateness, [len(items)], resume_lateness) == ref  # one batch


tick_rows = st.lists(
    st.tuples(
        st.integers(0, 6_000),  # ms offset (arrival order as listed: anything goes)
        st.integers(1, 60),  # price in 0.1 steps
        st.sampled_from([1, 7, 250, 10**9, 3 * 10**15]),  # qty in 0.001 steps (big: slow path)
        st.booleans(),
        st.integers(0, 5),  # trade id (repeats: duplicates)
        st.integers(0, 2),  # raw trades aggregated - 1
        st.integers(0, 12),  # > 9: a Progress record before it, < 1: a resume point
    ),
    min_size=1,
    max_size=50,
)


@settings(max_examples=300, deadline=None)
@given(tick_rows, st.integers(0, 1_500), st.integers(0, 1_500), st.integers(0, 10**6))
def test_batches_equal_tick_by_tick(rows, lateness_ms, resume_ms, seed):
    base = 1_721_347_000_000
    items: list = []
    for ms, p, q, m, tid, extra, flag in rows:
        if flag > 9:
            items.append(Progress("XYZUSDT", ms_to_dt(base + ms - 300 * (flag - 10))))
        if flag < 1:
            items.append("resume")
        items.append(
            Tick("XYZUSDT", ms_to_dt(base + ms), p / 10, q / 1000, tid, tid, tid + extra, m)
        )
    check(items, timedelta(milliseconds=lateness_ms), seed, timedelta(milliseconds=resume_ms))


@pytest.mark.parametrize("symbol", ["BTCUSDT", "ETHUSDT"])
def test_window_a_in_batches_equals_tick_by_tick(symbol):
    with open(SAMPLE / f"futures-um-trades-{symbol}-2024-07-18T23-57_2024-07-19T00-05.csv") as fh:
        ticks = [csv_trade_to_tick(symbol, r) for r in csv.DictReader(fh)]
    rng = random.Random(5)
    # reorder a little (some ticks become late at 200 ms) and drop in a few duplicates
    arrival = sorted(ticks, key=lambda t: t.ts + timedelta(milliseconds=rng.randint(0, 400)))
    for i in rng.sample(range(len(arrival)), 20):
        arrival.insert(i + 1, arrival[i])
    ticks = [Tick("XYZUSDT", *(getattr(t, f) for f in Tick.__slots__[1:])) for t in arrival]
    ref = feed(ticks, timedelta(milliseconds=200), None)
    assert ref[2]["late_total"] > 0 and ref[1]  # the premise: late ticks are exercised
    got = feed(ticks, timedelta(milliseconds=200), list(range(0, len(ticks), 777)))
    assert got == ref


def _python_sums(ps: list[int], qs: list[int], maker: list[bool], bounds: list[int]):
    spans = list(zip(bounds, bounds[1:]))
    return (
        [sum(qs[a:z]) for a, z in spans],
        [sum(p * q for p, q in zip(ps[a:z], qs[a:z])) for a, z in spans],
        [sum(0 if m else q for m, q in zip(maker[a:z], qs[a:z])) for a, z in spans],
    )


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(-(2**50) + 1, 2**50 - 1), st.integers(0, 2**50 - 1), st.booleans()),
        min_size=1,
        max_size=60,
    ),
    st.sets(st.integers(1, 59)),
)
def test_second_sums_are_the_exact_python_sums(rows, cuts):
    """int64 column sums (25-bit halves for price·qty) == sequential Python int sums."""
    ps, qs, maker = (list(c) for c in zip(*rows))
    bounds = [0, *sorted(c for c in cuts if c < len(rows)), len(rows)]
    idx = np.array(bounds[:-1], dtype=np.int64)
    ends = np.array(bounds[1:], dtype=np.int64)
    args = (np.array(ps, dtype=np.int64), np.array(qs, dtype=np.int64), np.array(maker))
    assert _second_sums(*args, idx, ends) == _python_sums(ps, qs, maker, bounds)
    obj = (np.array(ps, dtype=object), np.array(qs, dtype=object), np.array(maker))
    assert _second_sums(*obj, idx, ends) == _python_sums(ps, qs, maker, bounds)


def test_second_sums_long_runs_do_not_overflow():
    """A run past _INT64_RUN ticks of near-2**50 values would overflow int64: summed in Python."""
    n = _INT64_RUN * 3
    ps, qs = [2**50 - 1 - k for k in range(n)], [2**50 - 7 * k - 1 for k in range(n)]
    maker = [k % 3 == 0 for k in range(n)]
    bounds = [0, 5, 5 + _INT64_RUN + 1, n]
    idx, ends = np.array(bounds[:-1]), np.array(bounds[1:])
    args = (np.array(ps, dtype=np.int64), np.array(qs, dtype=np.int64), np.array(maker))
    assert _second_sums(*args, idx, ends) == _python_sums(ps, qs, maker, bounds)


def test_dense_second_in_batches_equals_tick_by_tick():
    """Thousands of big trades in one second (the long-run path) and a second after it."""
    base = 1_721_347_000_000
    rng = random.Random(3)
    ms = [base + rng.randrange(1000) for _ in range(3 * _INT64_RUN)]
    big = [
        Tick("XYZUSDT", ms_to_dt(t), 6e4 + k / 10, 3.5 + k, k, k, k, k % 2 > 0)
        for k, t in enumerate(ms)
    ]
    ticks = [*big, Tick("XYZUSDT", ms_to_dt(base + 2_500), 6e4, 1.0, 10**6, 10**6, 10**6, False)]
    ref = feed(ticks, timedelta(milliseconds=100), None)
    assert feed(ticks, timedelta(milliseconds=100), [len(ticks)]) == ref
    assert feed(ticks, timedelta(milliseconds=100), [1000, len(ticks) - 1]) == ref


