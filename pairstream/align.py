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

Bounded memory: a stuck leg (its feed stalled, its symbol delisted) would make the other leg's
bars pile up. Once a leg holds more than ``max_pending`` undecided bars, the earliest interval
is decided with what is known: the stuck leg forward-filled with its last close (or skipped
before its first bar), counted in ``forced``. A bar of the stuck leg arriving later for an
interval already decided only updates its carried close (counted in ``late``). The output is
still deterministic for a given order of each leg's bars, and identical for any interleaving
as long as neither leg runs ``max_pending`` bars ahead of the other.
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


# Undecided bars per leg before the other leg is forward-filled: 5.5 h of 1s bars (~3 MiB), so
# a catch-up after a long outage (one leg's backfill finishing first) never triggers it.
MAX_PENDING = 20_000


class PairAligner:
    """Aligns the legs ``y`` and ``x`` of one pair and timeframe; picklable, small state."""

    # Class-level defaults: aligners pickled (recovery snapshots) before these existed load.
    max_pending = MAX_PENDING
    forced = 0  # intervals decided with a stuck leg forward-filled (``max_pending`` reached)
    late = 0  # bars of a stuck leg that came after their interval was decided
    _decided: Optional[datetime] = None  # newest interval decided (emitted or skipped)

    def __init__(self, y: str, x: str, tf: str, pair: Optional[str] = None,
                 max_pending: int = MAX_PENDING) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        self.y, self.x, self.tf = y, x, tf
        self.pair = pair or f"{y}/{x}"
        self._legs = {y: _Leg(), x: _Leg()}
        self.last_emitted: Optional[datetime] = None
        self.ignored = 0  # duplicate / out-of-order bars dropped
        self.max_pending = max_pending

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
        out: list[PairBar] = []
        self.push_to(bar, out)
        return out

    def push_to(self, bar: Bar, out: list[PairBar]) -> None:
        """:meth:`push` appending to ``out``: no list per bar on the flow's per-batch path."""
        leg = self._legs.get(bar.symbol)
        if leg is None or bar.tf != self.tf:
            raise ValueError(f"bar {bar.symbol} {bar.tf} does not belong to {self.pair} {self.tf}")
        ts = bar.ts
        last = leg.last_ts
        if last is not None and ts <= last:
            self.ignored += 1
            return
        leg.last_ts = ts
        decided = self._decided
        if decided is not None and ts <= decided:
            leg.carry = bar.close  # its interval went out forward-filled; carry the real close
            self.late += 1
            return
        ly = self._legs[self.y]
        other = self._legs[self.x] if leg is ly else ly
        if other is not leg:
            # Fast paths for the common cases, each exactly what :meth:`_drain` would do,
            # without its generator, min and max: the bars of one leg's batch wait for the
            # other leg's, which then complete them one by one.
            lp, op = leg.pending, other.pending
            if not op:
                first = next(iter(lp)) if lp else ts  # the earliest undecided interval
                if (other.last_ts is None or other.last_ts <= first) and len(lp) < self.max_pending:
                    lp[ts] = bar.close  # the other leg may still come at ``first``: wait
                    return
            elif not lp and next(iter(op)) == ts and len(op) <= self.max_pending + 1:
                close, other.carry = bar.close, op.pop(ts)  # the other leg's bar at ts waited
                leg.carry = close
                if leg is ly:
                    out.append(PairBar(self.pair, self.tf, ts, close, other.carry))
                else:
                    out.append(PairBar(self.pair, self.tf, ts, other.carry, close))
                self.last_emitted = self._decided = ts
                return  # the next waiting bar is after ts: this leg may still come there
        leg.pending[ts] = bar.close
        self._drain(out)

    def _drain(self, out: list[PairBar]) -> None:
        """Decide intervals from the earliest undecided one while both legs are known there."""
        ly, lx = self._legs[self.y], self._legs[self.x]
        while ly.pending or lx.pending:
            # the earliest undecided interval; every earlier one is already emitted or dropped
            # (a leg's pending bars arrive in increasing ts, so its first key is its earliest)
            ts = min(next(iter(lg.pending)) for lg in (ly, lx) if lg.pending)
            vy, vx = self._value(ly, ts), self._value(lx, ts)
            if vy is _WAIT or vx is _WAIT:
                if max(len(ly.pending), len(lx.pending)) <= self.max_pending:
                    break
                vy, vx = _filled(ly, vy), _filled(lx, vx)  # a leg is stuck: forward-fill it
                self.forced += 1
            if vy is not _NEVER and vx is not _NEVER:
                out.append(PairBar(pair=self.pair, tf=self.tf, ts=ts, y=vy, x=vx))
                self.last_emitted = ts
            self._decided = ts
            for lg in (ly, lx):
                if ts in lg.pending:
                    lg.carry = lg.pending.pop(ts)

def _filled(leg: _Leg, v: object) -> object:
    """A stuck leg's value: its carried close, or ``_NEVER`` before its first bar."""
    if v is not _WAIT:
        return v
    return _NEVER if leg.carry is None else leg.carry


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
