"""Live Binance USD-M futures trades as a partitioned Bytewax source that never loses a trade.

One partition per connection group of at most 200 streams (``conn-0``, ``conn-1``...). Each runs
a :class:`~connectors.binance_ws.Feed` (``websockets`` client in a background asyncio thread)
feeding a deque; ``next_batch`` only drains it, so the worker never blocks, and ``next_awake``
lets the worker sleep while nothing has arrived. The snapshot is the last emitted trade id per
symbol; a resumed partition backfills from there over REST, so a restart loses nothing.

Records yielded (a mix, in order per symbol):

* :class:`~pairstream.records.Tick` — every trade exactly once, in trade-id order per symbol;
* :class:`~pairstream.records.Progress` ``(symbol, now)`` — at most ``1/progress_interval`` per
  second per symbol, only while its feed is connected and no backfill is pending, so a bar
  window never closes over a gap;
* :class:`~pairstream.records.Health` — per symbol once per clock second (``ts`` = the second): the
  interval's ``ticks``, ``reconnects``, ``gaps``, ``backfilled``, ``malformed`` and ``lag_ms``
  (now − ``T`` of the newest tick). Malformed frames that name no symbol are reported under
  symbol ``"*"``;
* :class:`~pairstream.records.Mark` — each symbol's ``markPrice@1s`` update (``marks=True``, the
  default), whose event time also advances the Progress clock every second.
"""

from __future__ import annotations

import logging
import ssl
from collections import deque
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, Optional, Union

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from connectors import shutdown
from connectors.binance_budget import RestBudget, shared_budget
from connectors.binance_rest import BinanceRest
from connectors.binance_ws import Clock, Feed, wall_clock
from connectors.store_resume import Starter
from pairstream.records import Health, Mark, Progress, Tick

log = logging.getLogger("pairstream.binance")

DEFAULT_WS_URL = "wss://fstream.binance.com/market/stream"
DEFAULT_REST_URL = "https://fapi.binance.com"
MAX_STREAMS = 200  # per connection
STREAMS = ("aggTrade", "trade")

Record = Union[Tick, Progress, Health, Mark]
Snapshot = dict[str, int]  # symbol -> last emitted trade id


class _BinancePartition(StatefulSourcePartition[Record, Snapshot]):
    def __init__(self, feed: Feed, resume: Snapshot, poll_interval: float, max_batch: int,
                 stop_when: Optional[Callable[[Mapping[str, int]], bool]],
                 until: Optional[datetime] = None):
        self._feed = feed
        self._out = feed.out
        self._last: Snapshot = dict(resume)
        self._poll = timedelta(seconds=poll_interval)
        self._max_batch = max_batch
        self._stop_when = stop_when
        self._until = until
        self._symbols = list(feed.symbols)
        self._ended: set[str] = set()  # symbols that traded at or after ``until``
        self._done = False
        feed.start()

    def next_batch(self) -> list[Record]:
        if self._done:
            raise StopIteration
        err = self._feed.error
        if err is not None:  # one line and the sink flushed (connectors.shutdown), or raise
            msg = f"binance feed {self._feed.name} stopped: {type(err).__name__}: {err}"
            exc = RuntimeError(msg)
            exc.__cause__ = err
            shutdown.fail_or_raise(msg, exc)
        out: list[Record] = []
        dq, last = self._out, self._last
        until = self._until
        for _ in range(min(len(dq), self._max_batch)):
            item = dq.popleft()
            if until is not None:
                item = self._bound(item, until)
                if item is None:
                    continue
            if type(item) is Tick:
                last[item.symbol] = item.trade_id
            out.append(item)
        if until is not None and len(self._ended) == len(self._symbols):
            # Every symbol is complete up to ``until``: say so, so that every run (killed and
            # resumed or not) closes its bars at the same point before the end-of-input flush.
            out.extend(Progress(s, until) for s in self._symbols)
            self._done = True
        if self._stop_when is not None and self._stop_when(last):
            self._done = True
        return out

    def _bound(self, item: Record, until: datetime) -> Optional[Record]:
        """``until`` mode: drop ticks at or after it (ending their symbol), cap Progress at it."""
        if type(item) is Tick:
            if item.symbol in self._ended or item.ts >= until:
                self._ended.add(item.symbol)  # ids (so times) ascend per symbol: it is complete
                return None
        elif type(item) is Progress and item.ts > until:
            return Progress(item.symbol, until)
        elif type(item) is Mark and item.ts >= until:
            return None
        return item

    def next_awake(self) -> Optional[datetime]:
        if self._out or self._done:
            return None
        return datetime.now(timezone.utc) + self._poll

    def snapshot(self) -> Snapshot:
        return dict(self._last)

    def close(self) -> None:
        self._feed.stop()


class BinanceSource(FixedPartitionedSource[Record, Snapshot]):
    """Binance USD-M futures ``aggTrade`` (default) or ``trade`` streams of ``symbols``.

    Durations are in seconds. ``stop_when(last_ids)`` (tests, bounded runs) ends a partition
    once it returns True for the partition's ``{symbol: last emitted id}``. ``until`` (config
    ``[source] until``: bounded live captures, recovery tests) ends a partition once each of its
    symbols has traded at or after that exchange time: exactly the ticks before it are emitted
    and Progress never passes it, so the run's output does not depend on when it stopped.
    ``starter`` (the flow's start plan) gives the position of symbols the recovery snapshot
    does not hold: after the newest stored trade, or before the first trade of the warm-up.

    Bounded memory: a partition holds at most ``high_water`` records the worker has not taken
    yet (it is back-pressured, e.g. by a QuestDB outage) plus as many live ticks held during
    backfills; beyond that the connection is closed and, once the worker has taken half of
    them, reopened and caught up over REST from the last emitted id. Every partition's REST
    calls share ``budget`` (default: the process-wide one). The reconnect backoff restarts
    from ``backoff_base`` only after a connection stayed up ``healthy_after`` seconds; a failed
    rotation is retried after ``rotate_retry`` seconds.
    """

    def __init__(
        self,
        symbols: list[str],
        stream: str = "aggTrade",
        ws_url: str = DEFAULT_WS_URL,
        rest_url: str = DEFAULT_REST_URL,
        *,
        clock: Optional[Clock] = None,
        max_streams: int = MAX_STREAMS,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        stall_timeout: float = 30.0,
        verify_timeout: float = 1.0,
        rotate_after: float = 23 * 3600.0,
        rotate_retry: float = 60.0,
        healthy_after: float = 60.0,
        high_water: int = 100_000,
        progress_interval: float = 0.1,
        progress_horizon: float = 0.0,
        poll_interval: float = 0.01,
        max_batch: int = 10_000,
        rest_limit: Optional[int] = None,
        rest_ban_backoff: float = 120.0,
        budget: Optional[RestBudget] = None,
        api_key: Optional[str] = None,
        ssl_context: Optional[ssl.SSLContext] = None,
        stop_when: Optional[Callable[[Mapping[str, int]], bool]] = None,
        until: Optional[datetime] = None,
        marks: bool = True,
        starter: Optional[Starter] = None,
    ):
        if stream not in STREAMS:
            raise ValueError(f"stream must be one of {STREAMS}, got {stream!r}")
        if not symbols:
            raise ValueError("no symbols to subscribe to")
        if not 1 <= max_streams <= 1024:
            raise ValueError("max_streams must be in 1..1024")
        syms = list(dict.fromkeys(s.upper() for s in symbols))
        self.groups = [syms[i:i + max_streams] for i in range(0, len(syms), max_streams)]
        self.stream = stream
        self.ws_url = ws_url
        self.rest_url = rest_url
        self.clock = clock or wall_clock
        self._feed_kw: dict[str, Any] = dict(
            backoff_base=backoff_base, backoff_cap=backoff_cap, stall_timeout=stall_timeout,
            verify_timeout=verify_timeout, rotate_after=rotate_after, rotate_retry=rotate_retry,
            healthy_after=healthy_after, high_water=high_water,
            progress_interval=progress_interval, progress_horizon=progress_horizon, marks=marks)
        if stream == "trade" and not api_key:
            raise ValueError("stream 'trade' backfills over /fapi/v1/historicalTrades, which "
                             "needs an API key")
        # One budget for every partition (connection) of the process: Binance counts per IP.
        self.budget = budget if budget is not None else shared_budget()
        self._rest_kw: dict[str, Any] = dict(limit=rest_limit, ban_backoff=rest_ban_backoff,
                                             api_key=api_key, ssl_context=ssl_context,
                                             budget=self.budget)
        self.poll_interval = poll_interval
        self.max_batch = max_batch
        self.stop_when = stop_when
        self.until = until
        self.starter = starter

    def list_parts(self) -> list[str]:
        return [f"conn-{i}" for i in range(len(self.groups))]

    def build_part(self, step_id: str, for_part: str,
                   resume_state: Optional[Snapshot]) -> _BinancePartition:
        symbols = self.groups[int(for_part.split("-", 1)[1])]
        resume = {s: int(i) for s, i in (resume_state or {}).items() if s in symbols}
        first: list[Record] = []
        fresh = [s for s in symbols if s not in resume]
        if fresh and self.starter is not None:  # no recovered position: resume from the store
            resume.update(self.starter.resume_ids(fresh))
            first = list(self.starter.health(fresh))
        feed = self.feed(for_part, symbols, resume)
        feed.out.extend(first)
        return _BinancePartition(feed, resume, self.poll_interval, self.max_batch,
                                 self.stop_when, self.until)

    def feed(self, name: str, symbols: list[str], resume: Snapshot) -> Feed:
        """The (not yet started) connection of one partition; also used by tests directly."""
        rest = BinanceRest(self.rest_url, self.stream, **self._rest_kw)
        return Feed(name, symbols, self.stream, self.ws_url, rest, deque(), last_ids=resume,
                    clock=self.clock, **self._feed_kw)
