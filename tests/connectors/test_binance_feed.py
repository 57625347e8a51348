"""Feed lifecycle against the fake exchange: backoff that only a healthy minute resets, rotation
retried soon after a failure, a failing periodic task that stops the flow, and bounded memory
when the worker stops taking records (the feed drops its socket and catches up over REST)."""

from __future__ import annotations

import logging
import re
import time

import pytest

from connectors.binance import BinanceSource
from connectors.binance_budget import RestBudget
from connectors.binance_ws import Feed
from pairstream.records import Tick
from tests.connectors.test_binance import TIMEOUT, expected_aggs, run_flow, ticks_of, until_ids
from tests.fakes.exchange import FakeBinance, Faults
from tests.fakes.tape import SYMBOLS_A

LINE = re.compile(r"binance conn-0: (.+); reconnect attempt (\d+) in (\d+\.\d\d)s$")
FAST = dict(backoff_base=0.01, backoff_cap=0.16, stall_timeout=0.5, verify_timeout=0.2)


def attempts(caplog) -> list[int]:
    found = (LINE.search(r.getMessage()) for r in caplog.records)
    return [int(m.group(2)) for m in found if m]


@pytest.mark.parametrize("healthy_after, resets", [(60.0, False), (0.0, True)])
def test_backoff_resets_only_after_a_healthy_connection(caplog, healthy_after, resets):
    """Connections that deliver a few frames and drop: the attempt count (so the delay) keeps
    growing unless a connection lived ``healthy_after`` seconds."""
    caplog.set_level(logging.WARNING, logger="pairstream.binance")
    expected = {s: expected_aggs(s) for s in SYMBOLS_A}
    final = {s: expected[s][-1].trade_id for s in SYMBOLS_A}
    with FakeBinance(faults=Faults(drop_every=50, drops=6, abnormal_every=0)) as fake:
        src = BinanceSource(list(SYMBOLS_A), "aggTrade", fake.ws_url, fake.rest_url,
                            healthy_after=healthy_after, budget=RestBudget(),
                            stop_when=until_ids(final), **{**FAST, "stall_timeout": 2.0})
        out = run_flow(src)
    got = attempts(caplog)
    assert len(got) >= 6  # the 6 drops (and a stall, should the machine be slow)
    assert got == ([1] * len(got) if resets else list(range(1, len(got) + 1)))
    for s in SYMBOLS_A:
        assert ticks_of(out, s) == expected[s]


def test_failed_rotation_is_retried_within_rotate_retry(caplog):
    caplog.set_level(logging.INFO, logger="pairstream.binance")
    with FakeBinance(manual=True) as fake:
        src = BinanceSource(list(SYMBOLS_A), "aggTrade", fake.ws_url, fake.rest_url,
                            rotate_after=0.3, rotate_retry=0.1, stall_timeout=60.0,
                            budget=RestBudget())
        part = src.build_part("binance", "conn-0", None)
        feed = part._feed
        deadline = time.monotonic() + TIMEOUT
        while fake.stats.connections < 1 and time.monotonic() < deadline:
            time.sleep(0.005)
        fake.faults.refuse = True  # the replacement connection cannot open
        while feed.rotation_failures < 3 and time.monotonic() < deadline:
            time.sleep(0.005)
        failed_at = time.monotonic()
        fake.faults.refuse = False
        while feed.rotations < 1 and time.monotonic() < deadline:
            time.sleep(0.005)
        rotated_after = time.monotonic() - failed_at
        part.close()
    assert feed.rotation_failures >= 3 and feed.rotations >= 1
    assert rotated_after < 5.0  # retried within rotate_retry (0.1 s), not rotate_after later
    assert feed.attempts == 0  # the old connection was kept throughout: no reconnect
    assert sum("rotation failed" in r.getMessage() for r in caplog.records) >= 3


def test_a_failing_periodic_task_is_logged_then_stops_the_flow(caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="pairstream.binance")
    calls = []

    def broken(self: Feed, flush: bool = False) -> None:
        calls.append(1)
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(Feed, "emit_health", broken)
    with FakeBinance(manual=True) as fake:
        src = BinanceSource(list(SYMBOLS_A), "aggTrade", fake.ws_url, fake.rest_url,
                            progress_interval=0.005, budget=RestBudget())
        with pytest.raises(Exception) as e:
            run_flow(src)
    chain, err = [], e.value
    while err is not None:
        chain.append(str(err))
        err = err.__cause__
    assert "binance feed conn-0 stopped: ZeroDivisionError: division by zero" in chain
    assert len(calls) == 100  # ticker_failures in a row
    msgs = [r for r in caplog.records if "periodic task failed" in r.getMessage()]
    assert [r.levelname for r in msgs] == ["ERROR", "ERROR"]  # first failure, then the stop
    assert msgs[0].exc_info is not None  # the first one carries the traceback


def test_back_pressured_partition_holds_at_most_high_water_then_catches_up():
    """The worker stops draining: the feed never holds more than ``high_water`` records (plus
    one frame's worth), drops its socket, and after the drain every trade arrives once."""
    expected = {s: expected_aggs(s) for s in SYMBOLS_A}
    final = {s: expected[s][-1].trade_id for s in SYMBOLS_A}
    high = 500
    with FakeBinance(speed=200.0) as fake:
        src = BinanceSource(list(SYMBOLS_A), "aggTrade", fake.ws_url, fake.rest_url,
                            high_water=high, budget=RestBudget(), **FAST)
        part = src.build_part("binance", "conn-0", None)
        feed = part._feed
        deadline = time.monotonic() + TIMEOUT
        got: list = []
        while not any(type(x) is Tick and x.symbol == "ETHUSDT" for x in got):
            assert time.monotonic() < deadline
            got += part.next_batch()
            time.sleep(0.005)
        peak = 0
        stalled_until = time.monotonic() + 3.0  # the worker is blocked (QuestDB down) for 3 s
        while time.monotonic() < stalled_until:
            peak = max(peak, len(feed.out) + feed.seq.n_held)
            time.sleep(0.002)
        cursor_at_drain = fake.cursor
        while part.snapshot() != final:
            assert time.monotonic() < deadline, part.snapshot()
            got += part.next_batch()
            time.sleep(0.005)
        part.close()
    assert feed.sheds >= 1 and cursor_at_drain > 0
    assert peak <= high + 10, peak  # a frame carries at most a few records
    first = {s: ticks_of(got, s)[0].trade_id for s in SYMBOLS_A}
    for s in SYMBOLS_A:
        want = [t for t in expected[s] if t.trade_id >= first[s]]
        assert ticks_of(got, s) == want
