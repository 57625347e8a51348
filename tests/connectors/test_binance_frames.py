"""Frames into the Binance feed: real captured aggTrade frames parse; hostile ones never raise."""

from __future__ import annotations

from collections import deque
from pathlib import Path

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.binance_rest import BinanceRest
from connectors.binance_ws import UNATTRIBUTED, Feed
from connectors.frames import ms_to_dt, parse_frame
from pairstream.records import Tick

CAPTURE = Path(__file__).parent / "data" / (
    "futures-um-ws-aggTrade+kline-combined-frames-SUSHI-AKRO-KEEP-CTK-2021-07-22"
    ".cryptofeed-capture.txt")
CAPTURE_SYMBOLS = ["SUSHIUSDT", "AKROUSDT", "KEEPUSDT", "CTKUSDT"]


def capture_frames() -> list[str]:
    lines = CAPTURE.read_text().splitlines()[1:]  # line 1: the URL and connect time
    return [line.split(": ", 1)[1] for line in lines]


def make_feed(symbols: list[str]) -> Feed:
    """A feed that is never started: frames are handed to it directly."""
    return Feed("test", symbols, "aggTrade", "ws://127.0.0.1:9/market/stream",
                BinanceRest("http://127.0.0.1:9"), deque())


def test_real_captured_aggtrade_frames_become_ticks():
    frames = capture_frames()
    agg = [f for f in frames if '@aggTrade"' in f]
    assert len(agg) == 91
    feed = make_feed(CAPTURE_SYMBOLS)
    for f in frames:
        feed.handle_frame(f)
    ticks = [x for x in feed.out if type(x) is Tick]
    assert len(ticks) == 91  # kline frames are other streams' events: skipped, not malformed
    assert feed.counts[UNATTRIBUTED]["malformed"] == 0
    for raw, t in zip(agg, ticks):
        d = orjson.loads(raw)["data"]
        assert (t.symbol, t.trade_id, t.first_id, t.last_id, t.buyer_maker) == (
            d["s"], d["a"], d["f"], d["l"], d["m"])
        assert t.ts == ms_to_dt(d["T"])
        assert t.price == float(d["p"]) and t.qty == float(d["q"])
        assert parse_frame(raw.encode()) == t


_int64 = st.integers(-(2**63), 2**64 - 1)  # what orjson can write; bigger ones come as text
_json = st.recursive(
    st.none() | st.booleans() | _int64 | st.floats() | st.text(max_size=20),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=4), kids,
                                                              max_size=4),
    max_leaves=20,
)
_fields = st.fixed_dictionaries({}, optional={
    "e": st.sampled_from(["aggTrade", "trade", "kline", ""]) | _json,
    "s": st.sampled_from(["BTCUSDT", "ETHUSDT", "btcusdt", ""]) | _json,
    "a": _int64 | _json, "t": _int64 | _json, "f": _int64 | _json,
    "l": _int64 | _json, "T": st.integers(1_500_000_000_000, 4_102_444_800_000) | _json,
    "E": _json,
    "p": st.sampled_from(["1.5", "-1", "NaN", "inf", "1e400", ""]) | _json,
    "q": st.sampled_from(["0.001", "-0", "1e-400"]) | _json,
    "m": st.booleans() | _json, "X": _json,
})


def _wrapped(d: object, stream: str) -> str:
    return orjson.dumps({"stream": stream, "data": d},
                        option=orjson.OPT_NON_STR_KEYS).decode(errors="replace")


hostile = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300),
    _json.map(lambda v: orjson.dumps(v).decode()),
    st.builds(_wrapped, _fields, st.sampled_from(["btcusdt@aggTrade", "x", ""])),
    _fields.map(lambda d: orjson.dumps(d).decode()),
    st.integers(1, 5_000).map(lambda n: "[" * n),
    st.sampled_from([60_000, 70_000]).map(lambda n: '{"stream":"a","data":"' + "x" * n + '"}'),
    st.integers(2**64, 2**70).map(lambda n: f'{{"e":"trade","s":"BTCUSDT","t":{n}}}'),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(hostile, min_size=1, max_size=8))
def test_hostile_frames_never_raise_out_of_the_feed(frames):
    feed = make_feed(["BTCUSDT", "ETHUSDT"])
    feed.seq.on_connect(0.0)
    for f in frames:
        feed.handle_frame(f)  # must not raise
    feed.emit_progress()
    feed.emit_health(flush=True)
    # Whatever was accepted is a valid tick of a subscribed symbol, in id order per symbol.
    ticks = [x for x in feed.out if type(x) is Tick]
    for s in ("BTCUSDT", "ETHUSDT"):
        ids = [t.trade_id for t in ticks if t.symbol == s]
        assert ids == sorted(set(ids))
    assert all(t.symbol in ("BTCUSDT", "ETHUSDT") and t.price > 0 for t in ticks)
