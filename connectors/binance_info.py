"""Start-up check of the configured symbols against ``GET /fapi/v1/exchangeInfo``.

A symbol Binance does not list (``BTCUSD``), one not ``TRADING`` or one that is not a USD-M
perpetual (a quarterly ``BTCUSDT_210924``) would subscribe fine and then receive nothing,
forever: the flow refuses to start instead, with one line naming each such symbol and the
closest listed perpetuals.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any, Optional

from connectors.binance_budget import RestBudget
from connectors.binance_rest import BinanceRest, RestError

INFO_PATH = "/fapi/v1/exchangeInfo"


class SymbolError(Exception):
    """A configured symbol the exchange cannot stream (one line, for the user)."""


def check_symbols(info: Any, symbols: Iterable[str]) -> None:
    """Raise SymbolError naming every symbol of ``symbols`` that is not a trading perpetual."""
    listed = info.get("symbols") if isinstance(info, dict) else None
    if not isinstance(listed, list):
        raise SymbolError("exchangeInfo: the response has no symbol list")
    by_name = {d.get("symbol"): d for d in listed if isinstance(d, dict)}
    live = sorted(n for n, d in by_name.items()
                  if d.get("status") == "TRADING" and d.get("contractType") == "PERPETUAL")
    problems = []
    for sym in symbols:
        d = by_name.get(sym)
        if d is None:
            why = "not listed on Binance USD-M futures"
        elif d.get("status") != "TRADING":
            why = f"status {d.get('status')!r}, not 'TRADING'"
        elif d.get("contractType") != "PERPETUAL":
            why = f"contract type {d.get('contractType')!r}, not a perpetual"
        else:
            continue
        close = difflib.get_close_matches(sym, live, n=3, cutoff=0.6)
        hint = f" (closest: {', '.join(close)})" if close else ""
        problems.append(f"{sym}: {why}{hint}")
    if problems:
        raise SymbolError("symbols: " + "; ".join(problems))


def verify_symbols(rest_url: str, symbols: Iterable[str], *,
                   budget: Optional[RestBudget] = None, attempts: Optional[int] = None,
                   timeout: float = 5.0, retry_base: float = 0.5) -> None:
    """Fetch exchangeInfo (weight 1) and :func:`check_symbols`.

    An unreachable exchange (connection error, timeout, 5xx) is retried with backoff and logged,
    forever by default: a flow restarted during an outage waits for Binance instead of exiting.
    A 4xx answer (or ``attempts`` failures) is one :class:`SymbolError` line.
    """
    rest = BinanceRest(rest_url, budget=budget, timeout=timeout, retry_base=retry_base,
                       retry_cap=30.0)
    try:
        info = rest.get_blocking(INFO_PATH, {}, attempts=attempts)
    except (RestError, OSError, ValueError) as e:
        raise SymbolError(f"source.rest_url: cannot read {rest_url}{INFO_PATH} to check the "
                          f"symbols ({e})") from None
    check_symbols(info, symbols)
