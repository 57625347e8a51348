"""connectors.frames: the fast paths (one frame, a chunk of lines) decide like the validator."""

from __future__ import annotations

import gzip
import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.frames import (
    MalformedFrame,
    _fast_tick,
    event_to_tick,
    ms_to_dt,
    parse_frame,
    trade_columns,
)
from flows.records import Tick
from tests.conftest import SAMPLE

FRAMES = SAMPLE / "futures-um-ws-trade-frames-BTCUSDT-2024-07-18T23-57_2024-07-19T00-05.txt.gz"


def _events() -> list[dict]:
    with gzip.open(FRAMES, "rt") as fh:
        return [orjson.loads(line.split(" ", 1)[1])["data"] for _, line in zip(range(300), fh)]


EVENTS = _events()
AGG = {"e": "aggTrade", "E": 1, "a": 7, "s": "BTCUSDT", "p": "61800.30", "q": "0.006",
       "f": 10, "l": 12, "T": 1721347022956, "m": False}  # fmt: skip
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=45),
    st.sampled_from(["0", "1e999", "nan", "-1", "61800.3", "BTCUSDT", "btcusdt", "MARKET", "ADL"]),
)


def _slow(d: dict):
    try:
        return event_to_tick(d)
    except MalformedFrame:
        return "malformed"


@settings(max_examples=600, deadline=None)
@given(
    base=st.sampled_from([*EVENTS[:20], AGG]),
    changes=st.dictionaries(
        st.sampled_from(["e", "a", "t", "s", "p", "q", "f", "l", "T", "m", "X"]), VALUES, max_size=3
    ),
)
def test_fast_path_agrees_with_the_validator(base, changes):
    d = {**base, **changes}
    fast = _fast_tick(d)
    if fast is not None:  # the fast path only ever accepts what the validator accepts, equal
        assert fast == _slow(d)


@pytest.mark.parametrize("event", EVENTS[:50] + [AGG])
def test_real_events_take_the_fast_path(event):
    tick = _fast_tick(event)
    assert tick is not None and tick == event_to_tick(event)
    assert parse_frame(orjson.dumps({"stream": "x@trade", "data": event})) == tick


# -- the bulk path of a full-speed replay: trade_columns ------------------------------------

LINES = [line for _, line in zip(range(300), gzip.open(FRAMES, "rb"))]


def _line_by_line(lines: list[bytes]) -> list:
    out = []
    for line in lines:
        try:
            out.append(parse_frame(line.partition(b" ")[2]))
        except MalformedFrame:
            out.append("malformed")
    return out


def _assert_columns_equal_parse_frame(lines: list[bytes]) -> bool:
    cols = trade_columns(b"".join(lines))
    if cols is None:
        return False
    ticks = _line_by_line(lines)
    got = [
        Tick(s, ms_to_dt(t), p, q, i, i, i, m)
        for s, t, p, q, i, m in zip(
            [cols.symbols[c] for c in cols.symbol_code.tolist()],
            cols.ms.tolist(),
            cols.price.tolist(),
            cols.qty.tolist(),
            cols.trade_id.tolist(),
            cols.buyer_maker.tolist(),
        )
    ]
    assert got == ticks  # every line a Tick, and the same one
    return True


def test_real_frame_lines_take_the_bulk_path():
    assert _assert_columns_equal_parse_frame(LINES)
    assert _assert_columns_equal_parse_frame(LINES[::7] + LINES[1::7])  # symbols, times mixed
    assert _assert_columns_equal_parse_frame(LINES[:1])
    assert _assert_columns_equal_parse_frame([LINES[0].rstrip(b"\n")])  # last line, no newline


BYTES = st.sampled_from(
    [b"0", b"1", b"9", b"00", b'"', b"\\", b"\t", b" ", b"-", b".", b"e", b"E", b"x", b"{",
     b"}", b",", b":", b"\xc3\xa9", b"\xd9\xa1", b"\x00", b"\n", b"1" * 20, b"_", b"u0031",
     b"nan", b"inf", b"true", b"A", b"\r", b"1.2.3", b"0" * 19]
)  # fmt: skip


@settings(max_examples=1500, deadline=None)
@given(
    st.integers(0, 19),
    st.lists(st.tuples(st.integers(0, 400), st.integers(0, 3), BYTES), min_size=1, max_size=3),
)
def test_bulk_path_only_accepts_what_parse_frame_accepts(which, edits):
    line = bytearray(LINES[which])
    for pos, cut, ins in edits:  # replace `cut` bytes at `pos` by `ins`
        pos = min(pos, len(line) - 1)
        line[pos : pos + cut] = ins
    lines = (LINES[20] + bytes(line) + LINES[21]).split(b"\n")  # lines, as a file reads them
    lines = [x + b"\n" for x in lines[:-1]] + ([lines[-1]] if lines[-1] else [])
    if trade_columns(b"".join(lines)) is not None:
        assert _assert_columns_equal_parse_frame(lines)


@settings(max_examples=400, deadline=None)
@given(
    st.integers(0, 19),
    st.dictionaries(st.sampled_from(["E", "T", "s", "t", "p", "q", "m", "X"]), VALUES, max_size=2),
)
def test_bulk_path_agrees_on_any_field_value(which, changes):
    ns, _, raw = LINES[which].partition(b" ")
    frame = orjson.loads(raw)
    frame["data"] = {**frame["data"], **changes}  # same key order, other values
    text = json.dumps(frame, separators=(",", ":"))  # big ints, NaN: what a hostile peer sends
    line = ns + b" " + text.encode() + b"\n"
    lines = [line, LINES[22]]
    if trade_columns(b"".join(lines)) is not None:
        assert _assert_columns_equal_parse_frame(lines)
