"""Binance futures REST trade history, one page at a time, for gap backfill.

``GET /fapi/v1/aggTrades`` (or ``/fapi/v1/historicalTrades`` for raw trades) with ``fromId``
paging. Stdlib ``urllib`` in the event loop's executor: no new dependency, TLS verified by the
default context. It never gives up (a backfill that gives up loses trades) but it never hammers:
429 waits ``Retry-After``, 418 (IP ban) waits much longer and logs an error, other failures back
off exponentially.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any, Optional

import orjson

from connectors.frames import MalformedFrame, csv_trade_to_tick, rest_agg_to_tick
from pairstream.records import Tick

log = logging.getLogger("pairstream.binance")

PATHS = {"aggTrade": "/fapi/v1/aggTrades", "trade": "/fapi/v1/historicalTrades"}


class Throttled(Exception):
    """The server asked us to wait ``delay`` seconds before the next request."""

    def __init__(self, delay: float, reason: str):
        super().__init__(reason)
        self.delay = delay
        self.reason = reason


def _retry_after(headers: Any, default: float) -> float:
    try:
        v = float(headers.get("Retry-After"))
    except (TypeError, ValueError):
        return default
    return v if v >= 0 else default


def row_to_tick(stream: str, symbol: str, row: Any) -> Tick:
    """One REST row → Tick; raises MalformedFrame for a bad row."""
    if stream == "aggTrade":
        return rest_agg_to_tick(symbol, row)
    if not isinstance(row, dict):
        raise MalformedFrame("historicalTrades row is not an object")
    return csv_trade_to_tick(symbol, {
        "id": row.get("id"), "price": row.get("price"), "qty": row.get("qty"),
        "time": row.get("time"), "is_buyer_maker": row.get("isBuyerMaker"),
    })


class BinanceRest:
    """Fetch pages of trade history; ``await page(symbol, from_id)`` retries until it succeeds."""

    def __init__(
        self,
        rest_url: str,
        stream: str = "aggTrade",
        *,
        limit: int = 1000,
        timeout: float = 10.0,
        retry_base: float = 0.5,
        retry_cap: float = 30.0,
        ban_backoff: float = 120.0,
        api_key: Optional[str] = None,
        ssl_context: Optional[ssl.SSLContext] = None,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ):
        self.url = rest_url.rstrip("/") + PATHS[stream]
        self.stream = stream
        self.limit = limit
        self.timeout = timeout
        self.retry_base = retry_base
        self.retry_cap = retry_cap
        self.ban_backoff = ban_backoff
        self.api_key = api_key
        self._ssl = ssl_context  # default context (verifying) created on first https use
        self._sleep = sleep
        self.throttled = 0  # 429/418 answers seen (for tests and logs)

    def fetch(self, symbol: str, from_id: int) -> list[Any]:
        """One blocking request; raises Throttled or OSError/ValueError on failure."""
        q = urllib.parse.urlencode({"symbol": symbol, "fromId": from_id, "limit": self.limit})
        headers = {"User-Agent": "pairstream", "Accept": "application/json"}
        if self.api_key:
            headers["X-MBX-APIKEY"] = self.api_key
        req = urllib.request.Request(f"{self.url}?{q}", headers=headers)
        ctx = None
        if self.url.startswith("https:"):
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            ctx = self._ssl
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=ctx) as resp:
                body = resp.read()
        except urllib.error.HTTPError as e:
            if e.code == 429:
                self.throttled += 1
                raise Throttled(_retry_after(e.headers, 1.0), "429 rate limited") from None
            if e.code == 418:
                self.throttled += 1
                wait = max(self.ban_backoff, _retry_after(e.headers, self.ban_backoff))
                raise Throttled(wait, "418 IP banned") from None
            raise OSError(f"HTTP {e.code} from {self.url}") from None
        rows = orjson.loads(body)
        if not isinstance(rows, list):
            raise ValueError("response is not a JSON list")
        return rows

    async def page(self, symbol: str, from_id: int) -> list[Any]:
        """Rows with id ≥ ``from_id`` (at most ``limit``), retrying as the server allows."""
        loop = asyncio.get_running_loop()
        attempt = 0
        while True:
            try:
                return await loop.run_in_executor(None, self.fetch, symbol, from_id)
            except Throttled as t:
                if t.reason.startswith("418"):
                    log.error("binance REST %s for %s: backing off %.1fs", t.reason, symbol,
                              t.delay)
                else:
                    log.warning("binance REST %s for %s: retrying after %.1fs", t.reason,
                                symbol, t.delay)
                await self._sleep(t.delay)
            except (OSError, ValueError) as e:
                delay = min(self.retry_cap, self.retry_base * 2**attempt)
                delay *= random.uniform(0.5, 1.0)
                attempt += 1
                log.warning("binance REST %s fromId=%d failed (%s); retry %d in %.2fs",
                            symbol, from_id, e, attempt, delay)
                await self._sleep(delay)
