"""connectors.frames: the fast path of one frame decides like the validator."""

from __future__ import annotations

import gzip

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.frames import MalformedFrame, _fast_tick, event_to_tick, parse_frame
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
