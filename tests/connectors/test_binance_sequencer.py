"""Gap-free sequencing, Progress gating and Health counters of one Binance connection (no I/O)."""

from __future__ import annotations

import random
from collections import deque
from datetime import datetime, timedelta, timezone

import orjson

from connectors.binance_rest import BinanceRest
from connectors.binance_ws import BACKFILL, SYNCED, VERIFY, Feed, Sequencer, backoff_delay
from connectors.frames import ms_to_dt
from pairstream.records import Health, Progress, Tick

T0 = 1721347022000


def tick(i: int, sym: str = "BTCUSDT") -> Tick:
    return Tick(sym, ms_to_dt(T0 + i), 100.0, 1.0, i, i, i, False)


class Rec:
    def __init__(self, symbols=("BTCUSDT",), last=None):
        self.out: list[Tick] = []
        self.counts: dict[tuple[str, str], int] = {}
        self.wanted: list[str] = []
        self.seq = Sequencer(list(symbols), last or {}, self.out.append, self.count,
                             self.wanted.append)

    def count(self, s, m, n):
        self.counts[(s, m)] = self.counts.get((s, m), 0) + n

    def ids(self):
        return [t.trade_id for t in self.out]


def test_in_order_duplicates_dropped():
    r = Rec()
    r.seq.on_connect(0.0)
    for i in [1, 2, 2, 3, 1, 4]:
        r.seq.on_live(tick(i))
    assert r.ids() == [1, 2, 3, 4]
    assert r.wanted == []


def test_gap_holds_live_ticks_until_rest_fills_it():
    r = Rec()
    r.seq.on_connect(0.0)
    for i in [1, 2, 5, 6]:
        r.seq.on_live(tick(i))
    assert r.ids() == [1, 2] and r.wanted == ["BTCUSDT"]
    assert r.seq.state["BTCUSDT"] == BACKFILL and not r.seq.caught_up("BTCUSDT")
    assert r.counts[("BTCUSDT", "gaps")] == 1
    r.seq.on_live(tick(7))  # held too
    done = r.seq.on_rest("BTCUSDT", [tick(3), tick(4), tick(5)], full_page=False)
    assert done and r.ids() == [1, 2, 3, 4, 5, 6, 7]
    assert r.counts[("BTCUSDT", "backfilled")] == 3
    assert r.seq.caught_up("BTCUSDT")


def test_rest_behind_live_asks_again_then_pages_until_caught_up():
    r = Rec(last={"BTCUSDT": 10})
    r.seq.on_connect(0.0)
    r.seq.on_live(tick(20))
    assert r.seq.state["BTCUSDT"] == BACKFILL
    assert not r.seq.on_rest("BTCUSDT", [tick(11), tick(12)], full_page=False)  # REST lags
    assert not r.seq.on_rest("BTCUSDT", [tick(13), tick(14)], full_page=True)  # more pages
    assert r.seq.on_rest("BTCUSDT", [tick(i) for i in range(15, 22)], full_page=False)
    assert r.ids() == list(range(11, 22))
    r.seq.on_live(tick(21))
    r.seq.on_live(tick(22))
    assert r.ids() == list(range(11, 23))


def test_reconnect_verifies_continuity_by_first_tick_or_timeout():
    r = Rec(symbols=("BTCUSDT", "ETHUSDT"), last={"BTCUSDT": 10, "ETHUSDT": 50})
    r.seq.on_connect(100.0)
    assert r.seq.state == {"BTCUSDT": VERIFY, "ETHUSDT": VERIFY}
    assert not r.seq.caught_up("BTCUSDT")
    r.seq.on_live(tick(11))  # continuous: no REST needed
    assert r.seq.state["BTCUSDT"] == SYNCED and r.ids() == [11]
    r.seq.check_verify(100.5, timeout=1.0)
    assert r.seq.state["ETHUSDT"] == VERIFY
    r.seq.check_verify(101.0, timeout=1.0)  # silent symbol: ask REST
    assert r.seq.state["ETHUSDT"] == BACKFILL and r.wanted == ["ETHUSDT"]
    assert r.seq.on_rest("ETHUSDT", [], full_page=False)
    assert r.seq.caught_up("ETHUSDT")
    r.seq.on_disconnect()
    assert not r.seq.caught_up("BTCUSDT") and not r.seq.caught_up("ETHUSDT")


def test_second_gap_inside_held_ticks_restarts_backfill():
    r = Rec(last={"BTCUSDT": 1})
    r.seq.on_connect(0.0)
    for i in [3, 4, 8, 9]:
        r.seq.on_live(tick(i))
    assert not r.seq.on_rest("BTCUSDT", [tick(2)], full_page=False)  # 5..7 still missing
    assert r.ids() == [2, 3, 4] and r.seq.state["BTCUSDT"] == BACKFILL
    assert r.seq.on_rest("BTCUSDT", [tick(5), tick(6), tick(7)], full_page=False)
    assert r.ids() == list(range(2, 10))


class Clock:
    def __init__(self):
        self.now = datetime(2024, 7, 18, 23, 57, 3, 250_000, tzinfo=timezone.utc)

    def __call__(self):
        return self.now


def make_feed(clock, last=None) -> Feed:
    return Feed("t", ["BTCUSDT", "ETHUSDT"], "aggTrade", "ws://127.0.0.1:9/market/stream",
                BinanceRest("http://127.0.0.1:9"), deque(), last_ids=last or {}, clock=clock)


def frame(i: int, sym: str = "BTCUSDT") -> str:
    return orjson.dumps({"stream": f"{sym.lower()}@aggTrade", "data": {
        "e": "aggTrade", "E": 1, "a": i, "s": sym, "p": "10", "q": "1", "f": i, "l": i,
        "T": T0 + i, "m": False}}).decode()


def test_progress_only_while_connected_and_caught_up():
    clock = Clock()
    f = make_feed(clock, last={"BTCUSDT": 1})
    f.emit_progress()
    assert not f.out  # not connected
    f.seq.on_connect(0.0)
    f.emit_progress()
    assert not f.out  # connected, but no trade received yet: no evidence the feed flows
    f.handle_frame(frame(5))  # gap 2..4 for BTC; the exchange clock is now frame 5's T
    t5 = tick(5).ts
    clock.now += timedelta(seconds=5)  # silence: progress stays at the exchange time seen
    f.emit_progress()
    assert list(f.out) == [Progress("ETHUSDT", t5)]  # BTC must backfill first
    f.out.clear()
    f.seq.on_rest("BTCUSDT", [tick(2), tick(3), tick(4)], full_page=False)
    f.emit_progress()
    assert [x for x in f.out if type(x) is Progress] == [
        Progress("BTCUSDT", t5), Progress("ETHUSDT", t5)]
    assert [x.trade_id for x in f.out if type(x) is Tick] == [2, 3, 4, 5]
    f.out.clear()
    f.seq.on_disconnect()
    f.emit_progress()
    assert not f.out


def test_health_once_per_clock_second_with_interval_counts():
    clock = Clock()
    f = make_feed(clock)
    f.emit_health()  # starts the first interval
    f.seq.on_connect(0.0)
    f.handle_frame(frame(1))
    f.handle_frame(frame(2))
    f.handle_frame("{garbage")
    f.emit_health()
    assert not f.out or all(type(x) is Tick for x in f.out)  # same second: nothing yet
    f.out.clear()
    clock.now += timedelta(seconds=1)
    f.emit_health()
    h = {(x.symbol, x.metric): x for x in f.out if type(x) is Health}
    sec = datetime(2024, 7, 18, 23, 57, 3, tzinfo=timezone.utc)
    assert all(x.ts == sec for x in h.values())
    assert h[("BTCUSDT", "ticks")].value == 2 and h[("ETHUSDT", "ticks")].value == 0
    assert h[("*", "malformed")].value == 1
    newest = ms_to_dt(T0 + 2)
    assert h[("BTCUSDT", "lag_ms")].value == (clock.now - newest) / timedelta(milliseconds=1)
    assert ("ETHUSDT", "lag_ms") not in h  # no tick yet: no lag to report
    f.out.clear()
    clock.now += timedelta(seconds=1)
    f.emit_health()
    h = {(x.symbol, x.metric): x for x in f.out}
    assert h[("BTCUSDT", "ticks")].value == 0  # per interval, not cumulative
    assert ("*", "malformed") not in h


def test_backoff_is_capped_exponential_with_jitter():
    rng = random.Random(1)
    for attempt in range(40):
        d = backoff_delay(attempt, 0.5, 30.0, rng)
        step = min(30.0, 0.5 * 2**attempt)
        assert 0.5 * step <= d <= step


def test_progress_runs_on_with_the_clock_up_to_the_horizon():
    """Between trades the exchange clock advances with the local clock, by at most the
    horizon past the newest trade, so a stall can never move the watermark past hidden trades."""
    clock = Clock()
    f = make_feed(clock, last={"BTCUSDT": 4})
    f.progress_horizon = timedelta(milliseconds=250)
    f.seq.on_connect(0.0)
    f.handle_frame(frame(5))
    t5 = tick(5).ts
    f.emit_progress()
    assert [p.ts for p in f.out if type(p) is Progress] == [t5, t5]
    for elapsed, ahead in ((100, 100), (250, 250), (5000, 250)):
        f.out.clear()
        clock.now += timedelta(milliseconds=elapsed)
        f.emit_progress()
        want = t5 + timedelta(milliseconds=ahead)
        assert [p.ts for p in f.out if type(p) is Progress] == [want, want]


def test_held_ticks_are_capped_and_rest_must_reach_the_dropped_ones():
    """A long backfill of a busy symbol: beyond ``max_held`` live ticks are dropped, not held,
    and the symbol stays in backfill until REST has delivered the newest dropped id."""
    r = Rec(last={"BTCUSDT": 10})
    r.seq.max_held = 3
    r.seq.on_connect(0.0)
    for i in range(20, 30):  # gap 11..19; 20, 21, 22 held; 23..29 dropped
        r.seq.on_live(tick(i))
    assert r.seq.n_held == 3 and r.seq.dropped == 7 and r.seq.need == {"BTCUSDT": 29}
    assert not r.seq.on_rest("BTCUSDT", [tick(i) for i in range(11, 20)], full_page=False)
    assert r.ids() == list(range(11, 23))  # the held ones followed on; 23.. still missing
    assert r.seq.n_held == 0 and r.seq.state["BTCUSDT"] == BACKFILL
    assert not r.seq.caught_up("BTCUSDT")
    assert not r.seq.on_rest("BTCUSDT", [tick(23), tick(24)], full_page=False)  # REST lags
    assert r.seq.on_rest("BTCUSDT", [tick(i) for i in range(25, 31)], full_page=False)
    assert r.ids() == list(range(11, 31)) and r.seq.need == {}
    assert r.seq.caught_up("BTCUSDT")
