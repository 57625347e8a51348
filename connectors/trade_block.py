"""A block of recorded ``trade`` frame lines → numpy columns in one compiled pass.

The bulk path of a full-speed replay. A recorded line is ``<recv_ns> <json>``, and Binance lays
every trade frame out the same way, so a small numba-compiled scanner walks the block once,
checks each line against that layout byte by byte and writes the fields straight into arrays
(CPython's ``re`` plus conversions took ~1.8 µs per line, bench/README.md). The scanner is
written for that one layout (each fixed text compared whole, no per-field dispatch): ~1.3x
the speed of the table-driven one it replaced, near a bare newline search on the same bytes.

A block is accepted only if *every* line is exactly that layout: fixed text byte for byte; a
stream name, symbol and numbers from a bounded character set (no escape, control or non-ASCII
byte that JSON would decode or reject); no leading zero (not JSON). Then every value equals what
:func:`~connectors.frames.parse_frame` gives for the line — prices are ``m / 10**k`` with both
exact doubles, one correctly rounded division like ``float(s)`` — and
tests/connectors/test_trade_block.py mutates real frames to check it. Anything else returns
None and the caller parses the block line by line, which counts, words and skips what is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from connectors.frames import MAX_T, MIN_T
from pairstream.jit import compiled

# A line after its `<recv_ns>` prefix: fixed text then a field, eight times (the last
# field is the maker flag, `true}}` or `false}}`, then the newline or the end of the block).
_HEAD = b' {"stream":"'  # then the stream name [a-z0-9]{1,64}
_EVENT = b'@trade","data":{"e":"trade","E":'  # event time: checked as JSON would, not used
_TIME = b',"T":'  # trade time, MIN_T..MAX_T
_SYMBOL = b',"s":"'  # [A-Z0-9]{2,30}
_ID = b'","t":'
_PRICE = b',"p":"'  # > 0
_QTY = b'","q":"'
_MAKER = b'","X":"MARKET","m":'
_TRUE, _FALSE = b"true}}", b"false}}"
# The shortest line the layout allows (empty prefix, one-character fields, 13-digit time,
# two-character symbol), newline included: bounds the rows a block can hold.
MIN_LINE = (
    len(_HEAD + _EVENT + _TIME + _SYMBOL + _ID + _PRICE + _QTY + _MAKER + _TRUE)
    + 1 + 1 + len(str(MIN_T)) + 2 + 1 + 1 + 1 + 1
)  # fmt: skip
_POW10 = 10.0 ** np.arange(19)  # exact doubles
MAX_SYMBOLS = 256  # distinct symbols in one block; more and the block goes line by line


def _bytes(text: bytes) -> np.ndarray:
    return np.frombuffer(text, dtype=np.uint8).copy()  # a numba global: a compiled-in constant


_HEAD_A, _EVENT_A, _TIME_A, _SYMBOL_A = map(_bytes, (_HEAD, _EVENT, _TIME, _SYMBOL))
_ID_A, _PRICE_A, _QTY_A, _MAKER_A = map(_bytes, (_ID, _PRICE, _QTY, _MAKER))
_TRUE_A, _FALSE_A = _bytes(_TRUE), _bytes(_FALSE)


@compiled
def _text_at(a: np.ndarray, i: int, text: np.ndarray) -> int:
    """Index after ``text`` found at ``a[i]``, or -1 (one branch: the bytes are or-ed)."""
    size = text.shape[0]
    if i < 0 or i + size > a.shape[0]:
        return -1
    diff = 0
    for k in range(size):
        diff |= a[i + k] ^ text[k]
    return i + size if diff == 0 else -1


@compiled
def _int_end(a: np.ndarray, i: int, most: int) -> tuple[int, int]:
    """(value, end) of 1..most digits at ``i``, no leading 0; or (0, -1)."""
    if i < 0 or i >= a.shape[0] or a[i] == 48:
        return 0, -1
    v = 0
    j = i
    while j < a.shape[0] and j - i <= most:
        c = a[j]
        if c < 48 or c > 57:
            break
        v = v * 10 + (c - 48)  # wraps past 18 digits: only the 19-digit event time, unused
        j += 1
    if j == i or j - i > most:
        return 0, -1
    return v, j


@compiled
def _decimal(a: np.ndarray, i: int, pow10: np.ndarray) -> tuple[float, int]:  # or (0, -1)
    if i < 0:
        return 0.0, -1
    mantissa = 0
    digits = 0
    dot = -1
    j = i
    while j < a.shape[0] and j - i <= 40:
        c = a[j]
        if 48 <= c <= 57:
            digits += 1
            if digits > 18:  # beyond int64 and the exact-division rule: line by line
                return 0.0, -1
            mantissa = mantissa * 10 + (c - 48)
        elif c == 46 and dot < 0:
            dot = j
        else:
            break
        j += 1
    if digits == 0 or j - i > 40 or mantissa >= 1 << 53:
        return 0.0, -1
    after = 0 if dot < 0 else j - dot - 1
    return mantissa / pow10[after], j


@compiled
def _word_end(a: np.ndarray, i: int, least: int, most: int, upper: bool) -> int:
    """End of ``least..most`` digits and lower-case (or upper-case) letters at ``i``, or -1."""
    if i < 0:
        return -1
    j = i
    while j < a.shape[0] and j - i <= most:
        c = a[j]
        if not (48 <= c <= 57 or (65 <= c <= 90 if upper else 97 <= c <= 122)):
            break
        j += 1
    return j if least <= j - i <= most else -1


@compiled
def _same(a: np.ndarray, i: int, size: int, s: int, s_len: int) -> bool:
    if s_len != size:
        return False
    for m in range(size):
        if a[s + m] != a[i + m]:
            return False
    return True


@compiled
def _before(a: np.ndarray, s: int, s_len: int, t: int, t_len: int) -> bool:
    """Whether the text at ``s`` sorts before the one at ``t`` (bytes, as str sorts ASCII)."""
    for m in range(min(s_len, t_len)):
        if a[s + m] != a[t + m]:
            return a[s + m] < a[t + m]
    return s_len < t_len


@compiled
def _line(
    a: np.ndarray, i: int, row: int, ms: np.ndarray, ids: np.ndarray, price: np.ndarray,
    qty: np.ndarray, maker: np.ndarray, code: np.ndarray, sym_at: np.ndarray,
    sym_len: np.ndarray, found: int,
) -> tuple[int, int]:  # fmt: skip
    """Parse the line at ``a[i]`` into ``row``: (index after it, symbols found), or (-1, _)."""
    while i < a.shape[0] and a[i] != 32:  # the prefix: no quote or newline either
        if a[i] == 34 or a[i] == 10:
            return -1, found
        i += 1
    i = _word_end(a, _text_at(a, i, _HEAD_A), 1, 64, False)
    _, i = _int_end(a, _text_at(a, i, _EVENT_A), 19)
    t, i = _int_end(a, _text_at(a, i, _TIME_A), 13)
    if i < 0 or t < MIN_T or t > MAX_T:
        return -1, found
    ms[row] = t
    s = _text_at(a, i, _SYMBOL_A)
    i = _word_end(a, s, 2, 30, True)
    if i < 0:
        return -1, found
    k = 0 if row == 0 else code[row - 1]  # trades of a symbol come in runs: try the last first
    if found == 0 or not _same(a, s, i - s, sym_at[k], sym_len[k]):
        k = 0
        while k < found and not _same(a, s, i - s, sym_at[k], sym_len[k]):
            k += 1
        if k == found:
            if found == sym_at.shape[0]:
                return -1, found
            sym_at[found] = s
            sym_len[found] = i - s
            found += 1
    code[row] = k
    ids[row], i = _int_end(a, _text_at(a, i, _ID_A), 18)
    p, i = _decimal(a, _text_at(a, i, _PRICE_A), _POW10)
    if i < 0 or not p > 0.0:
        return -1, found
    price[row] = p
    qty[row], i = _decimal(a, _text_at(a, i, _QTY_A), _POW10)
    i = _text_at(a, i, _MAKER_A)
    j = _text_at(a, i, _TRUE_A)
    maker[row] = j >= 0
    if j < 0:
        j = _text_at(a, i, _FALSE_A)
        if j < 0:
            return -1, found
    if j == a.shape[0]:  # the block's last line, without its newline
        return j, found
    if a[j] != 10:
        return -1, found
    return j + 1, found


@compiled
def _scan(
    a: np.ndarray, ms: np.ndarray, ids: np.ndarray, price: np.ndarray, qty: np.ndarray,
    maker: np.ndarray, code: np.ndarray, sym_at: np.ndarray, sym_len: np.ndarray,
    rank: np.ndarray,
) -> tuple[int, int]:  # fmt: skip
    """Fill the columns with the lines of ``a`` (at most ``ms.shape[0]``): (rows, symbols), or
    (-1, _) if a line is not a plain trade. ``code`` ends up ranking symbols by sorted name
    (``rank[k]``: the rank of the ``k``-th symbol to appear)."""
    i = 0
    row = 0
    found = 0
    end = a.shape[0]
    while True:  # an empty block is one empty line: not a trade
        if row == ms.shape[0]:
            return -1, found  # cannot happen (MIN_LINE): refuse rather than overrun
        i, found = _line(a, i, row, ms, ids, price, qty, maker, code, sym_at, sym_len, found)
        if i < 0:
            return -1, found
        row += 1
        if i == end:
            break
    for k in range(found):
        r = 0
        for m in range(found):
            r += _before(a, sym_at[m], sym_len[m], sym_at[k], sym_len[k])
        rank[k] = r
    if found > 1:
        for r in range(row):
            code[r] = rank[code[r]]
    return row, found


@compiled
def _group(
    found: int, code: np.ndarray, ms: np.ndarray, ids: np.ndarray, price: np.ndarray,
    qty: np.ndarray, maker: np.ndarray,
) -> tuple[np.ndarray, ...]:  # fmt: skip
    """The columns reordered by symbol code (stable: line order within a symbol), and where
    each symbol's rows start (``found + 1`` offsets)."""
    n = code.shape[0]
    starts = np.zeros(found + 1, np.int64)
    for r in range(n):
        starts[code[r] + 1] += 1
    for k in range(found):
        starts[k + 1] += starts[k]
    at = starts[:found].copy()
    g_code, g_ms, g_ids = np.empty(n, np.int16), np.empty(n, np.int64), np.empty(n, np.int64)
    g_price, g_qty, g_maker = np.empty(n), np.empty(n), np.empty(n, np.bool_)
    for r in range(n):
        k = code[r]
        d = at[k]
        at[k] = d + 1
        g_code[d] = k
        g_ms[d] = ms[r]
        g_ids[d] = ids[r]
        g_price[d] = price[r]
        g_qty[d] = qty[r]
        g_maker[d] = maker[r]
    return starts, g_code, g_ms, g_ids, g_price, g_qty, g_maker


@dataclass(frozen=True)
class TradeColumns:
    """The trades of a block of frame lines as columns, one entry per line.

    In line order; or, from ``trade_columns(block, by_symbol=True)``, grouped by symbol in
    ``symbols`` order (line order within a symbol): the rows of ``symbols[k]`` are then
    ``starts[k]:starts[k + 1]``, so a consumer slices each symbol's run instead of masking.
    """

    symbols: tuple[str, ...]  # the distinct symbols, sorted
    symbol_code: np.ndarray  # int16: index into ``symbols``
    ms: np.ndarray  # int64 trade time T
    trade_id: np.ndarray  # int64
    price: np.ndarray  # float64
    qty: np.ndarray  # float64
    buyer_maker: np.ndarray  # bool
    starts: Optional[np.ndarray] = None  # by_symbol: int64, len(symbols) + 1 row offsets


def trade_columns(block: bytes, by_symbol: bool = False) -> Optional[TradeColumns]:
    """Whole lines of a frame file → columns, if *every* line is a plain trade frame; else None.

    On None the caller parses line by line with :func:`~connectors.frames.parse_frame`. The
    last line may lack its newline. ``by_symbol``: rows grouped by symbol (see TradeColumns).
    """
    a = np.frombuffer(block, dtype=np.uint8)
    cap = len(block) // (MIN_LINE - 1) + 1  # rows the block can hold; columns are views [:n]
    ms, ids = np.empty(cap, np.int64), np.empty(cap, np.int64)
    price, qty = np.empty(cap), np.empty(cap)
    maker, code = np.empty(cap, np.bool_), np.empty(cap, np.int16)
    sym_at, sym_len = np.empty(MAX_SYMBOLS, np.int64), np.empty(MAX_SYMBOLS, np.int64)
    rank = np.empty(MAX_SYMBOLS, np.int64)
    n, found = _scan(a, ms, ids, price, qty, maker, code, sym_at, sym_len, rank)
    if n < 0:
        if not block:  # the warm-up call (flows.startup): load the grouping kernel as well
            _group(0, code[:0], ms[:0], ids[:0], price[:0], qty[:0], maker[:0])
        return None
    names = [""] * found
    for k in range(found):
        names[rank[k]] = block[sym_at[k] : sym_at[k] + sym_len[k]].decode()
    cols = (code[:n], ms[:n], ids[:n], price[:n], qty[:n], maker[:n])
    if not by_symbol:
        return TradeColumns(tuple(names), *cols)
    if found == 1:
        return TradeColumns(tuple(names), *cols, starts=np.array([0, n]))
    starts, *grouped = _group(found, *cols)
    return TradeColumns(tuple(names), *grouped, starts=starts)
