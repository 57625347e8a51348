"""One Binance combined-stream connection: reconnects, watchdog, rotation, gap-free sequencing.

:class:`Sequencer` is the pure part (no I/O, testable on its own): per symbol it keeps the last
trade id emitted and decides, for every live or REST tick, whether to emit it, drop it as a
duplicate, or hold it while a REST backfill closes a gap. :class:`Feed` runs the ``websockets``
client in its own thread and event loop and appends records to a deque the Bytewax partition
drains; it never blocks the worker.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any, Optional

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from connectors.binance_rest import BinanceRest, row_to_tick
from connectors.frames import EPOCH, MAX_FRAME_BYTES, MalformedFrame, dt_to_ms, parse_message
from pairstream.records import Health, Mark, Progress, Tick

log = logging.getLogger("pairstream.binance")

SYNCED, VERIFY, BACKFILL = "synced", "verify", "backfill"
METRICS = ("ticks", "reconnects", "gaps", "backfilled", "malformed")
UNATTRIBUTED = "*"  # Health symbol for malformed frames that name no symbol of ours
Clock = Callable[[], datetime]


def wall_clock() -> datetime:
    return datetime.now(timezone.utc)


class Sequencer:
    """Per-symbol trade-id continuity: each trade once, in id order, gaps closed over REST.

    States: ``synced`` (ids follow on; live ticks are emitted), ``verify`` (just (re)connected
    with a known last id: the first live tick proves continuity, or a timeout asks REST),
    ``backfill`` (live ticks are held until REST has filled the hole).
    """

    def __init__(
        self,
        symbols: list[str],
        last_ids: dict[str, int],
        emit: Callable[[Tick], None],
        count: Callable[[str, str, int], None],
        want_backfill: Callable[[str], None],
        max_held: int = 100_000,
    ):
        self.last: dict[str, Optional[int]] = {s: last_ids.get(s) for s in symbols}
        self.state = {s: SYNCED for s in symbols}
        self.held: dict[str, list[Tick]] = {s: [] for s in symbols}
        # At most ``max_held`` live ticks are held (all symbols together); beyond it a live tick
        # is dropped and REST must reach its id (``need``) before the symbol is synced again.
        self.max_held = max_held
        self.n_held = 0
        self.need: dict[str, int] = {}
        self.dropped = 0  # live ticks dropped at the cap (fetched over REST instead)
        self.verify_since: dict[str, float] = {}
        self.connected = False
        self._emit = emit
        self._count = count
        self._want_backfill = want_backfill

    def caught_up(self, s: str) -> bool:
        """True when the feed of ``s`` is complete up to now (Progress may be emitted)."""
        return self.connected and self.state[s] == SYNCED

    def on_connect(self, now: float) -> None:
        """A (new) connection is open: symbols with a known last id must prove continuity."""
        self.connected = True
        for s, st in self.state.items():
            if st == SYNCED and self.last[s] is not None:
                self.state[s] = VERIFY
                self.verify_since[s] = now

    def on_disconnect(self) -> None:
        self.connected = False

    def check_verify(self, now: float, timeout: float) -> None:
        """Symbols silent since the connect: ask REST whether trades were missed."""
        for s, st in self.state.items():
            if st == VERIFY and now - self.verify_since[s] >= timeout:
                self._start_backfill(s)

    def _start_backfill(self, s: str) -> None:
        self.state[s] = BACKFILL
        self._want_backfill(s)

    def _put(self, t: Tick) -> None:
        self.last[t.symbol] = t.trade_id
        self._emit(t)

    def _hold(self, t: Tick) -> None:
        if self.n_held < self.max_held:
            self.held[t.symbol].append(t)
            self.n_held += 1
        else:
            self.need[t.symbol] = max(self.need.get(t.symbol, t.trade_id), t.trade_id)
            self.dropped += 1

    def _short_of_need(self, s: str) -> bool:
        need, last = self.need.get(s), self.last[s]
        if need is None:
            return False
        if last is not None and last >= need:
            del self.need[s]
            return False
        return True

    def on_live(self, t: Tick) -> None:
        s = t.symbol
        st = self.state[s]
        last = self.last[s]
        if st == BACKFILL:
            self._hold(t)
            return
        if last is None or t.trade_id == last + 1:
            self.state[s] = SYNCED
            self._put(t)
        elif t.trade_id <= last:
            if st == VERIFY:
                self.state[s] = SYNCED  # the new connection overlaps what we have: continuous
            return  # duplicate (overlap after reconnect/rotation, or replayed frame)
        else:
            self._count(s, "gaps", 1)
            self._hold(t)
            self._start_backfill(s)

    def on_rest(self, s: str, ticks: list[Tick], full_page: bool) -> bool:
        """A REST page for ``s`` (from last+1). True when the gap is closed and held ticks out.

        False means: fetch again (``full_page``: the next page; otherwise REST is behind the
        live stream, so retry shortly). Live ticks dropped at the held cap keep the symbol in
        backfill until REST has delivered them.
        """
        n = 0
        for t in sorted(ticks, key=lambda t: t.trade_id):
            last = self.last[s]
            if last is None or t.trade_id > last:
                self._put(t)
                n += 1
        if n:
            self._count(s, "backfilled", n)
        held = self.held[s]
        last = self.last[s]
        lowest = min((t.trade_id for t in held), default=None)
        if lowest is None:
            if full_page or self._short_of_need(s):
                return False
        elif last is not None and last + 1 < lowest:
            return False
        self.held[s] = []
        self.n_held -= len(held)
        self.state[s] = SYNCED
        for t in sorted(held, key=lambda t: t.trade_id):
            self.on_live(t)  # may find a further gap: state goes back to backfill
        if self.state[s] != BACKFILL and self._short_of_need(s):
            self.state[s] = BACKFILL  # ticks after the held ones were dropped: REST has them
        return self.state[s] != BACKFILL


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Capped exponential backoff with jitter in [50 %, 100 %] of the step."""
    return min(cap, base * 2 ** min(attempt, 30)) * rng.uniform(0.5, 1.0)


class _Stall(Exception):
    pass


class _Shed(Exception):
    pass


class Feed:
    """A background thread running one connection group; records go to ``out`` (a deque)."""

    def __init__(
        self,
        name: str,
        symbols: list[str],
        stream: str,
        ws_url: str,
        rest: BinanceRest,
        out: deque,
        *,
        last_ids: Optional[dict[str, int]] = None,
        clock: Clock = wall_clock,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        stall_timeout: float = 30.0,
        verify_timeout: float = 1.0,
        rotate_after: float = 23 * 3600.0,
        progress_interval: float = 0.1,
        progress_horizon: float = 0.0,
        open_timeout: float = 10.0,
        log_interval: float = 10.0,
        healthy_after: float = 60.0,
        rotate_retry: float = 60.0,
        high_water: int = 100_000,
        ticker_failures: int = 100,
        seed: Optional[int] = None,
        marks: bool = True,
    ):
        self.name = name
        self.symbols = list(symbols)
        self._symset = set(self.symbols)
        # marks: each symbol's mark price stream rides on the same connection; its event time
        # is an exchange-time heartbeat every second (bars close without waiting for a trade)
        streams = [f"{s.lower()}@{stream}" for s in symbols]
        if marks:
            streams += [f"{s.lower()}@markPrice@1s" for s in symbols]
        self.url = ws_url + "?streams=" + "/".join(streams)
        self.rest = rest
        self.stream = stream
        self.out = out
        self.clock = clock
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.stall_timeout = stall_timeout
        self.verify_timeout = verify_timeout
        self.rotate_after = rotate_after
        self.progress_interval = progress_interval
        self.progress_horizon = timedelta(seconds=progress_horizon)
        self.open_timeout = open_timeout
        self.log_interval = log_interval
        self.healthy_after = healthy_after
        self.rotate_retry = rotate_retry
        self.high_water = high_water
        self.low_water = high_water // 2
        self.ticker_failures = ticker_failures
        self._rng = random.Random(seed)
        self.counts: dict[str, dict[str, int]] = {
            s: dict.fromkeys(METRICS, 0) for s in [*self.symbols, UNATTRIBUTED]}
        self.newest_ms: dict[str, int] = {}
        self.seq = Sequencer(self.symbols, last_ids or {}, self._emit_tick, self._count,
                             self._want_backfill, max_held=high_water)
        self.attempts = 0  # reconnect attempts so far (for tests and logs)
        self.rotations = 0
        self.rotation_failures = 0
        self.sheds = 0  # connections closed because the flow fell ``high_water`` records behind
        self.shedding = False  # ... and it has not drained to ``low_water`` yet
        self.error: Optional[BaseException] = None
        self._backfills: dict[str, asyncio.Task] = {}
        self._pending: set[str] = set()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._task: Optional[asyncio.Task] = None
        self._thread: Optional[threading.Thread] = None
        self._malformed_logged = 0.0
        self._malformed_unlogged = 0
        self._health_sec: Optional[datetime] = None
        self._last_frame_at: Optional[datetime] = None  # exchange time of the newest trade
        self._last_recv: Optional[datetime] = None  # clock time it was received

    # -- records -------------------------------------------------------------------------------

    def _emit_tick(self, t: Tick) -> None:
        self.out.append(t)
        c = self.counts[t.symbol]
        c["ticks"] += 1
        ms = dt_to_ms(t.ts)
        if ms > self.newest_ms.get(t.symbol, -1):
            self.newest_ms[t.symbol] = ms

    def _count(self, s: str, metric: str, n: int) -> None:
        self.counts[s][metric] += n

    def _want_backfill(self, s: str) -> None:
        self._pending.add(s)
        if self._loop is not None and self._loop.is_running():
            self._loop.call_soon(self._start_pending)

    def handle_frame(self, raw: Any) -> None:
        """One received message: parse, count/skip if bad, sequence if a trade. Never raises.

        A mark price update goes out as is (table ``marks``) and moves the exchange clock of
        :meth:`emit_progress` on to its event time, like a trade does.
        """
        try:
            t = parse_message(raw)
            if t is None:
                return
            if t.symbol not in self._symset:
                raise MalformedFrame(f"message of unsubscribed symbol {t.symbol}")
        except MalformedFrame as e:
            self._malformed(str(e))
            return
        except Exception as e:  # noqa: BLE001 - a hostile frame must never stop the feed
            self._malformed(f"{type(e).__name__}: {e}")
            return
        if self._last_frame_at is None or t.ts > self._last_frame_at:
            self._last_frame_at = t.ts
            self._last_recv = self.clock()
        if type(t) is Mark:
            self.out.append(t)
        else:
            self.seq.on_live(t)

    def _malformed(self, reason: str) -> None:
        self.counts[UNATTRIBUTED]["malformed"] += 1
        now = time.monotonic()
        if now - self._malformed_logged >= self.log_interval:
            extra = f" (+{self._malformed_unlogged} more since last report)" \
                if self._malformed_unlogged else ""
            log.warning("binance %s: skipped malformed frame: %s%s", self.name, reason[:200],
                        extra)
            self._malformed_logged = now
            self._malformed_unlogged = 0
        else:
            self._malformed_unlogged += 1

    def emit_progress(self) -> None:
        """Progress up to the exchange time of the newest trade this connection delivered.

        Not the local "now": a connection that silently stalls stops advancing the bars'
        watermark at once, long before the watchdog notices, so trades backfilled after the
        stall are still on time for their bars; and exchange time needs no clock sync (a
        replayed or rebased tape is handled the same way). A quiet symbol's bars close as the
        busier symbols of its connection move the exchange clock on.

        ``progress_horizon`` (the flow passes the bars' lateness) lets the exchange time run on
        with the local clock after the newest trade, by at most that much: bars then close
        without waiting for the next trade, and a stall still cannot close a bar over trades
        it hides (the watermark, progress − lateness, stays at or before the newest trade).
        """
        at = self._last_frame_at
        if at is None or self.shedding:
            return
        if self.progress_horizon and self._last_recv is not None:
            at += min(max(self.clock() - self._last_recv, timedelta(0)), self.progress_horizon)
        for s in self.symbols:
            if self.seq.caught_up(s):
                self.out.append(Progress(s, at))

    def emit_health(self, flush: bool = False) -> None:
        """Once per clock second: the per-interval counts of the second just ended."""
        if self.shedding and not flush:
            return  # the counts keep adding up: the first row after the drain carries them
        now = self.clock()
        sec = now.replace(microsecond=0)
        if self._health_sec is None:
            self._health_sec = sec
            return
        if sec <= self._health_sec and not flush:
            return
        ts, self._health_sec = self._health_sec, sec
        now_ms = (now - EPOCH) // timedelta(milliseconds=1)
        for s in self.symbols:
            c = self.counts[s]
            for m in METRICS:
                self.out.append(Health(s, m, ts, float(c[m])))
                c[m] = 0
            if s in self.newest_ms:
                self.out.append(Health(s, "lag_ms", ts, float(now_ms - self.newest_ms[s])))
        junk = self.counts[UNATTRIBUTED]
        if junk["malformed"]:
            self.out.append(Health(UNATTRIBUTED, "malformed", ts, float(junk["malformed"])))
            junk["malformed"] = 0

    # -- thread and loop -----------------------------------------------------------------------

    def start(self) -> Feed:
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"binance-{self.name}")
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        loop, task = self._loop, self._task
        if loop is not None and task is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:
                pass  # loop already finished
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._task = loop.create_task(self._main())
            loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass
        except BaseException as e:  # noqa: BLE001 - reported to the worker by the partition
            self.error = e  # the partition raises it: the flow stops with the cause chained
            log.error("binance %s: feed stopped: %s: %s", self.name, type(e).__name__, e)
        finally:
            # Let every cancelled task finish (a backfill waiting in the shared REST budget must
            # leave its queue, or it would hold up the other connections' requests).
            tasks = asyncio.all_tasks(loop)
            for t in tasks:
                t.cancel()
            if tasks:
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.close()

    async def _main(self) -> None:
        ticker = asyncio.create_task(self._ticker())
        conn = asyncio.create_task(self._connection_loop())
        try:
            # Whichever ends first ends the feed; its exception (a bug) reaches the partition,
            # which stops the flow with it: a dead ticker must not silently stop the bars.
            done, _ = await asyncio.wait({ticker, conn}, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                t.result()
        finally:
            ticker.cancel()
            conn.cancel()
            for t in self._backfills.values():
                t.cancel()

    def tick(self) -> None:
        """The periodic work: verification timeouts, backfills, progress, health."""
        self.seq.check_verify(time.monotonic(), self.verify_timeout)
        self._start_pending()
        self.emit_progress()
        self.emit_health()

    async def _ticker(self) -> None:
        """:meth:`tick` every ``progress_interval``; a failing tick is logged and retried, and
        ``ticker_failures`` failures in a row end the feed (the flow stops with the error)."""
        failures = 0
        while True:
            try:
                self.tick()
                failures = 0
            except Exception:
                failures += 1
                if failures >= self.ticker_failures:
                    log.error("binance %s: periodic task failed %d times in a row; stopping",
                              self.name, failures)
                    raise
                if failures == 1:
                    log.exception("binance %s: periodic task failed; retrying", self.name)
            await asyncio.sleep(self.progress_interval)

    def _start_pending(self) -> None:
        while self._pending:
            s = self._pending.pop()
            task = self._backfills.get(s)
            if task is None or task.done():
                self._backfills[s] = asyncio.get_running_loop().create_task(self._backfill(s))

    async def _drained(self) -> None:
        """Wait while the flow is ``high_water`` records behind (until it is at ``low_water``)."""
        if len(self.out) >= self.high_water:
            self.shedding = True
        while self.shedding:
            if len(self.out) <= self.low_water:
                self.shedding = False
                break
            await asyncio.sleep(self.progress_interval)

    async def _backfill(self, s: str) -> None:
        delay = 0.05
        fetched = 0
        while self.seq.state[s] == BACKFILL:
            await self._drained()
            last = self.seq.last[s]
            assert last is not None
            try:
                rows = await self.rest.page(s, last + 1)
            except Exception as e:  # noqa: BLE001 - keep the symbol alive whatever happens
                log.warning("binance %s: backfill of %s failed (%s); retrying", self.name, s, e)
                await asyncio.sleep(1.0)
                continue
            ticks = []
            for row in rows:
                try:
                    ticks.append(row_to_tick(self.stream, s, row))
                except MalformedFrame as e:
                    self._count(s, "malformed", 1)
                    log.warning("binance %s: skipped malformed REST row of %s: %s", self.name,
                                s, e)
            full = len(rows) >= self.rest.limit
            fetched += len(rows)
            if self.seq.on_rest(s, ticks, full):
                log.info("binance %s: %s caught up at id %s (%d trades backfilled over REST)",
                         self.name, s, self.seq.last[s], fetched)
                return
            if not full:
                await asyncio.sleep(delay)  # REST behind the live stream: ask again soon
                delay = min(2.0, delay * 2)
            else:
                delay = 0.05

    async def _open(self) -> ClientConnection:
        return await connect(
            self.url,
            max_size=MAX_FRAME_BYTES,
            open_timeout=self.open_timeout,
            ping_interval=20,
            ping_timeout=20,
            close_timeout=2,
            max_queue=1024,
        )

    async def _connection_loop(self) -> None:
        attempt = 0
        while True:
            await self._drained()
            reason = "connection closed"
            healthy = False
            try:
                ws = await self._open()
            except asyncio.CancelledError:
                raise
            except (OSError, asyncio.TimeoutError, WebSocketException) as e:
                reason = f"connect failed: {_describe(e)}"
            else:
                self.seq.on_connect(time.monotonic())
                log.info("binance %s: connected (%d streams)", self.name, len(self.symbols))
                opened = time.monotonic()
                try:
                    await self._read(ws)
                except asyncio.CancelledError:
                    await _close(ws)
                    raise
                except _Shed:
                    await _close(ws, wait=False)
                except _Stall:
                    reason = f"no data for {self.stall_timeout:g}s (stalled)"
                    await _close(ws, wait=False)
                except (ConnectionClosed, OSError) as e:
                    reason = f"connection lost: {_describe(e)}"
                finally:
                    self.seq.on_disconnect()
                # Only a connection that stayed up for a while resets the backoff: one that
                # delivers a frame and drops, again and again, keeps backing off.
                healthy = time.monotonic() - opened >= self.healthy_after
            for s in self.symbols:
                self.counts[s]["reconnects"] += 1
            if self.shedding:
                self.sheds += 1
                log.warning("binance %s: the flow is %d records behind: connection closed; it "
                            "reopens and catches up over REST once they are down to %d",
                            self.name, len(self.out), self.low_water)
                continue
            if healthy:
                attempt = 0
            delay = backoff_delay(attempt, self.backoff_base, self.backoff_cap, self._rng)
            attempt += 1
            self.attempts += 1
            log.warning("binance %s: %s; reconnect attempt %d in %.2fs", self.name, reason,
                        attempt, delay)
            await asyncio.sleep(delay)

    async def _read(self, ws: ClientConnection) -> None:
        """Receive until the connection fails (raises); rotate it before the 24 h limit.

        Raises _Shed when the flow is ``high_water`` records behind: the socket is dropped
        rather than read into memory, and REST fills the hole once the flow has drained.
        """
        opened = time.monotonic()
        rotate_at = opened + self.rotate_after
        last_frame = opened
        out, high = self.out, self.high_water
        while True:
            now = time.monotonic()
            if now >= rotate_at:
                new = await self._rotate(ws)
                if new is ws:  # failed: try again soon, well before Binance's 24 h cut-off
                    rotate_at = time.monotonic() + self.rotate_retry
                else:
                    ws = new
                    last_frame = time.monotonic()
                    rotate_at = last_frame + self.rotate_after
                continue
            wait = min(self.stall_timeout - (now - last_frame), rotate_at - now)
            try:
                raw = await _recv(ws, max(wait, 0.001))
            except asyncio.TimeoutError:
                if time.monotonic() - last_frame >= self.stall_timeout:
                    raise _Stall() from None
                continue
            last_frame = time.monotonic()
            self.handle_frame(raw)
            if len(out) >= high:
                self.shedding = True
                raise _Shed()

    async def _rotate(self, old: ClientConnection) -> ClientConnection:
        """Open the replacement first (overlap: never without a live connection), then switch.

        Held and duplicate ticks are sorted out by the sequencer: every symbol re-verifies its
        continuity on the new connection and backfills over REST if the switch missed trades.
        """
        try:
            new = await self._open()
        except (OSError, asyncio.TimeoutError, WebSocketException) as e:
            self.rotation_failures += 1
            log.warning("binance %s: rotation failed (%s); keeping the old connection, next "
                        "try in %gs", self.name, _describe(e), self.rotate_retry)
            return old
        # Drain what the old connection already holds before leaving it (briefly: it may never
        # go quiet; whatever is missed is found by the re-verification below).
        deadline = time.monotonic() + 0.05
        while time.monotonic() < deadline:
            try:
                raw = await _recv(old, 0.005)
            except (asyncio.TimeoutError, ConnectionClosed):
                break
            self.handle_frame(raw)
        await _close(old, wait=False)
        self.rotations += 1
        self.seq.on_connect(time.monotonic())
        log.info("binance %s: rotated connection (%d)", self.name, self.rotations)
        return new


async def _recv(ws: ClientConnection, timeout: float) -> Any:
    """``ws.recv()`` with a timeout (``asyncio.timeout`` is cheaper than ``wait_for``: no task)."""
    if hasattr(asyncio, "timeout"):
        async with asyncio.timeout(timeout):
            return await ws.recv()
    return await asyncio.wait_for(ws.recv(), timeout)  # Python 3.10


async def _close(ws: ClientConnection, wait: bool = True) -> None:
    if wait:
        try:
            await asyncio.wait_for(ws.close(), 2)
        except Exception:  # noqa: BLE001 - closing a broken connection
            pass
    else:
        asyncio.ensure_future(_close(ws))


def _describe(e: BaseException) -> str:
    if isinstance(e, InvalidStatus):
        return f"HTTP {e.response.status_code}"
    if isinstance(e, ConnectionClosed):
        rcvd = e.rcvd
        code = rcvd.code if rcvd is not None else 1006
        return f"code {code}"
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
