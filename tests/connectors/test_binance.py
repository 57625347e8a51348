"""BinanceSource against the loopback FakeBinance replaying window A: nothing lost, nothing twice.

Expected output is built from the derived trade CSVs of window A (not from the frames the fake
serves), with Binance's aggTrade rule; ticks are compared field by field.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from pathlib import Path

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, run_main

from connectors.binance import BinanceSource
from connectors.frames import csv_trade_to_tick, rest_agg_to_tick
from pairstream.records import Health, Progress, Tick
from tests.fakes.exchange import FakeBinance, Faults
from tests.fakes.tape import SYMBOLS_A, aggregate, load_csv

TIMEOUT = 60.0  # generous bound for a run that normally takes a few seconds
FAST = dict(backoff_base=0.01, backoff_cap=0.05, stall_timeout=0.5, verify_timeout=0.2)


def expected_aggs(symbol: str) -> list[Tick]:
    return [rest_agg_to_tick(symbol, g.rest_row()) for g in aggregate(load_csv(symbol))]


def expected_trades(symbol: str) -> list[Tick]:
    return [csv_trade_to_tick(symbol, {"id": t.id, "price": t.price, "qty": t.qty, "time": t.T,
                                       "is_buyer_maker": t.m}) for t in load_csv(symbol)]


def until_ids(final: dict[str, int], timeout: float = TIMEOUT):
    deadline = time.monotonic() + timeout
    return lambda last: dict(last) == final or time.monotonic() > deadline


def run_flow(src: BinanceSource, **kw) -> list:
    out: list = []
    flow = Dataflow("binance_test")
    s = op.input("binance", flow, src)
    op.output("out", s, TestingSink(out))
    run_main(flow, **kw)
    return out


def wait_for(cond, deadline: float) -> bool:
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def ticks_of(out: list, symbol: str) -> list[Tick]:
    return [x for x in out if type(x) is Tick and x.symbol == symbol]


@pytest.fixture(scope="module")
def expected() -> dict[str, list[Tick]]:
    return {s: expected_aggs(s) for s in SYMBOLS_A}


def test_faulty_exchange_yields_every_trade_once_in_order(expected, caplog):
    """≥20 disconnects (half abnormal 1006), 5 skipped ids, 1 % malformed, a stall, a 429."""
    caplog.set_level(logging.INFO, logger="pairstream.binance")
    skip = {1500, 6000, 11000, 16500, 21000}  # tape indices never sent live
    faults = Faults(drop_every=300, drops=22, away=25, skip=skip, malformed=0.01,
                    stall_at={8000}, rest_429=1, retry_after=1)
    final = {s: expected[s][-1].trade_id for s in SYMBOLS_A}
    with FakeBinance(faults=faults) as fake:
        src = BinanceSource(list(SYMBOLS_A), "aggTrade", fake.ws_url, fake.rest_url,
                            stop_when=until_ids(final), **FAST)
        out = run_flow(src)
        stats = fake.stats
    # The faults really happened.
    assert stats.drops >= 20 and stats.abnormal >= 10
    assert stats.skipped == 5 and stats.stalls == 1
    assert stats.malformed >= 0.008 * stats.frames
    assert [st for _, st in stats.rest].count(429) == 1
    assert any(st == 200 for _, st in stats.rest)  # and were backfilled
    assert any("stalled" in r.getMessage() for r in caplog.records)
    # Exactly the recorded trades, each once, in id order per symbol.
    for s in SYMBOLS_A:
        got = ticks_of(out, s)
        assert len(got) == len(expected[s])
        assert got == expected[s]
    # Health: per-symbol counters add up (the last partial second may not be reported).
    health = [x for x in out if type(x) is Health]
    assert {h.metric for h in health} >= {"ticks", "reconnects", "gaps", "backfilled",
                                          "malformed", "lag_ms"}
    reconnects = sum(h.value for h in health if h.metric == "reconnects" and h.symbol == "BTCUSDT")
    assert 1 <= reconnects <= stats.connections - 1
    malformed = sum(h.value for h in health if h.metric == "malformed")
    assert 0 < malformed <= stats.malformed
    assert all(h.ts.microsecond == 0 for h in health)
    assert any(type(x) is Progress for x in out)


def test_trade_stream_backfills_over_historical_trades():
    """``stream="trade"``: raw trade ids, backfill through /fapi/v1/historicalTrades."""
    faults = Faults(drop_every=2500, drops=6, abnormal_every=2, away=40, skip={3000, 12000})
    exp = {s: expected_trades(s) for s in SYMBOLS_A}
    final = {s: exp[s][-1].trade_id for s in SYMBOLS_A}
    with FakeBinance(faults=faults) as fake:
        src = BinanceSource(list(SYMBOLS_A), "trade", fake.ws_url, fake.rest_url,
                            api_key="test-key", stop_when=until_ids(final), **FAST)
        out = run_flow(src)
        paths = [p for p, _ in fake.stats.rest]
    assert paths and all(p.startswith("/fapi/v1/historicalTrades?") for p in paths)
    assert fake.stats.drops == 6
    for s in SYMBOLS_A:
        assert ticks_of(out, s) == exp[s]


def test_restart_from_recovery_snapshot_loses_and_repeats_nothing(expected, tmp_path: Path):
    """Run 1 stops mid-tape; trades happen while down; run 2 resumes from Bytewax recovery."""
    db = tmp_path / "recovery"
    db.mkdir()
    init_db_dir(db, 1)
    rc = RecoveryConfig(str(db))
    mid = {s: expected[s][len(expected[s]) // 2].trade_id for s in SYMBOLS_A}
    final = {s: expected[s][-1].trade_id for s in SYMBOLS_A}
    deadline = time.monotonic() + TIMEOUT
    with FakeBinance() as fake:
        src1 = BinanceSource(
            list(SYMBOLS_A), "aggTrade", fake.ws_url, fake.rest_url, **FAST,
            stop_when=lambda last: last.get("BTCUSDT", 0) >= mid["BTCUSDT"]
            or time.monotonic() > deadline)
        before = run_flow(src1, epoch_interval=timedelta(milliseconds=50), recovery_config=rc)
        assert ticks_of(before, "BTCUSDT")[-1].trade_id >= mid["BTCUSDT"]
        assert not fake.done
        fake.advance(500)  # the market moves on while the flow is down
        src2 = BinanceSource(list(SYMBOLS_A), "aggTrade", fake.ws_url, fake.rest_url, **FAST,
                             stop_when=until_ids(final))
        after = run_flow(src2, epoch_interval=timedelta(milliseconds=50), recovery_config=rc)
    for s in SYMBOLS_A:
        b, a = ticks_of(before, s), ticks_of(after, s)
        assert b and a
        assert b + a == expected[s]


def test_partition_snapshot_resume_without_bytewax(expected):
    """Partition level: ticks drained but not snapshotted are re-read; nothing doubles."""
    final = {s: expected[s][-1].trade_id for s in SYMBOLS_A}
    with FakeBinance(manual=True) as fake:
        src = BinanceSource(list(SYMBOLS_A), "aggTrade", fake.ws_url, fake.rest_url, **FAST)
        part = src.build_part("binance", "conn-0", None)
        deadline = time.monotonic() + TIMEOUT
        assert wait_for(lambda: fake.n_clients == 1, deadline)  # a fresh start begins at "now"
        fake.release(9000)
        before: list = []
        snap = None
        while snap is None and time.monotonic() < deadline:
            before += part.next_batch()
            if len(ticks_of(before, "BTCUSDT")) >= 1000 and len(ticks_of(before, "ETHUSDT")):
                snap = part.snapshot()
            time.sleep(0.005)
        assert snap is not None
        # Whatever arrives after the snapshot is lost with the partition (a crash).
        part.close()
        fake.advance(300)
        part2 = src.build_part("binance", "conn-0", snap)
        fake.release(len(fake.frames))
        after: list = []
        while part2.snapshot() != final and time.monotonic() < deadline:
            after += part2.next_batch()
            time.sleep(0.005)
        part2.close()
    for s in SYMBOLS_A:
        b = [t for t in ticks_of(before, s) if t.trade_id <= snap[s]]
        assert b + ticks_of(after, s) == expected[s]


def test_rotation_overlaps_and_keeps_the_tape_exact(expected):
    """Proactive rotation every 0.2 s (Binance: before 24 h) never loses or repeats a trade."""
    final = {s: expected[s][-1].trade_id for s in SYMBOLS_A}
    with FakeBinance(speed=120.0) as fake:  # 8 minutes of tape in ~4 s
        src = BinanceSource(list(SYMBOLS_A), "aggTrade", fake.ws_url, fake.rest_url,
                            rotate_after=0.2, stop_when=until_ids(final), **FAST)
        out = run_flow(src)
        connections = fake.stats.connections
    assert connections >= 10
    for s in SYMBOLS_A:
        assert ticks_of(out, s) == expected[s]
    health = [x for x in out if type(x) is Health and x.metric == "reconnects"]
    assert sum(h.value for h in health) == 0  # rotations are not reconnects
