"""Binance USD-M futures REST: any GET under the shared weight budget, and trade-history pages.

Every request takes its weight (:func:`request_weight`) from the process-wide
:class:`~connectors.binance_budget.RestBudget` before it is sent and reports the server's
``X-MBX-USED-WEIGHT-1M`` back, so all symbols and connections of a process share one budget.
A 429 pauses every caller for its ``Retry-After``; a 418 (IP ban) pauses them for at least
``ban_backoff`` and logs an error. Other failures back off exponentially per request. Stdlib
``urllib`` (blocking, run in the event loop's executor for async callers): no new dependency,
TLS verified by the default context.

    rest = BinanceRest("https://fapi.binance.com")                     # shared budget
    rows = await rest.get("/fapi/v1/klines", {"symbol": "BTCUSDT", "interval": "1m",
                                              "limit": 1500})          # weight 10, retried
    info = rest.get_blocking("/fapi/v1/exchangeInfo", {}, attempts=3)  # sync, bounded
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any, Optional

import orjson

from connectors.binance_budget import RestBudget, shared_budget
from connectors.frames import MalformedFrame, csv_trade_to_tick, rest_agg_to_tick
from pairstream.records import Tick

log = logging.getLogger("pairstream.binance")

PATHS = {"aggTrade": "/fapi/v1/aggTrades", "trade": "/fapi/v1/historicalTrades"}
# Binance USD-M futures REST weights (fixed ones) and the largest ``limit`` of each endpoint.
WEIGHTS = {
    "/fapi/v1/aggTrades": 20,
    "/fapi/v1/historicalTrades": 20,
    "/fapi/v1/trades": 5,
    "/fapi/v1/exchangeInfo": 1,
    "/fapi/v1/ping": 1,
    "/fapi/v1/time": 1,
}
PAGE_LIMITS = {"/fapi/v1/aggTrades": 1000, "/fapi/v1/historicalTrades": 500,
               "/fapi/v1/trades": 1000, "/fapi/v1/klines": 1500}
KEYED = frozenset({"/fapi/v1/historicalTrades"})  # need the X-MBX-APIKEY header


def request_weight(path: str, params: Mapping[str, Any]) -> int:
    """Binance's weight of one GET (klines: by ``limit``, default 500)."""
    if path == "/fapi/v1/klines":
        limit = int(params.get("limit", 500))
        return 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10
    try:
        return WEIGHTS[path]
    except KeyError:
        raise ValueError(f"no known request weight for {path}; pass weight=") from None


class RestError(Exception):
    """A failed request (HTTP status other than 200, 429, 418; bad body; network)."""

    def __init__(self, message: str, status: Optional[int] = None):
        super().__init__(message)
        self.status = status


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


def _retry_after(headers: Any, default: float) -> float:
    try:
        v = float(headers.get("Retry-After"))
    except (TypeError, ValueError, AttributeError):
        return default
    return v if v >= 0 else default


class BinanceRest:
    """GETs against ``rest_url`` under ``budget``; :meth:`page` fetches trade history."""

    def __init__(
        self,
        rest_url: str,
        stream: str = "aggTrade",
        *,
        budget: Optional[RestBudget] = None,
        limit: Optional[int] = None,
        timeout: float = 10.0,
        retry_base: float = 0.5,
        retry_cap: float = 30.0,
        ban_backoff: float = 120.0,
        api_key: Optional[str] = None,
        ssl_context: Optional[ssl.SSLContext] = None,
    ):
        self.base = rest_url.rstrip("/")
        self.stream = stream
        self.path = PATHS[stream]
        top = PAGE_LIMITS[self.path]
        self.limit = min(limit or top, top)  # historicalTrades: at most 500 rows
        self.budget = budget if budget is not None else shared_budget()
        self.timeout = timeout
        self.retry_base = retry_base
        self.retry_cap = retry_cap
        self.ban_backoff = ban_backoff
        self.api_key = api_key
        self._ssl = ssl_context  # default context (verifying) created on first https use
        self.throttled = 0  # 429/418 answers seen (for tests and logs)

    # -- one request ---------------------------------------------------------------------------

    def _send(self, path: str, params: Mapping[str, Any]) -> tuple[int, Any, bytes]:
        """One blocking GET: (status, headers, body); raises OSError on network failure."""
        q = urllib.parse.urlencode(params)
        headers = {"User-Agent": "pairstream", "Accept": "application/json"}
        if path in KEYED:
            if not self.api_key:
                raise RestError(f"{path} needs an API key (X-MBX-APIKEY)")
            headers["X-MBX-APIKEY"] = self.api_key
        req = urllib.request.Request(f"{self.base}{path}?{q}" if q else f"{self.base}{path}",
                                     headers=headers)
        ctx = None
        if self.base.startswith("https:"):
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            ctx = self._ssl
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=ctx) as resp:
                return resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read() if e.fp is not None else b""

    def _outcome(self, path: str, status: int, headers: Any, body: bytes) -> Any:
        """The parsed body of a 200; a 429/418 pauses the budget and raises RestError."""
        if status == 200:
            try:
                return orjson.loads(body)
            except orjson.JSONDecodeError:
                raise RestError(f"{path}: response is not JSON", status) from None
        if status in (429, 418):
            self.throttled += 1
            if status == 429:
                wait = _retry_after(headers, 1.0)
                log.warning("binance REST 429 rate limited on %s: every request waits %.1fs",
                            path, wait)
            else:
                wait = max(self.ban_backoff, _retry_after(headers, self.ban_backoff))
                log.error("binance REST 418 IP banned on %s: every request waits %.1fs", path,
                          wait)
            self.budget.pause(wait, f"{status}")
            raise RestError(f"HTTP {status}", status)
        snippet = body[:200].decode(errors="replace")
        raise RestError(f"HTTP {status} from {path}: {snippet}", status)

    def _attempt(self, path: str, params: Mapping[str, Any]) -> Any:
        """Send (the budget already granted) and interpret; releases the budget slot."""
        headers = None
        try:
            status, headers, body = self._send(path, params)
        finally:
            self.budget.release(headers)
        return self._outcome(path, status, headers, body)

    def _delay(self, attempt: int) -> float:
        return min(self.retry_cap, self.retry_base * 2**min(attempt, 30)) * random.uniform(0.5, 1)

    # -- public --------------------------------------------------------------------------------

    async def get(self, path: str, params: Mapping[str, Any], *,
                  weight: Optional[int] = None) -> Any:
        """The JSON of ``GET path?params``, retried until it succeeds (throttles: globally)."""
        w = weight if weight is not None else request_weight(path, params)
        loop = asyncio.get_running_loop()
        attempt = 0
        while True:
            await self.budget.acquire(w)
            try:
                return await loop.run_in_executor(None, self._attempt, path, params)
            except RestError as e:
                if e.status in (429, 418):
                    continue  # the budget is paused: the next acquire waits
                err: Exception = e
            except (OSError, ValueError) as e:
                err = e
            delay = self._delay(attempt)
            attempt += 1
            log.warning("binance REST %s %s failed (%s); retry %d in %.2fs", path,
                        _brief(params), err, attempt, delay)
            await asyncio.sleep(delay)

    def get_blocking(self, path: str, params: Mapping[str, Any], *,
                     weight: Optional[int] = None, attempts: Optional[int] = None) -> Any:
        """:meth:`get` for synchronous callers (start-up): a 4xx other than 429/418 raises at
        once; after ``attempts`` other failures the last one is raised."""
        w = weight if weight is not None else request_weight(path, params)
        attempt = 0
        while True:
            self.budget.acquire_blocking(w)
            try:
                return self._attempt(path, params)
            except RestError as e:
                if e.status in (429, 418):
                    continue  # the budget is paused: the next acquire waits (not an attempt)
                if e.status is not None and 400 <= e.status < 500:
                    raise  # our request is wrong (bad symbol, no key...): retrying cannot help
                err: Exception = e
            except (OSError, ValueError) as e:
                err = e
            attempt += 1
            if attempts is not None and attempt >= attempts:
                raise err
            delay = self._delay(attempt - 1)
            log.warning("binance REST %s failed (%s); retry %d in %.2fs", path, err, attempt,
                        delay)
            time.sleep(delay)

    async def page(self, symbol: str, from_id: int) -> list[Any]:
        """Trade-history rows with id ≥ ``from_id`` (at most ``limit``), retried until served."""
        while True:
            rows = await self.get(self.path, {"symbol": symbol, "fromId": from_id,
                                              "limit": self.limit})
            if isinstance(rows, list):
                return rows
            log.warning("binance REST %s for %s: response is not a JSON list; retrying",
                        self.path, symbol)
            await asyncio.sleep(self.retry_base)


def _brief(params: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in params.items() if k in ("symbol", "fromId"))
