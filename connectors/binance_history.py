"""Binance futures history for the start sequence: server time, 1m klines, trades by time.

Separate from :mod:`connectors.binance_rest` (the gap backfill) on purpose: these calls run once,
blocking, before the flow goes live. Each request goes through :meth:`BinanceHistory.get`,
which keeps the weight it spends below ``weight_budget`` per minute (Binance's request
weights: klines 1/2/5/10 by ``limit``, aggTrades 20, time 1) and honours 429/418 with
``Retry-After``. Stdlib ``urllib``, TLS verified by the default context.
"""

from __future__ import annotations

import logging
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Optional

import orjson

from connectors.frames import dt_to_ms, ms_to_dt
from pairstream.config import tf_seconds
from pairstream.records import Bar

log = logging.getLogger("pairstream.start")

KLINES_MAX = 1500  # rows per klines request (Binance's maximum)
MAX_TRIES = 5


class HistoryError(RuntimeError):
    """The exchange did not answer a history request (one line)."""


def klines_weight(limit: int) -> int:
    """Binance USD-M ``GET /fapi/v1/klines`` request weight for ``limit`` rows."""
    return 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10


def kline_to_bar(symbol: str, tf: str, row: list[Any]) -> Bar:
    """One official kline row ``[open_time, o, h, l, c, v, close_time, qv, n, tbv, ...]``."""
    vol, qv = float(row[5]), float(row[7])
    return Bar(
        symbol, tf, ms_to_dt(int(row[0])), float(row[1]), float(row[2]), float(row[3]),
        float(row[4]), vol, qv, int(row[8]), float(row[9]), qv / vol if vol else float(row[4]),
        int(row[8]) == 0,
    )  # fmt: skip


class BinanceHistory:
    """Blocking REST calls of the start sequence, within a per-minute weight budget."""

    def __init__(
        self,
        rest_url: str,
        *,
        weight_budget: int = 1200,
        timeout: float = 10.0,
        ssl_context: Optional[ssl.SSLContext] = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base = rest_url.rstrip("/")
        self.weight_budget = weight_budget
        self.timeout = timeout
        self._ssl = ssl_context
        self._sleep = sleep
        self._clock = clock
        self._spent: list[tuple[float, int]] = []  # (when, weight) of the last minute
        self.requests = 0
        self.weight = 0

    def _reserve(self, weight: int) -> None:
        """Wait until ``weight`` more fits in the last 60 s of spending."""
        while True:
            now = self._clock()
            self._spent = [(t, w) for t, w in self._spent if now - t < 60.0]
            used = sum(w for _, w in self._spent)
            if used + weight <= self.weight_budget or not self._spent:
                self._spent.append((now, weight))
                return
            self._sleep(60.0 - (now - self._spent[0][0]))

    def get(self, path: str, params: dict[str, Any], weight: int) -> Any:
        """One GET with JSON answer; retries throttling and transient failures a few times."""
        url = f"{self.base}{path}?{urllib.parse.urlencode(params)}"
        ctx = None
        if url.startswith("https:"):
            self._ssl = self._ssl or ssl.create_default_context()
            ctx = self._ssl
        req = urllib.request.Request(url, headers={"User-Agent": "pairstream"})
        last = ""
        for attempt in range(MAX_TRIES):
            self._reserve(weight)
            self.requests += 1
            self.weight += weight
            try:
                with urllib.request.urlopen(req, timeout=self.timeout, context=ctx) as resp:
                    used = resp.headers.get("X-MBX-USED-WEIGHT-1M")
                    body = resp.read()
                if used is not None and used.isdigit() and int(used) > self.weight_budget:
                    self._spent.append((self._clock(), int(used) - self.weight_budget))
                return orjson.loads(body)
            except urllib.error.HTTPError as e:
                last = f"HTTP {e.code}"
                if e.code in (429, 418):
                    try:
                        wait = float(e.headers.get("Retry-After") or 1.0)
                    except ValueError:
                        wait = 1.0
                    log.warning("binance %s: %s, waiting %.0fs", path, last, wait)
                    self._sleep(wait)
                    continue
                if 400 <= e.code < 500:
                    break  # our request is wrong: retrying will not help
            except (OSError, ValueError) as e:
                last = f"{type(e).__name__}: {e}"
            self._sleep(min(5.0, 0.2 * 2**attempt))
        raise HistoryError(f"binance {path} failed ({last})")

    def server_time(self) -> datetime:
        """The exchange's clock (``GET /fapi/v1/time``): "now" for the start sequence."""
        return ms_to_dt(int(self.get("/fapi/v1/time", {}, 1)["serverTime"]))

    def klines(
        self, symbol: str, tf: str, start: datetime, end: datetime
    ) -> list[Bar]:
        """Closed klines of ``tf`` with open time in ``[start, end)``, oldest first."""
        step = timedelta(seconds=tf_seconds(tf))
        out: list[Bar] = []
        t = start
        while t < end:
            n = min(KLINES_MAX, -(-(end - t) // step))
            rows = self.get(
                "/fapi/v1/klines",
                {"symbol": symbol, "interval": tf, "startTime": dt_to_ms(t),
                 "endTime": dt_to_ms(end) - 1, "limit": n},
                klines_weight(n),
            )  # fmt: skip
            if not isinstance(rows, list):
                raise HistoryError("binance /fapi/v1/klines: answer is not a list")
            bars = [kline_to_bar(symbol, tf, r) for r in rows]
            bars = [b for b in bars if t <= b.ts < end]
            out.extend(bars)
            if len(rows) < n or not bars:
                break
            t = bars[-1].ts + step
        return out

    def first_trade_at(self, symbol: str, at: datetime) -> Optional[dict[str, Any]]:
        """The first aggTrade row with ``T ≥ at`` (within the hour Binance allows), or None."""
        ms = dt_to_ms(at)
        rows = self.get(
            "/fapi/v1/aggTrades",
            {"symbol": symbol, "startTime": ms, "endTime": ms + 3_599_999, "limit": 1},
            20,
        )
        return rows[0] if isinstance(rows, list) and rows else None

