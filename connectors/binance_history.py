"""Binance futures history for the start sequence: server time, 1m klines, trades by time.

These calls run once, blocking, before the flow goes live, through
:meth:`connectors.binance_rest.BinanceRest.get_blocking`: the process-wide weight budget
(klines weigh 1/2/5/10 by ``limit``, aggTrades 20, time 1) and its 429/418 handling are the
backfill's.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any, Optional

from connectors.binance_rest import BinanceRest, RestError
from connectors.frames import dt_to_ms, ms_to_dt
from pairstream.config import tf_seconds
from pairstream.records import Bar

log = logging.getLogger("pairstream.start")

KLINES_MAX = 1500  # rows per klines request (Binance's maximum)


class HistoryError(RuntimeError):
    """The exchange refused a history request (one line)."""


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
    """Blocking REST calls of the start sequence, under the process-wide weight budget."""

    def __init__(self, rest_url: str, rest: Optional[BinanceRest] = None) -> None:
        self.rest = rest if rest is not None else BinanceRest(rest_url)

    def get(self, path: str, params: dict[str, Any], weight: int) -> Any:
        """One GET (budgeted, throttling honoured; an unreachable exchange is retried with
        backoff and logged until it answers); a 4xx answer is one :class:`HistoryError`."""
        try:
            return self.rest.get_blocking(path, params, weight=weight)
        except (RestError, OSError, ValueError) as e:
            raise HistoryError(f"binance {path} failed ({e})") from None

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

