"""Funding settlements of perpetual futures, per symbol and in time order (no I/O here).

A :class:`FundingBook` is what the signal machine and the backtest look funding up in: filled
up front from funding-rate files (replay, backtest) or event by event from the mark price
stream (live). Readers of the file formats live in :mod:`connectors.replay`.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from datetime import datetime

from pairstream.records import Funding


class FundingBook:
    """Funding events per symbol, sorted by time; one event per (symbol, ts), the last wins."""

    def __init__(self, events: Iterable[Funding] = ()) -> None:
        self._ts: dict[str, list[datetime]] = {}
        self._ev: dict[str, list[Funding]] = {}
        for e in events:
            self.add(e)

    def add(self, e: Funding) -> None:
        ts = self._ts.setdefault(e.symbol, [])
        ev = self._ev.setdefault(e.symbol, [])
        i = bisect.bisect_left(ts, e.ts)
        if i < len(ts) and ts[i] == e.ts:
            ev[i] = e
        else:
            ts.insert(i, e.ts)
            ev.insert(i, e)

    def between(self, symbol: str, lo: datetime, hi: datetime) -> list[Funding]:
        """Events of ``symbol`` with ``lo ≤ ts < hi``."""
        ts = self._ts.get(symbol)
        if not ts:
            return []
        return self._ev[symbol][bisect.bisect_left(ts, lo) : bisect.bisect_left(ts, hi)]

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(sorted(self._ts))

    def events(self, symbol: str) -> list[Funding]:
        return list(self._ev.get(symbol, ()))

    def __len__(self) -> int:
        return sum(len(v) for v in self._ts.values())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FundingBook) and self._ev == other._ev
