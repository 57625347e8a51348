"""The bars operators inside a real Bytewax dataflow (``bytewax.testing.run_main``).

The pure logic is pinned to klines and pandas in ``test_ohlcv``; here the wiring is: keyed by
symbol, both symbols interleaved, any batching, Progress records, EOF flush, late-tick health
rows, the kline roll-up, and a crash + resume from the recovery store.
"""

from __future__ import annotations

import random
from datetime import timedelta

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, TestingSource, run_main

from flows.bars import bars, rollup_bars
from pairstream.records import Bar, Health, Progress, Tick
from tests.pairstream.test_ohlcv import (
    COMPLETE_A,
    SYMBOLS,
    TFS,
    assert_equals_klines,
    bars_of,
    kline_bar,
    load_klines,
    load_ticks,
    run,
    shuffled_within,
)

LATENESS = timedelta(milliseconds=500)


def run_bars(items, lateness=LATENESS, batch_size=50, timeframes=TFS, recovery=None):
    flow = Dataflow("test_bars")
    events = op.input("in", flow, TestingSource(items, batch_size))
    out = bars("bars", events, timeframes, lateness)
    got_bars: list[Bar] = []
    got_late: list[Health] = []
    op.output("bars_out", out.bars, TestingSink(got_bars))
    op.output("late_out", out.late, TestingSink(got_late))
    run_main(flow, epoch_interval=timedelta(0), recovery_config=recovery)
    return got_bars, got_late


def per_symbol(bs: list[Bar], symbol: str) -> list[Bar]:
    return [b for b in bs if b.symbol == symbol]


@pytest.fixture(scope="module")
def tapes():
    return {s: load_ticks(s) for s in SYMBOLS}


@pytest.fixture(scope="module")
def merged(tapes):
    return sorted((t for s in SYMBOLS for t in tapes[s]), key=lambda t: (t.ts, t.symbol))


@pytest.fixture(scope="module")
def expected(tapes):
    """The pure accumulator's bars per symbol (pinned to klines/pandas in test_ohlcv)."""
    return {s: bars_of(run(tapes[s], LATENESS)[0]) for s in SYMBOLS}


def assert_unique(bs: list[Bar]) -> None:
    keys = [(b.symbol, b.tf, b.ts) for b in bs]
    assert len(keys) == len(set(keys))


def test_replay_of_window_a_equals_klines_and_pure_logic(merged, expected):
    got, late = run_bars(merged)
    assert_unique(got)
    assert late == []
    for s in SYMBOLS:
        assert per_symbol(got, s) == expected[s]
        assert_equals_klines(per_symbol(got, s), load_klines(s), COMPLETE_A)


def test_shuffled_within_lateness_any_batching(merged, expected):
    arrival = shuffled_within(merged, LATENESS, seed=11)
    got, late = run_bars(arrival, batch_size=7)
    assert late == []
    for s in SYMBOLS:
        assert per_symbol(got, s) == expected[s]


def test_late_ticks_change_no_bar_and_become_health_rows(tapes, merged):
    btc = tapes["BTCUSDT"]
    late = [btc[i] for i in random.Random(3).sample(range(100, 5000), 20)]
    # re-deliver copies of them at the end: their seconds are long closed
    stale = [Tick(t.symbol, t.ts, t.price * 2, t.qty, t.trade_id, t.first_id, t.last_id, False)
             for t in late]  # fmt: skip
    keep = [t for t in merged if t not in set(late)]
    got, health = run_bars(keep[:-3000] + stale + keep[-3000:], batch_size=9)
    want, _ = run_bars(keep)
    for s in SYMBOLS:  # the interleaving of symbols depends on batching; each symbol's doesn't
        assert per_symbol(got, s) == per_symbol(want, s)
    assert {(h.symbol, h.metric) for h in health} == {("BTCUSDT", "late_ticks")}
    upserted = {(h.ts, h.symbol, h.metric): h.value for h in health}  # what DEDUP UPSERT keeps
    assert sum(upserted.values()) == len(stale)


def test_progress_closes_bars_of_a_silent_symbol(tapes):
    eth = tapes["ETHUSDT"][:100]
    progress = eth[-1].ts + timedelta(minutes=6)
    items = [*eth, Progress("ETHUSDT", progress), TestingSource.ABORT()]
    # ABORT ends the run without EOF: only what Progress closed can have been emitted
    got, _ = run_bars(items, batch_size=10)
    ones = per_symbol(bars_of(got, "1s"), "ETHUSDT")
    assert ones[-1].ts == (progress - LATENESS).replace(microsecond=0) - timedelta(seconds=1)
    assert all(b.filled for b in ones if b.ts > eth[-1].ts)
    assert bars_of(got, "5m")  # the 5m bar ending before progress − lateness is out too


def test_eof_flushes_every_open_bar(tapes, expected):
    got, _ = run_bars(tapes["ETHUSDT"], lateness=timedelta(seconds=30))
    assert got == expected["ETHUSDT"]  # same bars, only later: flushed at EOF


def test_resume_after_crash_loses_no_bar_and_never_changes_one(tmp_path, merged, expected):
    init_db_dir(tmp_path, 1)
    recovery = RecoveryConfig(str(tmp_path))
    items = [*merged[:9000], TestingSource.ABORT(), *merged[9000:]]
    first, _ = run_bars(items, batch_size=100, recovery=recovery)
    second, late = run_bars(items, batch_size=100, recovery=recovery)
    assert late == []
    n = sum(len(expected[s]) for s in SYMBOLS)
    assert 0 < len(first) < n and 0 < len(second) < n  # it did crash, and it did resume
    by_key: dict = {}
    for b in first + second:  # at-least-once output: a replayed bar must be the same bar
        assert by_key.setdefault((b.symbol, b.tf, b.ts), b) == b
    for s in SYMBOLS:
        assert sorted((b for b in by_key.values() if b.symbol == s), key=_order) == sorted(
            expected[s], key=_order
        )


def _order(b: Bar):
    return (b.tf, b.ts)


def test_rollup_bars_operator_on_klines():
    klines = [kline_bar(s, r) for s in SYMBOLS for r in load_klines(s).values()]
    klines.sort(key=lambda b: (b.ts, b.symbol))
    flow = Dataflow("test_rollup")
    got: list[Bar] = []
    stream = op.input("in", flow, TestingSource(klines, 4))
    op.output("out", rollup_bars("rollup", stream, "1m", TFS), TestingSink(got))
    run_main(flow)
    assert_unique(got)
    for s in SYMBOLS:
        mine = per_symbol(got, s)
        assert bars_of(mine, "1m") == [b for b in klines if b.symbol == s]
        five = bars_of(mine, "5m")
        assert [b.ts for b in five] == sorted({b.ts.replace(minute=b.ts.minute // 5 * 5)
                                               for b in klines if b.symbol == s})  # fmt: skip


def test_bad_timeframes_fail_when_the_flow_is_built():
    flow = Dataflow("bad")
    events = op.input("in", flow, TestingSource([]))
    with pytest.raises(Exception, match="multiple"):
        bars("bars", events, ["1s", "1m", "90s"], LATENESS)


def test_other_records_are_a_wiring_error(tapes):
    h = Health("BTCUSDT", "ticks", tapes["BTCUSDT"][0].ts, 1.0)
    with pytest.raises(Exception) as err:
        run_bars([tapes["BTCUSDT"][0], h])
    causes, e = [], err.value
    while e is not None:
        causes.append(e)
        e = e.__cause__
    wanted = "expected Tick, TickBatch or Progress"
    assert any(isinstance(c, TypeError) and wanted in str(c) for c in causes)
