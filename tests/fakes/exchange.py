"""FakeBinance: a loopback Binance USD-M futures exchange replaying a recorded tape, with faults.

It speaks the real protocol: a WebSocket at ``/market/stream?streams=btcusdt@aggTrade/...``
sending combined-stream frames ``{"stream": ..., "data": {...}}`` and HTTP
``GET /fapi/v1/aggTrades`` (``fromId``, or ``startTime``/``endTime``) /
``GET /fapi/v1/historicalTrades`` (needs an ``X-MBX-APIKEY`` header, at most 500 rows)
answering from the same tape with Binance's JSON shapes, and ``GET /fapi/v1/exchangeInfo`` (a
real, trimmed response: ``tests/fakes/data/``). ``GET /fapi/v1/time`` answers the tape's clock
(the event time of the newest trade that has happened) and ``GET /fapi/v1/klines`` the official
1m klines of ``data/sample/`` (which equal the tape's bars for its complete minutes) up to that
clock. Only closed klines are served: the exchange's still-open kline is not modelled.
``trade`` events are the recorded frames byte for byte; ``aggTrade`` events are built from
them (see :func:`tests.fakes.tape.aggregate`).

A tape *cursor* says how many recorded trades have "happened". REST only answers trades behind
the cursor. After a disconnect the live stream resumes at the cursor (nothing missed is resent:
that is what the client's REST backfill is for).

Mark prices: a client subscribing ``<symbol>@markPrice@1s`` gets one ``markPriceUpdate`` per
symbol per second of the fake's exchange clock (event time ``E`` on the whole second, mark =
index = the symbol's last recorded trade price at that time, funding rate 0.0001, next funding
time the next 8-hour boundary), after every trade event of that second has been sent (one
connection delivers in event-time order), and also after the tape has ended,
as the real exchange goes on. Only
with ``speed>0``: the exchange clock is then the recorded clock at that multiple. Every update
sent is listed in ``Stats.marks`` as ``(symbol, E)``.

Pacing: ``speed=0`` sends as fast as the client reads, but only while a client is connected;
``speed>0`` follows the recorded receive times at that multiple from the first connection on
(trades keep happening while no client is connected); ``manual=True`` sends only what
the test releases with :meth:`FakeBinance.release`.

Rate limit (``Faults.weight_limit``, off by default): Binance's REQUEST_WEIGHT rule per fixed
"minute" of ``Faults.minute`` wall seconds (60 = real time; tests may shrink it and must scale
their client the same way). Each answer carries ``X-MBX-USED-WEIGHT-1M``; a request that takes
the minute over the limit gets 429 with ``Retry-After`` (whole seconds to the minute's end), and
any request before that back-off ends gets 418 with a ban of ``Faults.ban`` seconds (further
requests during the ban: 418 again).
"""

from __future__ import annotations

import asyncio
import bisect
import json
import math
import random
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Optional
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from tests.fakes.tape import (
    SYMBOLS_A,
    AggTrade,
    Frame,
    aggregate_positions,
    load_frames,
    load_klines,
)

EXCHANGE_INFO = Path(__file__).with_name("data") / "futures-um-exchangeInfo-2021-07-21.trimmed.json"
# Binance USD-M futures REST weights (stated here independently of the client's table).
FIXED_WEIGHTS = {"/fapi/v1/aggTrades": 20, "/fapi/v1/historicalTrades": 20,
                 "/fapi/v1/exchangeInfo": 1}
MAX_LIMIT = {"/fapi/v1/aggTrades": 1000, "/fapi/v1/historicalTrades": 500,
             "/fapi/v1/klines": 1500}


def weight_of(path: str, query: dict[str, list[str]]) -> int:
    if path == "/fapi/v1/klines":
        limit = int((query.get("limit") or ["500"])[0])
        return 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10
    return FIXED_WEIGHTS.get(path, 1)


@dataclass
class Faults:
    """Faults on demand; the test may change them while the fake runs."""

    drop_every: int = 0  # close a connection after this many trade frames on it ...
    drops: int = 0  # ... this many times in total
    abnormal_every: int = 2  # every n-th drop aborts the TCP connection (client sees 1006)
    away: int = 0  # recorded trades that "happen" while the client reconnects after a drop
    skip: set[int] = field(default_factory=set)  # tape indices never sent live (REST has them)
    malformed: float = 0.0  # probability of a garbage frame before each real frame
    stall_at: set[int] = field(default_factory=set)  # stop sending here until the client leaves
    rest_429: int = 0  # the next n REST requests get 429 + Retry-After
    rest_418: int = 0  # then n REST requests get 418 (IP ban) + Retry-After
    retry_after: int = 1  # seconds, in the Retry-After header
    refuse: bool = False  # WebSocket handshakes answered with HTTP 503
    weight_limit: int = 0  # REQUEST_WEIGHT per fake minute (Binance: 2400); 0 = not enforced
    minute: float = 60.0  # wall seconds of the fake's rate-limit minute
    ban: float = 120.0  # seconds of a 418 IP ban


@dataclass
class Stats:
    connections: int = 0
    frames: int = 0  # trade frames sent
    malformed: int = 0  # garbage frames sent
    drops: int = 0
    abnormal: int = 0
    skipped: int = 0  # trades omitted from the live stream
    stalls: int = 0
    refused: int = 0
    rest: list[tuple[str, int]] = field(default_factory=list)  # (request path+query, status)
    klines: int = 0  # kline rows served
    weight: dict[int, int] = field(default_factory=dict)  # fake minute -> weight used in it
    marks: list[tuple[str, int]] = field(default_factory=list)  # (symbol, E ms) of updates sent


def garbage(rng: random.Random) -> str | bytes:
    """One frame that must be counted as malformed (never a plausible trade of ours)."""
    kind = rng.randrange(10)
    if kind == 0:
        return "{not json"
    if kind == 1:
        return b"\xff\xfe\x00binary garbage"
    if kind == 2:
        return '{"stream":"btcusdt@aggTrade","data":null}'
    if kind == 3:
        return '{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","a":"x","s":"BTCUSDT"}}'
    if kind == 4:
        return '{"e":"aggTrade","E":1,"a":1,"s":"BTCUSDT","p":"NaN","q":"1","f":1,"l":1,' \
               '"T":1721347022707,"m":true}'
    if kind == 5:
        return "[" * 5000 + "]" * 5000  # nesting bomb
    if kind == 6:
        return '{"stream":"ethusdt@aggTrade","data":{"e":"aggTrade","s":"ETHUSDT","p":"-1",' \
               '"q":"1","a":1,"f":2,"l":1,"T":1721347022707,"m":false}}'
    if kind == 7:
        return '{"e":"trade","t":99999999999999999999999,"s":"ETHUSDT"}'
    if kind == 8:
        return "x" * 50_000
    return "[1,2,3]"


class _Client:
    __slots__ = ("conn", "subs", "sent", "gone")

    def __init__(self, conn: ServerConnection, subs: set[tuple[str, str]]):
        self.conn = conn
        self.subs = subs  # (SYMBOL, "aggTrade" | "trade" | "markPrice@1s")
        self.sent = 0
        self.gone = False


class FakeBinance:
    """Loopback fake of Binance futures WS + REST over a recorded tape. Context manager."""

    def __init__(
        self,
        frames: Optional[list[Frame]] = None,
        *,
        speed: float = 0.0,
        manual: bool = False,
        faults: Optional[Faults] = None,
        seed: int = 0,
        klines: Optional[dict[str, list[list[Any]]]] = None,
        exchange_info: Optional[dict] = None,
    ):
        self.frames = frames if frames is not None else load_frames()
        self.klines = klines if klines is not None else {s: load_klines(s) for s in SYMBOLS_A}
        self.speed = speed
        self.manual = manual
        self.faults = faults or Faults()
        self.stats = Stats()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.cursor = 0  # trades [0, cursor) have happened
        self.served: set[tuple[str, int]] = set()  # (symbol, aggTrade id) sent by WS or REST
        aggs = aggregate_positions(self.frames)
        self._agg_at: dict[int, list[AggTrade]] = {}
        for pos, g in aggs:
            self._agg_at.setdefault(pos, []).append(g)
        self._aggs: dict[str, tuple[list[int], list[tuple[int, AggTrade]]]] = {}
        self._trades: dict[str, tuple[list[int], list[int]]] = {}
        for pos, g in aggs:
            ids, rows = self._aggs.setdefault(g.symbol, ([], []))
            ids.append(g.a)
            rows.append((pos, g))
        for i, f in enumerate(self.frames):
            ids, pos = self._trades.setdefault(f.trade.symbol, ([], []))
            ids.append(f.trade.id)
            pos.append(i)
        self._clients: list[_Client] = []
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._http: Optional[ThreadingHTTPServer] = None
        self._credits = 0
        self._ready = threading.Event()
        self.ws_port = 0
        self.http_port = 0
        self.exchange_info = exchange_info or listing(
            json.loads(EXCHANGE_INFO.read_text()), {f.trade.symbol for f in self.frames})
        self._t0 = time.monotonic()  # the fake's rate-limit minutes count from here
        self._clock0: Optional[float] = None  # monotonic time of the recorded clock's start
        self._prices: dict[str, tuple[list[int], list[str]]] = {}  # symbol -> (T, price)
        for f in self.frames:
            ts, ps = self._prices.setdefault(f.trade.symbol, ([], []))
            ts.append(f.trade.T)
            ps.append(f.trade.price)
        self._backoff_until = -math.inf  # after a 429: requests before this are banned
        self._banned_until = -math.inf

    # -- public ------------------------------------------------------------------------------

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}/market/stream"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def done(self) -> bool:
        return self.cursor >= len(self.frames)

    def aggs(self, symbol: str) -> list[AggTrade]:
        return [g for _, g in self._aggs[symbol][1]]

    def start(self) -> FakeBinance:
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _rest_handler(self))
        self._http.daemon_threads = True
        self.http_port = self._http.server_address[1]
        threading.Thread(target=self._http.serve_forever, daemon=True, name="fake-rest").start()
        self._thread = threading.Thread(target=self._run, daemon=True, name="fake-ws")
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake exchange did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._stop_event.set)
        if self._thread is not None:
            self._thread.join(10)
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()

    def __enter__(self) -> FakeBinance:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def release(self, n: int) -> None:
        """Manual pacing: let ``n`` more recorded trades happen (and be sent)."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._add_credits, n)

    def advance(self, n: int) -> None:
        """Let ``n`` trades happen without sending them live (as if the client were away)."""
        with self._lock:
            self.cursor = min(len(self.frames), self.cursor + n)

    def kick(self, abnormal: bool = False) -> None:
        """Drop every connected client now."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._kick_all, abnormal)

    def now_ms(self) -> int:
        """The exchange clock: event time of the newest trade that has happened."""
        with self._lock:
            i = self.cursor
        return self.frames[i - 1].trade.E if i else self.frames[0].trade.T - 1

    @property
    def n_clients(self) -> int:
        return sum(1 for c in self._clients if not c.gone)

    # -- WebSocket side ----------------------------------------------------------------------

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self._main())
        self._loop.close()

    async def _main(self) -> None:
        self._stop_event = asyncio.Event()
        self._clock_started = asyncio.Event()
        self._wake = asyncio.Event()
        async with serve(self._handle, "127.0.0.1", 0, process_request=self._process_request,
                         max_size=2**16, ping_interval=None) as server:
            self.ws_port = server.sockets[0].getsockname()[1]
            self._ready.set()
            pump = asyncio.create_task(self._pump())
            marks = asyncio.create_task(self._marks_pump())
            await self._stop_event.wait()
            pump.cancel()
            marks.cancel()
            self._kick_all(True)

    def _process_request(self, conn: ServerConnection, request: Any) -> Any:
        if self.faults.refuse:
            self.stats.refused += 1
            return conn.respond(503, "refused\n")
        if urlsplit(request.path).path != "/market/stream":
            return conn.respond(404, "no such stream endpoint\n")
        return None

    async def _handle(self, conn: ServerConnection) -> None:
        q = parse_qs(urlsplit(conn.request.path).query)
        subs = set()
        for s in (q.get("streams") or [""])[0].split("/"):
            sym, _, kind = s.partition("@")
            if kind in ("aggTrade", "trade", "markPrice@1s") and sym:
                subs.add((sym.upper(), kind))
        if not subs:
            await conn.close(1008, "no streams")
            return
        client = _Client(conn, subs)
        self._clients.append(client)
        self.stats.connections += 1
        self._wake.set()
        try:
            await conn.wait_closed()
        finally:
            client.gone = True
            self._clients = [c for c in self._clients if not c.gone]
            self._wake.set()

    def _add_credits(self, n: int) -> None:
        self._credits += n
        self._wake.set()

    def _kick_all(self, abnormal: bool) -> None:
        for c in self._clients:
            self._drop(c, abnormal)

    def _drop(self, c: _Client, abnormal: bool) -> None:
        if c.gone:
            return
        c.gone = True
        if abnormal:
            c.conn.transport.abort()
        else:
            asyncio.ensure_future(c.conn.close(1001, "going away"))

    async def _wait(self) -> None:
        self._wake.clear()
        await self._wake.wait()

    async def _pump(self) -> None:
        if self.speed > 0:  # the recorded clock starts with the first client
            while not any(not c.gone for c in self._clients):
                await self._wait()
        t0 = self._clock0 = time.monotonic()
        with self._lock:  # the clock starts at the cursor (a test may have advanced it)
            i0 = min(self.cursor, len(self.frames) - 1)
        r0 = self.frames[i0].recv_ns if self.frames else 0
        self._e0 = self.frames[i0].trade.E if self.frames else 0
        self._clock_started.set()
        while True:
            with self._lock:
                i = self.cursor
            if i >= len(self.frames):
                await self._wait()
                continue
            if self.manual:
                if self._credits <= 0:
                    await self._wait()
                    continue
            elif self.speed > 0:
                due = t0 + (self.frames[i].recv_ns - r0) / 1e9 / self.speed
                if due > time.monotonic():
                    await asyncio.sleep(due - time.monotonic())
                    continue
            elif not any(not c.gone for c in self._clients):
                await self._wait()
                continue
            if i in self.faults.stall_at:
                self.faults.stall_at.discard(i)
                self.stats.stalls += 1
                while any(not c.gone for c in self._clients):  # silent until they give up
                    await self._wait()
                continue
            await self._send_index(i)
            with self._lock:
                if self.cursor == i:
                    self.cursor = i + 1
            if self.manual:
                self._credits -= 1
            await asyncio.sleep(0)

    async def _marks_pump(self) -> None:
        """One markPriceUpdate per subscribed symbol per exchange second (``speed>0`` only)."""
        if self.speed <= 0 or not self.frames:
            return
        await self._clock_started.wait()
        assert self._clock0 is not None
        e0 = self._e0  # the recorded clock: trades are paced by it
        sec = -(-e0 // 1000) * 1000
        while True:
            due = self._clock0 + (sec - e0) / 1000 / self.speed
            if due > time.monotonic():
                await asyncio.sleep(due - time.monotonic())
            # one connection delivers in event-time order: the trades of events up to ``sec``
            # go out before its mark, even when the trade pump runs behind its schedule
            while self.cursor < len(self.frames) and self.frames[self.cursor].trade.E <= sec:
                await asyncio.sleep(0.002)
            for c in list(self._clients):
                for sym in sorted(s for s, kind in c.subs if kind == "markPrice@1s"):
                    if c.gone or sym not in self._prices:
                        continue
                    try:
                        await c.conn.send(self._mark_frame(sym, sec))
                    except ConnectionClosed:
                        c.gone = True
                        continue
                    self.stats.marks.append((sym, sec))
            sec += 1000

    def _mark_frame(self, sym: str, e_ms: int) -> str:
        ts, ps = self._prices[sym]
        price = ps[max(0, bisect.bisect_right(ts, e_ms) - 1)]
        eight_h = 8 * 3600 * 1000
        return orjson.dumps({"stream": f"{sym.lower()}@markPrice@1s", "data": {
            "e": "markPriceUpdate", "E": e_ms, "s": sym, "p": price, "i": price, "P": price,
            "r": "0.00010000", "T": (e_ms // eight_h + 1) * eight_h}}).decode()

    async def _send_index(self, i: int) -> None:
        f = self.frames[i]
        if i in self.faults.skip:
            self.stats.skipped += 1
            return
        sym = f.trade.symbol
        for c in list(self._clients):
            if c.gone:
                continue
            junk = None
            if self.faults.malformed and self._rng.random() < self.faults.malformed:
                junk = garbage(self._rng)
            out: list[str] = []
            if (sym, "trade") in c.subs:
                out.append(f.raw.decode())
            if (sym, "aggTrade") in c.subs:
                for g in self._agg_at.get(i, ()):
                    self.served.add((g.symbol, g.a))
                    out.append(orjson.dumps(
                        {"stream": f"{sym.lower()}@aggTrade", "data": g.event()}).decode())
            try:
                if junk is not None:
                    await c.conn.send(junk)
                    self.stats.malformed += 1
                for msg in out:
                    await c.conn.send(msg)
            except ConnectionClosed:
                c.gone = True
                continue
            c.sent += len(out)
            self.stats.frames += len(out)
            fl = self.faults
            if fl.drops > 0 and fl.drop_every and c.sent >= fl.drop_every:
                fl.drops -= 1
                self.stats.drops += 1
                abnormal = fl.abnormal_every > 0 and self.stats.drops % fl.abnormal_every == 0
                self.stats.abnormal += abnormal
                self._drop(c, abnormal)
                if fl.away:
                    self.advance(fl.away)

    # -- REST side ---------------------------------------------------------------------------

    def rest_answer(self, path: str, query: dict[str, list[str]],
                    headers: Optional[dict[str, str]] = None) -> tuple[int, Any, dict]:
        status, body, extra = self._limited(path, query)
        if status == 0:
            status, body, extra = self._answer(path, query, headers or {})
        return status, body, extra

    def _limited(self, path: str, query: dict[str, list[str]]) -> tuple[int, Any, dict]:
        """Binance's weight rule (status 0: within the limit), then the scripted 429/418s."""
        fl = self.faults
        extra: dict[str, str] = {}
        if fl.weight_limit:
            now = time.monotonic()
            with self._lock:
                if now < self._banned_until or now < self._backoff_until:
                    self._banned_until = max(self._banned_until, now + fl.ban)
                    return 418, {"code": -1003, "msg": "Way too many requests; IP banned."}, {
                        "Retry-After": str(math.ceil(self._banned_until - now))}
                minute = int((now - self._t0) // fl.minute)
                used = self.stats.weight.get(minute, 0) + weight_of(path, query)
                extra["X-MBX-USED-WEIGHT-1M"] = str(used)
                if used > fl.weight_limit:
                    end = self._t0 + (minute + 1) * fl.minute
                    self._backoff_until = end
                    return 429, {"code": -1003, "msg": "Too many requests."}, {
                        **extra, "Retry-After": str(max(1, math.ceil(end - now)))}
                self.stats.weight[minute] = used
        if fl.rest_429 > 0:
            fl.rest_429 -= 1
            return 429, {"code": -1003, "msg": "Too many requests."}, {
                **extra, "Retry-After": str(fl.retry_after)}
        if fl.rest_418 > 0:
            fl.rest_418 -= 1
            return 418, {"code": -1003, "msg": "Way too many requests; IP banned."}, {
                **extra, "Retry-After": str(fl.retry_after)}
        return 0, None, extra

    def _answer(self, path: str, query: dict[str, list[str]],
                headers: dict[str, str]) -> tuple[int, Any, dict]:
        if path == "/fapi/v1/exchangeInfo":
            return 200, self.exchange_info, {}
        sym = (query.get("symbol") or [""])[0]
        if path == "/fapi/v1/time":
            return 200, {"serverTime": self.now_ms()}, {}
        try:
            limit = int((query.get("limit") or ["500"])[0])
            from_id = query.get("fromId")
            fid = int(from_id[0]) if from_id else None
            start = int(query["startTime"][0]) if "startTime" in query else None
            end = int(query["endTime"][0]) if "endTime" in query else None
        except ValueError:
            return 400, {"code": -1100, "msg": "Illegal characters in parameter."}, {}
        if path in MAX_LIMIT and not 1 <= limit <= MAX_LIMIT[path]:
            return 400, {"code": -1130, "msg": "Invalid data sent for a parameter."}, {}
        with self._lock:
            cursor = self.cursor
        if path == "/fapi/v1/klines":
            return self._klines(sym, (query.get("interval") or [""])[0], start, end, limit)
        if path == "/fapi/v1/aggTrades":
            if sym not in self._aggs:
                return 400, {"code": -1121, "msg": "Invalid symbol."}, {}
            ids, rows = self._aggs[sym]
            happened = bisect.bisect_left([p for p, _ in rows], cursor)
            if start is not None:  # by time: from the first trade at or after startTime
                if end is None or not 0 <= end - start < 3_600_000 or fid is not None:
                    return 400, {"code": -1127, "msg": "More than 1 hours between startTime "
                                 "and endTime."}, {}  # fmt: skip
                sel = [g for _, g in rows[:happened] if start <= g.T <= end][:limit]
            else:
                lo = bisect.bisect_left(ids, fid) if fid is not None else max(0, happened - limit)
                sel = [g for _, g in rows[lo:min(happened, lo + limit)]]
            self.served.update((g.symbol, g.a) for g in sel)
            return 200, [g.rest_row() for g in sel], {}
        if path == "/fapi/v1/historicalTrades":
            if not headers.get("x-mbx-apikey"):
                return 401, {"code": -2014, "msg": "API-key format invalid."}, {}
            if sym not in self._trades:
                return 400, {"code": -1121, "msg": "Invalid symbol."}, {}
            ids, pos = self._trades[sym]
            happened = bisect.bisect_left(pos, cursor)
            lo = bisect.bisect_left(ids, fid) if fid is not None else max(0, happened - limit)
            hi = min(happened, lo + limit)
            return 200, [self.frames[p].trade.rest_row() for p in pos[lo:hi]], {}
        return 404, {"code": -1, "msg": "not found"}, {}

    def _klines(
        self, sym: str, interval: str, start: Optional[int], end: Optional[int], limit: int
    ) -> tuple[int, Any, dict]:
        if sym not in self.klines:
            return 400, {"code": -1121, "msg": "Invalid symbol."}, {}
        if interval != "1m":
            return 400, {"code": -1120, "msg": "Invalid interval."}, {}
        now = self.now_ms()
        rows = [r for r in self.klines[sym]
                if r[6] < now and (start is None or r[0] >= start)
                and (end is None or r[0] <= end)]  # fmt: skip
        rows = rows[:limit] if start is not None else rows[-limit:]
        self.stats.klines += len(rows)
        return 200, rows, {}


def listing(info: dict, symbols: set[str]) -> dict:
    """``info`` with the tape's symbols it lacks (synthetic tapes) listed as trading perpetuals."""
    known = {d["symbol"] for d in info["symbols"]}
    extra = [{"symbol": s, "pair": s, "contractType": "PERPETUAL", "status": "TRADING",
              "quoteAsset": "USDT"} for s in sorted(symbols - known)]
    return {**info, "symbols": [*info["symbols"], *extra]} if extra else info


def _rest_handler(fake: FakeBinance) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - http.server's API
            u = urlsplit(self.path)
            status, body, headers = fake.rest_answer(
                u.path, parse_qs(u.query), {k.lower(): v for k, v in self.headers.items()})
            fake.stats.rest.append((self.path, status))
            data = orjson.dumps(body)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


def refused_port() -> int:
    """A loopback port with nothing listening (connections are refused)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
