"""One REST request-weight budget per process, shared by every Binance REST caller.

Binance limits REQUEST_WEIGHT per IP (USD-M futures: 2,400 per minute); a client that exceeds
it gets 429 + ``Retry-After``, and one that keeps asking during that back-off gets 418, an IP
ban. Every request therefore takes its weight from this budget first::

    budget = shared_budget()                  # the process-wide one (or RestBudget(...))
    await budget.acquire(weight)              # async callers; or budget.acquire_blocking(weight)
    try:
        status, headers, body = <the HTTP request>
    finally:
        budget.release(headers)               # reads X-MBX-USED-WEIGHT-1M; frees the slot

    budget.pause(seconds, reason)             # 429 Retry-After / 418 ban: every caller waits

Callers are granted in FIFO order, at most ``max_concurrent`` at a time. Our own grants are
kept for one ``window`` (a sliding minute: safe whatever the alignment of Binance's fixed
minutes) and never exceed ``share`` of ``limit``; weight the server reports beyond ours (other
processes on the IP, requests before a restart) counts against the budget for one window after
the response that reported it. Thread-safe: the feeds run one event loop per thread.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Optional

log = logging.getLogger("pairstream.binance")

WEIGHT_LIMIT = 2400  # USD-M futures REQUEST_WEIGHT per minute (exchangeInfo rateLimits)
USED_WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"


class _Waiter:
    __slots__ = ("weight", "wake")

    def __init__(self, weight: int, wake: Callable[[], None]):
        self.weight = weight
        self.wake = wake


class RestBudget:
    """Request weight per sliding ``window`` seconds, a concurrency cap and global pauses."""

    def __init__(
        self,
        limit: int = WEIGHT_LIMIT,
        *,
        window: float = 60.0,
        share: float = 0.9,
        max_concurrent: int = 4,
        clock: Callable[[], float] = time.monotonic,
    ):
        if limit <= 0 or window <= 0 or not 0 < share <= 1 or max_concurrent < 1:
            raise ValueError("RestBudget: limit, window, share and max_concurrent must be > 0")
        self.limit = limit
        self.window = window
        self.cap = max(1, int(limit * share))
        self.max_concurrent = max_concurrent
        self.clock = clock
        self._lock = threading.Lock()
        self._log: deque[tuple[float, int]] = deque()  # (granted at, weight) of our requests
        self._ours = 0  # sum of the weights in _log
        self._external = 0  # weight the server counted beyond ours ...
        self._external_until = -math.inf  # ... until then
        self._paused_until = -math.inf
        self._inflight = 0
        self._queue: deque[_Waiter] = deque()
        self.granted = 0  # weight granted so far (tests, logs)
        self.pauses: list[tuple[float, str]] = []  # (seconds, reason) of every pause

    # -- state (call with the lock held) -------------------------------------------------------

    def _expire(self, now: float) -> None:
        while self._log and self._log[0][0] <= now - self.window:
            self._ours -= self._log.popleft()[1]

    def _wait(self, weight: int, now: float) -> float:
        """Seconds until ``weight`` may be sent (0: now; inf: when a request finishes)."""
        if now < self._paused_until:
            return self._paused_until - now
        if self._inflight >= self.max_concurrent:
            return math.inf
        self._expire(now)
        external = self._external if now < self._external_until else 0
        excess = self._ours + external + min(weight, self.cap) - self.cap
        if excess <= 0:
            return 0.0
        freed, until = 0, now
        for at, w in self._log:  # our grants expire oldest first
            if freed >= excess:
                break
            freed += w
            until = at + self.window
        if freed < excess:  # only the external weight's expiry can make room
            until = max(until, self._external_until)
        return max(until - now, 1e-3)

    def _try(self, w: _Waiter) -> float:
        if not self._queue or self._queue[0] is not w:
            return math.inf
        now = self.clock()
        wait = self._wait(w.weight, now)
        if wait == 0.0:
            self._queue.popleft()
            self._log.append((now, w.weight))
            self._ours += w.weight
            self._inflight += 1
            self.granted += w.weight
            self._wake_head()
        return wait

    def _wake_head(self) -> None:
        while self._queue:
            try:
                self._queue[0].wake()
                return
            except RuntimeError:  # its event loop is gone: drop it, wake the next one
                self._queue.popleft()

    def _leave(self, w: _Waiter) -> None:
        with self._lock:
            try:
                self._queue.remove(w)
            except ValueError:
                return
            self._wake_head()

    # -- public --------------------------------------------------------------------------------

    async def acquire(self, weight: int) -> None:
        """Wait (FIFO) until ``weight`` fits; then the caller must :meth:`release`."""
        loop = asyncio.get_running_loop()
        ev = asyncio.Event()
        w = _Waiter(weight, lambda: loop.call_soon_threadsafe(ev.set))
        with self._lock:
            self._queue.append(w)
        try:
            while True:
                with self._lock:
                    wait = self._try(w)
                if wait == 0.0:
                    return
                ev.clear()
                try:
                    await asyncio.wait_for(ev.wait(), None if math.isinf(wait) else wait)
                except asyncio.TimeoutError:
                    pass
        except BaseException:
            self._leave(w)
            raise

    def acquire_blocking(self, weight: int) -> None:
        """:meth:`acquire` for synchronous callers (start-up checks, warm-up)."""
        ev = threading.Event()
        w = _Waiter(weight, ev.set)
        with self._lock:
            self._queue.append(w)
        try:
            while True:
                with self._lock:
                    wait = self._try(w)
                if wait == 0.0:
                    return
                ev.clear()
                ev.wait(None if math.isinf(wait) else wait)
        except BaseException:
            self._leave(w)
            raise

    def release(self, headers: Optional[Mapping[str, Any]] = None) -> None:
        """The request finished: free its slot; learn the server's count from its headers."""
        used = _used_weight(headers)
        with self._lock:
            self._inflight = max(0, self._inflight - 1)
            if used is not None:
                now = self.clock()
                self._expire(now)
                self._external = max(0, used - self._ours)
                self._external_until = now + self.window
            self._wake_head()

    def pause(self, seconds: float, reason: str) -> None:
        """Nobody sends before ``seconds`` from now (429 ``Retry-After``, 418 ban)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self.clock() + seconds)
            self.pauses.append((seconds, reason))
            self._wake_head()

    def used(self) -> int:
        """Weight counted against the budget now (ours in the window + the server's extra)."""
        with self._lock:
            now = self.clock()
            self._expire(now)
            return self._ours + (self._external if now < self._external_until else 0)


def _used_weight(headers: Optional[Mapping[str, Any]]) -> Optional[int]:
    if headers is None:
        return None
    try:
        v = headers.get(USED_WEIGHT_HEADER)
        return None if v is None else int(v)
    except (TypeError, ValueError):
        return None


_shared: Optional[RestBudget] = None
_shared_lock = threading.Lock()


def shared_budget() -> RestBudget:
    """The process-wide budget (Binance counts weight per IP, so every caller shares one)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = RestBudget()
        return _shared
