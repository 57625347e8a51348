"""connectors.trade_block: a block is accepted only if every line equals parse_frame's Tick."""

from __future__ import annotations

import gzip
import json

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.frames import MalformedFrame, ms_to_dt, parse_frame
from connectors.trade_block import MAX_SYMBOLS, trade_columns
from pairstream.records import Tick
from tests.connectors.test_frames import FRAMES, VALUES

LINES = [line for _, line in zip(range(300), gzip.open(FRAMES, "rb"))]


def _line_by_line(lines: list[bytes]) -> list:
    out = []
    for line in lines:
        try:
            out.append(parse_frame(line.partition(b" ")[2]))
        except MalformedFrame:
            out.append("malformed")
    return out


def _assert_grouped_equals_line_order(block: bytes) -> None:
    """``by_symbol=True``: the same rows, each symbol's a run in line order; same None."""
    cols, grouped = trade_columns(block), trade_columns(block, by_symbol=True)
    assert (cols is None) == (grouped is None)
    if cols is None or grouped is None:
        return
    assert grouped.symbols == cols.symbols and grouped.starts is not None
    assert grouped.starts[0] == 0 and grouped.starts[-1] == len(cols.ms)
    for k in range(len(cols.symbols)):
        rows = cols.symbol_code == k
        run = slice(grouped.starts[k], grouped.starts[k + 1])
        for name in ("symbol_code", "ms", "trade_id", "price", "qty", "buyer_maker"):
            got, want = getattr(grouped, name)[run], getattr(cols, name)[rows]
            assert got.dtype == want.dtype and np.array_equal(got, want)


def _assert_columns_equal_parse_frame(lines: list[bytes]) -> bool:
    cols = trade_columns(b"".join(lines))
    _assert_grouped_equals_line_order(b"".join(lines))
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
    assert _assert_columns_equal_parse_frame(LINES[:5] + [LINES[5].rstrip(b"\n")])


@pytest.mark.parametrize(
    "block", [b"", b"\n", LINES[0] + b"\n", b"\n" + LINES[0], LINES[0] + LINES[1][:-2]]
)  # fmt: skip
def test_empty_and_cut_lines_send_the_block_line_by_line(block):
    assert trade_columns(block) is None
    assert trade_columns(block, by_symbol=True) is None


def test_by_symbol_groups_each_symbols_rows_in_line_order():
    rename = {0: b'"ZZZUSDT"', 2: b'"AAAUSDT"'}  # first seen sorts last; runs interleave
    lines = [_with(x, s=rename[i % 5]) if i % 5 in rename else x for i, x in enumerate(LINES)]
    block = b"".join(lines)
    _assert_grouped_equals_line_order(block)
    cols = trade_columns(block, by_symbol=True)
    assert cols is not None and cols.starts is not None
    assert cols.symbols == ("AAAUSDT", "BTCUSDT", "ZZZUSDT")
    assert cols.starts.tolist() == [0, 60, 240, 300]
    ticks = _line_by_line(lines)
    for k, sym in enumerate(cols.symbols):
        want = [t.trade_id for t in ticks if t.symbol == sym]
        assert cols.trade_id[cols.starts[k] : cols.starts[k + 1]].tolist() == want
    one = [x for x in LINES if b'"s":"BTCUSDT"' in x]  # one symbol: rows as they are
    cols = trade_columns(b"".join(one), by_symbol=True)
    assert cols is not None and cols.symbols == ("BTCUSDT",)
    assert cols.starts is not None and cols.starts.tolist() == [0, len(one)]


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
    _assert_columns_equal_parse_frame(lines)  # accepted: equal to parse_frame; same None


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


def _with(line: bytes, **fields: bytes) -> bytes:
    """A real line with some of its field texts replaced verbatim (quotes included as given)."""
    for key, text in fields.items():
        head, sep, rest = line.partition(b'"%s":' % key.encode())
        end = min(i for i in (rest.find(b","), rest.find(b"}")) if i >= 0)
        line = head + sep + text + rest[end:]
    return line


@pytest.mark.parametrize(
    "text", [b'"1."', b'".5"', b'"00.50"', b'"0.00000000000000001"', b'"9007199254740991"',
             b'"61800.3"', b'"1"']
)  # fmt: skip
def test_decimal_texts_convert_like_float(text):
    assert _assert_columns_equal_parse_frame([_with(LINES[0], p=text, q=text), LINES[1]])


@pytest.mark.parametrize(
    "fields",
    [{"p": b'"9007199254740993"'}, {"p": b'"1234567890.123456789"'}, {"p": b'"1.2.3"'},
     {"p": b'"."'}, {"p": b'""'}, {"p": b'"0"'}, {"q": b'"1e3"'}, {"t": b"0123"}, {"T": b"1"},
     {"m": b'"true"'}, {"s": b'"btcusdt"'}, {"p": b"61800.3"}],
)  # fmt: skip
def test_unusual_values_send_the_block_line_by_line(fields):
    lines = [LINES[0], _with(LINES[1], **fields)]
    assert trade_columns(b"".join(lines)) is None


def test_symbols_are_coded_in_sorted_order_up_to_the_limit():
    def renamed(i: int, line: bytes) -> bytes:
        sym = b"S%03dUSDT" % (MAX_SYMBOLS - i)  # first seen = last in sorted order
        return _with(line, s=b'"%s"' % sym)

    lines = [renamed(i, LINES[i % len(LINES)]) for i in range(MAX_SYMBOLS)]
    cols = trade_columns(b"".join(lines))
    assert cols is not None and len(cols.symbols) == MAX_SYMBOLS
    assert list(cols.symbols) == sorted(cols.symbols)
    assert _assert_columns_equal_parse_frame(lines)
    assert np.array_equal(cols.symbol_code, np.arange(MAX_SYMBOLS)[::-1])
    _assert_grouped_equals_line_order(b"".join(lines + lines[:9]))
    more = lines + [renamed(MAX_SYMBOLS, LINES[0])]  # one symbol too many: line by line
    assert trade_columns(b"".join(more)) is None
