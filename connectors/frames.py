"""Binance trade messages → :class:`~pairstream.records.Tick` (and mark price updates → Mark).

One parser for every way trades reach us: live WebSocket frames (combined-stream wrapper or
bare event), recorded frame files, REST ``/fapi/v1/aggTrades`` rows and data.binance.vision CSV
rows. Anything that is not a valid trade raises :class:`MalformedFrame` with a short reason, so
callers can count, log and skip it; unknown fields are ignored (Binance adds them over time).
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta, timezone
from typing import Any, Optional

import orjson

from pairstream.records import EPOCH, Mark, Tick

UTC = timezone.utc
MAX_FRAME_BYTES = 64 * 1024  # a trade frame is ~250 bytes; anything huge is hostile
MIN_T = 1_500_000_000_000  # 2017-07: before Binance existed
MAX_T = 4_102_444_800_000  # 2100-01-01
_SYMBOL = re.compile(r"^[A-Z0-9]{2,30}$")


class MalformedFrame(ValueError):
    """A message that should have been a trade but is not usable."""


_DT_CACHE: dict[int, datetime] = {}  # trades often share a millisecond; datetimes are immutable


def ms_to_dt(ms: int) -> datetime:
    """Exchange milliseconds → aware UTC datetime (exact: no float rounding)."""
    dt = _DT_CACHE.get(ms)
    if dt is None:
        if len(_DT_CACHE) >= 4096:
            _DT_CACHE.clear()
        dt = _DT_CACHE[ms] = EPOCH + timedelta(milliseconds=ms)
    return dt


def dt_to_ms(ts: datetime) -> int:
    """Aware datetime → epoch milliseconds (exact)."""
    return (ts - EPOCH) // timedelta(milliseconds=1)


def _int(v: Any, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        if isinstance(v, str) and v.isdigit() and len(v) < 20:
            return int(v)
        raise MalformedFrame(f"field {name!r} is not an integer")
    if v < 0 or v >= 1 << 63:
        raise MalformedFrame(f"field {name!r} out of range")
    return v


def _num(v: Any, name: str) -> float:
    if isinstance(v, str) and 0 < len(v) <= 40:
        try:
            f = float(v)
        except ValueError:
            raise MalformedFrame(f"field {name!r} is not a number") from None
    elif isinstance(v, (int, float)) and not isinstance(v, bool):
        f = float(v)
    else:
        raise MalformedFrame(f"field {name!r} is not a number")
    if not math.isfinite(f) or f < 0:
        raise MalformedFrame(f"field {name!r} is not a finite non-negative number")
    return f


def _bool(v: Any, name: str) -> bool:
    if isinstance(v, bool):
        return v
    if v in ("true", "True"):
        return True
    if v in ("false", "False"):
        return False
    raise MalformedFrame(f"field {name!r} is not a boolean")


def _symbol(v: Any) -> str:
    if not isinstance(v, str) or not _SYMBOL.match(v):
        raise MalformedFrame("field 's' is not a symbol")
    return v


def _time(v: Any, name: str = "T") -> int:
    t = _int(v, name)
    if not MIN_T <= t <= MAX_T:
        raise MalformedFrame(f"field {name!r} is not a plausible epoch-ms time")
    return t


def _tick(symbol: str, t: int, price: float, qty: float, a: int, f: int, l_: int, m: bool) -> Tick:
    if price <= 0:
        raise MalformedFrame("price must be positive")
    if not f <= l_:
        raise MalformedFrame("first trade id after last trade id")
    return Tick(symbol, ms_to_dt(t), price, qty, a, f, l_, m)


def event_to_tick(d: Any) -> Optional[Tick]:
    """A decoded ``aggTrade`` or ``trade`` event → Tick; None for a non-trade message.

    Non-market trades (``X`` other than ``MARKET``: insurance fund, ADL) are not in klines and
    are skipped (None), like Binance's own aggTrade stream does.
    """
    if not isinstance(d, dict):
        raise MalformedFrame("event is not a JSON object")
    e = d.get("e")
    if e == "aggTrade":
        a = _int(d.get("a"), "a")
        return _tick(
            _symbol(d.get("s")),
            _time(d.get("T")),
            _num(d.get("p"), "p"),
            _num(d.get("q"), "q"),
            a,
            _int(d.get("f"), "f"),
            _int(d.get("l"), "l"),
            _bool(d.get("m"), "m"),
        )
    if e == "trade":
        x = d.get("X", "MARKET")
        if x != "MARKET":
            if isinstance(x, str) and len(x) < 32:
                return None
            raise MalformedFrame("field 'X' is not a string")
        t = _int(d.get("t"), "t")
        return _tick(
            _symbol(d.get("s")),
            _time(d.get("T")),
            _num(d.get("p"), "p"),
            _num(d.get("q"), "q"),
            t,
            t,
            t,
            _bool(d.get("m"), "m"),
        )
    if e is None and ("result" in d or "id" in d or "code" in d):
        return None  # subscription answer or error message: not a trade
    if isinstance(e, str) and len(e) < 64:
        return None  # another stream's event (kline, depth...): not ours to parse
    raise MalformedFrame("not a trade event")


_GOOD_SYMBOLS: set[str] = set()  # strings that passed the symbol check (bounded by the feed)
_INF = math.inf


def _fast_tick(d: dict) -> Optional[Tick]:
    """The common, fully valid ``trade``/``aggTrade`` event → Tick, without helper calls.

    Returns None whenever anything is unusual (a string-typed id, a non-MARKET trade, any
    value the checks would reject...), and the caller then runs :func:`event_to_tick`, which
    decides and words the error. So the result is always exactly that of ``event_to_tick``;
    this only skips its per-field function calls on the hot path (replay, live feed).
    """
    e = d.get("e")
    if e == "trade":
        if d.get("X", "MARKET") != "MARKET":
            return None
        a = f = l_ = d.get("t")
    elif e == "aggTrade":
        a = d.get("a")
        f = d.get("f")
        l_ = d.get("l")
        if type(f) is not int or type(l_) is not int or not 0 <= f <= l_ < 1 << 63:
            return None
    else:
        return None
    t = d.get("T")
    s = d.get("s")
    p = d.get("p")
    q = d.get("q")
    m = d.get("m")
    if (
        type(a) is not int
        or not 0 <= a < 1 << 63
        or type(t) is not int
        or not MIN_T <= t <= MAX_T
        or type(m) is not bool
        or type(p) is not str
        or type(q) is not str
        or not 0 < len(p) <= 40
        or not 0 < len(q) <= 40
    ):
        return None
    if type(s) is not str:
        return None
    if s not in _GOOD_SYMBOLS:
        if not _SYMBOL.match(s):
            return None
        if len(_GOOD_SYMBOLS) < 10_000:
            _GOOD_SYMBOLS.add(s)
    try:
        price = float(p)
        qty = float(q)
    except ValueError:
        return None
    if not (0.0 < price < _INF and 0.0 <= qty < _INF):  # NaN fails every comparison
        return None
    return Tick(s, ms_to_dt(t), price, qty, a, f, l_, m)


def _event(raw: bytes | str) -> Any:
    """The decoded event of a frame (the ``data`` of a combined-stream wrapper)."""
    if len(raw) > MAX_FRAME_BYTES:
        raise MalformedFrame(f"frame of {len(raw)} bytes exceeds {MAX_FRAME_BYTES}")
    try:
        d = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise MalformedFrame("not valid JSON") from None
    if isinstance(d, dict) and "data" in d and "stream" in d:
        d = d["data"]
    return d


def parse_frame(raw: bytes | str) -> Optional[Tick]:
    """One WebSocket text frame (combined ``{"stream","data"}`` wrapper or bare) → Tick or None."""
    d = _event(raw)
    if type(d) is dict:
        tick = _fast_tick(d)
        if tick is not None:
            return tick
    return event_to_tick(d)


def _rate(v: Any, name: str) -> float:
    """A signed decimal string (funding rates are negative at times)."""
    if isinstance(v, str) and 0 < len(v) <= 40:
        try:
            f = float(v)
        except ValueError:
            raise MalformedFrame(f"field {name!r} is not a number") from None
        if math.isfinite(f):
            return f
    raise MalformedFrame(f"field {name!r} is not a finite number")


def event_to_mark(d: dict) -> Mark:
    """A decoded ``markPriceUpdate`` event (``<symbol>@markPrice@1s``) → Mark.

    Fields (Binance USD-M docs): ``E`` event time, ``s`` symbol, ``p`` mark price, ``i`` index
    price, ``P`` estimated settle price (not kept), ``r`` funding rate and ``T`` next funding
    time (``""`` and 0 for delivery contracts: rate 0, no next funding time).
    """
    r = d.get("r")
    nxt = d.get("T")
    mark = _num(d.get("p"), "p")
    if mark <= 0:
        raise MalformedFrame("mark price must be positive")
    return Mark(
        symbol=_symbol(d.get("s")),
        ts=ms_to_dt(_time(d.get("E"), "E")),
        mark=mark,
        index=_num(d.get("i"), "i"),
        funding_rate=0.0 if r == "" else _rate(r, "r"),
        next_funding_ts=None if nxt == 0 else ms_to_dt(_time(nxt, "T")),
    )


def parse_message(raw: bytes | str) -> Optional[Tick | Mark]:
    """A live frame → Tick, Mark (``markPriceUpdate``) or None (another message)."""
    d = _event(raw)
    if type(d) is dict:
        tick = _fast_tick(d)
        if tick is not None:
            return tick
        if d.get("e") == "markPriceUpdate":
            return event_to_mark(d)
    return event_to_tick(d)


def rest_agg_to_tick(symbol: str, d: Any) -> Tick:
    """One row of REST ``GET /fapi/v1/aggTrades`` (no ``e``/``s`` fields) → Tick."""
    if not isinstance(d, dict):
        raise MalformedFrame("aggTrades row is not an object")
    return _tick(
        _symbol(symbol),
        _time(d.get("T")),
        _num(d.get("p"), "p"),
        _num(d.get("q"), "q"),
        _int(d.get("a"), "a"),
        _int(d.get("f"), "f"),
        _int(d.get("l"), "l"),
        _bool(d.get("m"), "m"),
    )


def csv_trade_to_tick(symbol: str, row: dict[str, str]) -> Tick:
    """A data.binance.vision ``trades`` or ``aggTrades`` CSV row (named columns) → Tick.

    trades: ``id,price,qty,quote_qty,time,is_buyer_maker`` (our derived files add columns);
    aggTrades: ``agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,
    is_buyer_maker``.
    """
    try:
        if "agg_trade_id" in row:
            return _tick(
                symbol,
                _time(row["transact_time"], "transact_time"),
                _num(row["price"], "price"),
                _num(row["quantity"], "quantity"),
                _int(row["agg_trade_id"], "agg_trade_id"),
                _int(row["first_trade_id"], "first_trade_id"),
                _int(row["last_trade_id"], "last_trade_id"),
                _bool(row["is_buyer_maker"], "is_buyer_maker"),
            )
        t = _int(row["id"], "id")
        return _tick(
            symbol,
            _time(row["time"], "time"),
            _num(row["price"], "price"),
            _num(row["qty"], "qty"),
            t,
            t,
            t,
            _bool(row["is_buyer_maker"], "is_buyer_maker"),
        )
    except KeyError as e:
        raise MalformedFrame(f"CSV row lacks column {e.args[0]!r}") from None
