"""Pair alignment: the bars of a pair's two legs → one PairBar per interval, in time order.

:class:`PairAligner` is pure (no Bytewax) and holds one pair+timeframe. The bar stage emits every
interval of a symbol in increasing time (no-trade intervals as ``filled`` bars), so normally both
legs have a bar at every ``ts``; the aligner still forward-fills a leg that skipped an interval.

An interval ``ts`` is emitted once both legs are *known* there: a leg is known at ``ts`` if it
has a bar at ``ts``, or if it has a bar before ``ts`` (the value carried forward) and a bar after
it (so none at ``ts`` can still come). Nothing is emitted before both legs' first bars. Because a
decision depends only on each leg's own ordered bars, the output is the same for any
interleaving of the two legs — hence for any worker or process count. A bar at or before the
last bar seen for its leg (a duplicate or out-of-order bar) is ignored.
"""

from __future__ import annotations

from datetime import datetime
from typing import Optional

import numpy as np

from pairstream.records import Bar, PairBar

_NEVER = object()  # the leg had no bar yet at that interval: skip it
_WAIT = object()  # the leg may still deliver a bar for that interval


class _Leg:
    __slots__ = ("pending", "last_ts", "carry")

    def __init__(self) -> None:
        self.pending: dict[datetime, float] = {}  # bars not yet emitted
        self.last_ts: Optional[datetime] = None  # newest bar seen
        self.carry: Optional[float] = None  # close of the newest decided bar (forward fill)


class PairAligner:
    """Aligns the legs ``y`` and ``x`` of one pair and timeframe; picklable, small state."""

    def __init__(self, y: str, x: str, tf: str, pair: Optional[str] = None) -> None:
        self.y, self.x, self.tf = y, x, tf
        self.pair = pair or f"{y}/{x}"
        self._legs = {y: _Leg(), x: _Leg()}
        self.last_emitted: Optional[datetime] = None
        self.ignored = 0  # duplicate / out-of-order bars dropped

    @staticmethod
    def _value(leg: _Leg, ts: datetime) -> object:
        """Close of ``leg`` at ``ts``; ``_NEVER`` before its first bar; ``_WAIT`` if not known."""
        if ts in leg.pending:
            return leg.pending[ts]
        if leg.last_ts is not None and leg.last_ts > ts:
            return _NEVER if leg.carry is None else leg.carry
        return _WAIT

    def push(self, bar: Bar) -> list[PairBar]:
        """Add one bar of either leg; return the PairBars it completes (increasing ts)."""
        leg = self._legs.get(bar.symbol)
        if leg is None or bar.tf != self.tf:
            raise ValueError(f"bar {bar.symbol} {bar.tf} does not belong to {self.pair} {self.tf}")
        if leg.last_ts is not None and bar.ts <= leg.last_ts:
            self.ignored += 1
            return []
        leg.last_ts = bar.ts
        leg.pending[bar.ts] = bar.close
        ly, lx = self._legs[self.y], self._legs[self.x]
        out: list[PairBar] = []
        while ly.pending or lx.pending:
            # the earliest undecided interval; every earlier one is already emitted or dropped
            # (a leg's pending bars arrive in increasing ts, so its first key is its earliest)
            ts = min(next(iter(lg.pending)) for lg in (ly, lx) if lg.pending)
            vy, vx = self._value(ly, ts), self._value(lx, ts)
            if vy is _WAIT or vx is _WAIT:
                break
            if vy is not _NEVER and vx is not _NEVER:
                out.append(PairBar(pair=self.pair, tf=self.tf, ts=ts, y=vy, x=vx))
                self.last_emitted = ts
            for lg in (ly, lx):
                if ts in lg.pending:
                    lg.carry = lg.pending.pop(ts)
        return out


def align_closes(
    ta: np.ndarray, ca: np.ndarray, tb: np.ndarray, cb: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What :class:`PairAligner` emits over two whole series, as arrays: ``(ts, a, b)``.

    ``ta``/``tb`` are each leg's increasing bar times (any sortable numbers), ``ca``/``cb`` its
    closes. Over a finished sample the aligner's rule is: every interval in which either leg has
    a bar, from the later first bar to the earlier last bar (after it the shorter leg is never
    *known*), a leg without a bar there carrying its previous close forward.
    """
    if ta.size == 0 or tb.size == 0:
        empty = np.empty(0)
        return np.empty(0, dtype=ta.dtype), empty, empty
    lo, hi = max(ta[0], tb[0]), min(ta[-1], tb[-1])
    ts = np.union1d(ta, tb)
    ts = ts[(ts >= lo) & (ts <= hi)]
    ia = np.searchsorted(ta, ts, side="right") - 1
    ib = np.searchsorted(tb, ts, side="right") - 1
    return ts, ca[ia], cb[ib]
