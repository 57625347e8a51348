"""The recorded trade tape of window A, and Binance's aggTrade rule applied to it.

The fake exchange serves this tape; the tests build the expected output from the derived CSVs
with the same :func:`aggregate`, so a source that loses, duplicates or reorders a trade anywhere
between the fake's WebSocket/REST and the flow cannot match.
"""

from __future__ import annotations

import csv
import gzip
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "sample"
SHARED = REPO.parent / "shared" / "data" / "binance"
WINDOW_A = "2024-07-18T23-57_2024-07-19T00-05"
SYMBOLS_A = ("BTCUSDT", "ETHUSDT")


def data_file(name: str) -> Path:
    """A window A file from ``data/sample/``, falling back to ``../shared`` if not copied yet."""
    p = SAMPLE / name
    return p if p.exists() else SHARED / name


def merged_frames_path() -> Path:
    return data_file(f"futures-um-ws-trade-frames-BTCUSDT+ETHUSDT-merged-{WINDOW_A}.txt.gz")


def trades_csv_path(symbol: str) -> Path:
    return data_file(f"futures-um-trades-{symbol}-{WINDOW_A}.csv")


@dataclass(frozen=True, slots=True)
class RawTrade:
    """One raw fill as recorded (strings kept verbatim so sums stay exact)."""

    symbol: str
    id: int
    price: str
    qty: str
    T: int
    m: bool
    E: int

    def rest_row(self) -> dict:
        """Binance ``GET /fapi/v1/historicalTrades`` row shape."""
        return {
            "id": self.id,
            "price": self.price,
            "qty": self.qty,
            "quoteQty": str(Decimal(self.price) * Decimal(self.qty)),
            "time": self.T,
            "isBuyerMaker": self.m,
        }


@dataclass(frozen=True, slots=True)
class AggTrade:
    symbol: str
    a: int
    price: str
    qty: str
    f: int
    l: int  # noqa: E741 - Binance's field name
    T: int
    m: bool
    E: int

    def rest_row(self) -> dict:
        """Binance ``GET /fapi/v1/aggTrades`` row shape."""
        return {"a": self.a, "p": self.price, "q": self.qty, "f": self.f, "l": self.l,
                "T": self.T, "m": self.m}

    def event(self) -> dict:
        """Binance ``<symbol>@aggTrade`` event shape."""
        return {"e": "aggTrade", "E": self.E, "a": self.a, "s": self.symbol, "p": self.price,
                "q": self.qty, "f": self.f, "l": self.l, "T": self.T, "m": self.m}


@dataclass(frozen=True, slots=True)
class Frame:
    """One recorded WebSocket frame: receive time, the trade it carries, and its exact bytes."""

    recv_ns: int
    trade: RawTrade
    raw: bytes


def load_frames(path: Path | None = None) -> list[Frame]:
    """Lines ``<recv_ts_ns> <json>`` of a recorded frame file, in file (receive) order."""
    out = []
    with gzip.open(path or merged_frames_path(), "rb") as fh:
        for line in fh:
            ns, _, raw = line.rstrip(b"\n").partition(b" ")
            d = orjson.loads(raw)["data"]
            t = RawTrade(d["s"], d["t"], d["p"], d["q"], d["T"], d["m"], d["E"])
            out.append(Frame(int(ns), t, raw))
    return out


def klines_csv_path(symbol: str) -> Path:
    return data_file(f"futures-um-klines-1m-{symbol}-2024-07-18T23-50_2024-07-19T00-09.csv")


def load_klines(symbol: str, path: Path | None = None) -> list[list]:
    """Official 1m klines around window A as REST rows (times and count as ints, the rest
    verbatim strings), oldest first."""
    with open(path or klines_csv_path(symbol), newline="") as fh:
        rows = list(csv.reader(fh))[1:]
    return [[int(r[0]), *r[1:6], int(r[6]), r[7], int(r[8]), *r[9:12]] for r in rows]


def load_csv(symbol: str, path: Path | None = None) -> list[RawTrade]:
    """The derived trades CSV (``id,price,qty,time,is_buyer_maker,event_time,recv_ts_ns``)."""
    with open(path or trades_csv_path(symbol), newline="") as fh:
        return [
            RawTrade(symbol, int(r["id"]), r["price"], r["qty"], int(r["time"]),
                     r["is_buyer_maker"] == "true", int(r["event_time"]))
            for r in csv.DictReader(fh)
        ]


def agg_base(first_trade_id: int) -> int:
    """Deterministic first aggTrade id of a symbol's tape (distinct from its trade ids)."""
    return first_trade_id // 2


def aggregate(trades: Iterable[RawTrade]) -> list[AggTrade]:
    """Binance's rule: consecutive fills of one symbol at the same price and taker side within
    100 ms of the first form one aggTrade, never across a second boundary.

    ``T`` is the first fill's time, ``q`` the exact decimal sum. Output is in completion order
    (the order the trades of all symbols are given in), ids running per symbol.
    """
    out: list[AggTrade] = []
    open_: dict[str, list[RawTrade]] = {}
    next_a: dict[str, int] = {}

    def close(sym: str) -> None:
        fills = open_.pop(sym)
        a = next_a[sym]
        next_a[sym] = a + 1
        q = sum((Decimal(x.qty) for x in fills), Decimal(0))
        first, last = fills[0], fills[-1]
        out.append(AggTrade(sym, a, first.price, str(q), first.id, last.id, first.T, first.m,
                            last.E))

    for t in trades:
        next_a.setdefault(t.symbol, agg_base(t.id))
        cur = open_.get(t.symbol)
        if cur is not None:
            head = cur[0]
            if (Decimal(t.price) == Decimal(head.price) and t.m == head.m
                    and t.T - head.T < 100 and t.T // 1000 == head.T // 1000):
                cur.append(t)
                continue
            close(t.symbol)
        open_[t.symbol] = [t]
    for sym in list(open_):
        close(sym)
    return out


def aggregate_positions(frames: list[Frame]) -> list[tuple[int, AggTrade]]:
    """aggTrades of a merged tape, each with the tape index of its last fill (when it is sent)."""
    index = {(f.trade.symbol, f.trade.id): i for i, f in enumerate(frames)}
    aggs = aggregate(f.trade for f in frames)
    return sorted(((index[(g.symbol, g.l)], g) for g in aggs), key=lambda x: x[0])


def iter_symbol(aggs: Iterable[AggTrade], symbol: str) -> Iterator[AggTrade]:
    return (g for g in aggs if g.symbol == symbol)


def quiet_frames(n: int, start_ms: int, span_ms: int, seed: int = 0,
                 gap_ms: tuple[int, int] = (10_000, 60_000)) -> list[Frame]:
    """A synthetic tape of ``n`` quiet symbols ``Q000USDT``...: each trades once every
    ``gap_ms`` (uniform) of exchange time from a random offset, one fill per trade (so one
    aggTrade each), its receive time 1.52 s behind ``E`` like window A's recorder. For tests
    of many streams (rate limits, reconnects), not of market data: merge with a real tape."""
    import random

    rng = random.Random(seed)
    out = []
    for k in range(n):
        sym = f"Q{k:03d}USDT"
        t = start_ms + rng.randrange(gap_ms[1])
        tid, price = 1_000_000 * (k + 1), 1.0 + k
        while t < start_ms + span_ms:
            price = round(price * (1 + rng.uniform(-0.001, 0.001)), 4)
            trade = RawTrade(sym, tid, f"{price:.4f}", "1.000", t, rng.random() < 0.5, t + 1)
            raw = orjson.dumps({"stream": f"{sym.lower()}@trade", "data": {
                "e": "trade", "E": trade.E, "T": t, "s": sym, "t": tid, "p": trade.price,
                "q": trade.qty, "X": "MARKET", "m": trade.m}})
            out.append(Frame((trade.E - 1520) * 1_000_000, trade, raw))
            tid += 1
            t += rng.randint(*gap_ms)
    return sorted(out, key=lambda f: f.recv_ns)


def merge_tapes(*tapes: list[Frame]) -> list[Frame]:
    """Frames of several tapes in one receive order (stable: ties keep the tapes' order)."""
    return sorted((f for tape in tapes for f in tape), key=lambda f: f.recv_ns)


def repeated_tape(frames: list[Frame], copies: int, shift_ms: int = 10 * 60_000) -> list[Frame]:
    """``frames`` and ``copies - 1`` more copies of them, copy k shifted by k × ``shift_ms``
    (whole minutes: bars line up with the original's) with trade ids offset by k × the
    symbol's id span, so every copy continues the previous one (as in bench/common.py)."""
    span: dict[str, tuple[int, int]] = {}
    for f in frames:
        lo, hi = span.get(f.trade.symbol, (f.trade.id, f.trade.id))
        span[f.trade.symbol] = (min(lo, f.trade.id), max(hi, f.trade.id))
    assert max(f.trade.T for f in frames) - min(f.trade.T for f in frames) < shift_ms
    out = []
    for k in range(copies):
        dt = k * shift_ms
        for f in frames:
            t = f.trade
            lo, hi = span[t.symbol]
            moved = RawTrade(t.symbol, t.id + k * (hi - lo + 1), t.price, t.qty, t.T + dt, t.m,
                             t.E + dt)
            raw = orjson.dumps({"stream": f"{t.symbol.lower()}@trade", "data": {
                "e": "trade", "E": moved.E, "T": moved.T, "s": t.symbol, "t": moved.id,
                "p": t.price, "q": t.qty, "X": "MARKET", "m": t.m}})
            out.append(Frame(f.recv_ns + dt * 1_000_000, moved, raw))
    return out
