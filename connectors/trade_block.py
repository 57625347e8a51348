"""A block of recorded ``trade`` frame lines → numpy columns in one compiled pass.

The bulk path of a full-speed replay. A recorded line is ``<recv_ns> <json>``, and Binance lays
every trade frame out the same way, so a small numba-compiled scanner walks the block once,
checks each line against that layout byte by byte and writes the fields straight into arrays
(~0.25-0.3 µs per line; CPython's ``re`` plus conversions took ~1.8 µs, bench/README.md).

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
# field is the maker flag, `true}}\n` or `false}}\n`).
_NAME, _EVENT_MS, _TIME, _SYMBOL, _ID, _PRICE, _QTY, _MAKER = range(8)
_LAYOUT = (
    (b' {"stream":"', _NAME),  # [a-z0-9]{1,64}
    (b'@trade","data":{"e":"trade","E":', _EVENT_MS),  # checked as JSON would, not used
    (b',"T":', _TIME),
    (b',"s":"', _SYMBOL),  # [A-Z0-9]{2,30}
    (b'","t":', _ID),
    (b',"p":"', _PRICE),
    (b'","q":"', _QTY),
    (b'","X":"MARKET","m":', _MAKER),
)
_TEXTS = np.frombuffer(b"".join(t for t, _ in _LAYOUT), dtype=np.uint8).copy()
_TEXT_END = np.cumsum([len(t) for t, _ in _LAYOUT])
_FIELDS = np.array([f for _, f in _LAYOUT])
_TRUE = np.frombuffer(b"true}}\n", dtype=np.uint8).copy()
_FALSE = np.frombuffer(b"false}}\n", dtype=np.uint8).copy()
_POW10 = 10.0 ** np.arange(19)  # exact doubles
MAX_SYMBOLS = 256  # distinct symbols in one block; more and the block goes line by line


@compiled
def _text_at(a: np.ndarray, i: int, text: np.ndarray, start: int, end: int) -> int:
    """Index after ``text[start:end]`` found at ``a[i]``, or -1."""
    size = end - start
    if i + size > a.shape[0]:
        return -1
    for k in range(size):
        if a[i + k] != text[start + k]:
            return -1
    return i + size


@compiled
def _digits_end(a: np.ndarray, i: int, most: int) -> int:  # 1..most digits, no leading 0; or -1
    j = i
    while j < a.shape[0] and j - i <= most and 48 <= a[j] <= 57:
        j += 1
    if j == i or j - i > most or a[i] == 48:
        return -1
    return j


@compiled
def _value(a: np.ndarray, i: int, j: int) -> int:
    v = 0
    for k in range(i, j):
        v = v * 10 + (a[k] - 48)
    return v


@compiled
def _decimal(a: np.ndarray, i: int, pow10: np.ndarray) -> tuple[float, int]:  # or (0, -1)
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
    j = i
    while j < a.shape[0] and j - i <= most:
        c = a[j]
        if not (48 <= c <= 57 or (65 <= c <= 90 if upper else 97 <= c <= 122)):
            break
        j += 1
    return j if least <= j - i <= most else -1


@compiled
def _symbol_code(a: np.ndarray, i: int, size: int, sym_at: np.ndarray, sym_len: np.ndarray,
                 found: int) -> int:  # fmt: skip
    """Index of the symbol at ``a[i:i+size]`` among the ``found`` seen so far (== found: new)."""
    for k in range(found):  # a block holds a handful of symbols
        if sym_len[k] == size:
            s = sym_at[k]
            same = True
            for m in range(size):
                if a[s + m] != a[i + m]:
                    same = False
                    break
            if same:
                return k
    return found


@compiled
def _scan(
    a: np.ndarray, n: int, ms: np.ndarray, ids: np.ndarray, price: np.ndarray, qty: np.ndarray,
    maker: np.ndarray, code: np.ndarray, sym_at: np.ndarray, sym_len: np.ndarray,
) -> tuple[int, int]:  # fmt: skip
    """Fill the columns of the first ``n`` lines of ``a``; returns how many were plain trades
    (``n`` when all were) and how many distinct symbols ``sym_at``/``sym_len`` now hold."""
    i = 0
    found = 0
    for row in range(n):
        while i < a.shape[0] and a[i] != 32:  # the prefix: no quote or newline either
            if a[i] == 34 or a[i] == 10:
                return row, found
            i += 1
        text = 0
        for step in range(_FIELDS.shape[0]):
            i = _text_at(a, i, _TEXTS, text, _TEXT_END[step])
            text = _TEXT_END[step]
            if i < 0:
                return row, found
            field = _FIELDS[step]
            if field == _NAME or field == _SYMBOL:
                j = _word_end(a, i, 1 if field == _NAME else 2, 64 if field == _NAME else 30,
                              field == _SYMBOL)  # fmt: skip
                if j < 0:
                    return row, found
                if field == _SYMBOL:
                    k = _symbol_code(a, i, j - i, sym_at, sym_len, found)
                    if k == found:
                        if found == sym_at.shape[0]:
                            return row, found
                        sym_at[found] = i
                        sym_len[found] = j - i
                        found += 1
                    code[row] = k
            elif field == _EVENT_MS or field == _TIME or field == _ID:
                j = _digits_end(a, i, 19 if field == _EVENT_MS else 13 if field == _TIME else 18)
                if j < 0:
                    return row, found
                if field == _TIME:
                    t = _value(a, i, j)
                    if t < MIN_T or t > MAX_T:
                        return row, found
                    ms[row] = t
                elif field == _ID:
                    ids[row] = _value(a, i, j)
            elif field == _PRICE or field == _QTY:
                v, j = _decimal(a, i, _POW10)
                if j < 0 or (field == _PRICE and not v > 0.0):
                    return row, found
                if field == _PRICE:
                    price[row] = v
                else:
                    qty[row] = v
            else:  # _MAKER
                j = _text_at(a, i, _TRUE, 0, _TRUE.shape[0])
                maker[row] = j >= 0
                if j < 0:
                    j = _text_at(a, i, _FALSE, 0, _FALSE.shape[0])
                    if j < 0:
                        return row, found
            i = j
    return n, found


@dataclass(frozen=True)
class TradeColumns:
    """The trades of a block of frame lines as columns, one entry per line, in line order."""

    symbols: tuple[str, ...]  # the distinct symbols, sorted
    symbol_code: np.ndarray  # int16: index into ``symbols``
    ms: np.ndarray  # int64 trade time T
    trade_id: np.ndarray  # int64
    price: np.ndarray  # float64
    qty: np.ndarray  # float64
    buyer_maker: np.ndarray  # bool


def trade_columns(block: bytes) -> Optional[TradeColumns]:
    """Whole lines of a frame file → columns, if *every* line is a plain trade frame; else None.

    On None the caller parses line by line with :func:`~connectors.frames.parse_frame`.
    """
    if not block.endswith(b"\n"):
        block += b"\n"
    n = block.count(b"\n")
    a = np.frombuffer(block, dtype=np.uint8)
    ms, ids = np.empty(n, np.int64), np.empty(n, np.int64)
    price, qty = np.empty(n), np.empty(n)
    maker, code = np.empty(n, np.bool_), np.empty(n, np.int16)
    sym_at, sym_len = np.empty(MAX_SYMBOLS, np.int64), np.empty(MAX_SYMBOLS, np.int64)
    done, found = _scan(a, n, ms, ids, price, qty, maker, code, sym_at, sym_len)
    if done != n:
        return None
    names = [block[s : s + k].decode() for s, k in zip(sym_at[:found], sym_len[:found])]
    order = sorted(range(found), key=names.__getitem__)
    if order != list(range(found)):  # codes by first appearance → by sorted name
        rank = np.empty(found, np.int16)
        rank[order] = np.arange(found)
        code = rank[code]
    return TradeColumns(tuple(names[i] for i in order), code, ms, ids, price, qty, maker)
