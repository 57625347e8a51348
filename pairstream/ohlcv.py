"""Exact event-time OHLCV accumulation: ticks → 1s bars → cascade to 1m, 5m, ... (no Bytewax).

Why exact: Binance's klines are sums of decimal strings, and ours must equal them to the last
digit. Quantities are accumulated as integers scaled by 10**8 (every Binance quantity has at most
8 decimals), quote volume as Σ price_scaled·qty_scaled (scale 10**16, an exact Python int), and
only converted on output with int / int, which CPython rounds correctly. Since ``float(s)`` of a
decimal string is also correctly rounded, ``float(our) == float(binance_string)`` whenever the
decimal values are equal. Prices need no scaling: O/H/L/C are chosen, never computed, so they
are the very floats parsed from the exchange's strings. 1m and 5m bars are rolled up from the
exact accumulators, never from the rounded floats. As in Binance's klines, a longer bar's
open/high/low come from its *traded* sub-bars only (a filled sub-bar only carries the previous
close), and it is ``filled`` only if every sub-bar was.

Event time and lateness (:class:`SymbolBars`, one per symbol): the watermark is driven by data
progress only, ``max(latest tick time, latest Progress time) − lateness``. Every 1s interval that
ends at or before the watermark is closed and emitted, in strictly increasing order, including
``filled`` bars (O=H=L=C=previous close, volumes 0, trades 0) for silent seconds after the
symbol's first trade. A tick whose second is already closed is *late*: it is counted and not
applied, so no emitted bar ever changes and no (symbol, tf, ts) is emitted twice. The
watermark is re-evaluated after every item, so which ticks are late depends only on the order
of the symbol's items, never on batching or wall time. Open and close are the prices of the
earliest and latest tick by (time, trade id), so any arrival order within the allowance gives
identical bars.

Edge policy: a symbol's first bar of every timeframe starts at the interval holding its first
tick; no filled bars before the first trade. A higher-timeframe bar whose interval began before
the first trade is emitted as a *partial* bar over the seconds that exist (stamped with the
interval start, like every bar); it does not equal the exchange's kline, and cannot. At end of
input (:meth:`SymbolBars.flush`) every open bar is emitted, partial if need be, and the closed
boundary jumps to the end of the longest open interval, so a resumed run can never emit a
second version of a flushed bar: ticks before that boundary count as late.

:class:`Rollup` does the cascade alone, on a stream of already-built base bars (the replay of
Binance 1m kline files): kline fields have at most 8 decimals, so ``round(x · 10**8)`` of the
float recovers the exact decimal (:func:`to_scaled`), and 5m bars rolled up from official 1m
klines equal the sums of their strings (exactly, while a value has ≤ 15 significant digits).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from operator import mul
from typing import Optional, Union

import numpy as np

from pairstream.config import tf_seconds
from pairstream.records import EPOCH, Bar, Health, Tick, TickBatch

UTC = timezone.utc
_US = timedelta(microseconds=1)
_SEC_US = 1_000_000
_SEC = timedelta(seconds=1)
QTY_DIGITS = 8
QTY_SCALE = 10**QTY_DIGITS  # volumes: integers in units of 1e-8
QUOTE_SCALE = QTY_SCALE * QTY_SCALE  # quote volume: price·qty in units of 1e-16
_FAST_LIMIT = float(2**50)  # below it, x·1e8 has an error < 0.25, so round() is exact
_NEVER = -(1 << 62)

Out = Union[Bar, Health]


def to_scaled(x: float, digits: int = QTY_DIGITS) -> int:
    """The exact integer ``x · 10**digits`` of a float parsed from a ≤ ``digits``-decimal string.

    Fast path: float multiply and round (exact below 2**50). Larger values go through
    ``repr`` (the shortest string that round-trips, i.e. the exchange's string while it has at
    most 15-17 significant digits) and Decimal.
    """
    v = x * 10.0**digits
    if -_FAST_LIMIT < v < _FAST_LIMIT:
        return round(v)
    return int(Decimal(repr(x)).scaleb(digits).to_integral_value())


def _scaled_column(x: np.ndarray, digits: int = QTY_DIGITS) -> np.ndarray:
    """:func:`to_scaled` of every element: int64 when all are on the fast path, else objects."""
    v = x * 10.0**digits
    if len(v) and np.abs(v).max() < _FAST_LIMIT:
        return np.rint(v).astype(np.int64)  # round half to even, like round()
    return np.array([to_scaled(f, digits) for f in x.tolist()], dtype=object)


_HALF = 25  # |scaled price|, |scaled qty| < 2**50 on the fast path: two 25-bit halves each
_LOW = (1 << _HALF) - 1
_INT64_RUN = 1 << 11  # ticks per second whose int64 partial sums cannot overflow (< 2**62)


def _second_sums(
    ps: np.ndarray, qs: np.ndarray, maker: np.ndarray, idx: np.ndarray, ends: np.ndarray
) -> tuple[list[int], list[int], list[int]]:
    """Σq, Σps·q and Σ taker q of every run ``[idx[k], ends[k])``, as exact Python ints.

    Integer sums are exact in any order, so int64 ``reduceat`` gives the very ints the
    reference's sequential Python sums give, as long as nothing overflows: ``ps·q`` (up to
    2**100) is summed as three int64 columns of 25-bit-half products (each < 2**51 a tick) and
    recombined. Runs longer than ``_INT64_RUN`` ticks, and object (huge) columns, are summed
    in Python.
    """
    taker = np.where(maker, 0, qs)
    if ps.dtype != np.int64 or qs.dtype != np.int64:
        bounds = [*idx.tolist(), len(qs)]
        p_l, q_l, t_l = ps.tolist(), qs.tolist(), taker.tolist()
        spans = list(zip(bounds, bounds[1:]))
        return (
            [sum(q_l[a:z]) for a, z in spans],
            [sum(map(mul, p_l[a:z], q_l[a:z])) for a, z in spans],
            [sum(t_l[a:z]) for a, z in spans],
        )
    p1, p0 = ps >> _HALF, ps & _LOW
    q1, q0 = qs >> _HALF, qs & _LOW
    hi = np.add.reduceat(p1 * q1, idx).tolist()
    mid = np.add.reduceat(p1 * q0 + p0 * q1, idx).tolist()
    lo = np.add.reduceat(p0 * q0, idx).tolist()
    vol = np.add.reduceat(qs, idx).tolist()
    tbv = np.add.reduceat(taker, idx).tolist()
    qv = [(h << 2 * _HALF) + (m << _HALF) + x for h, m, x in zip(hi, mid, lo)]
    long = np.flatnonzero(ends - idx > _INT64_RUN).tolist()
    if long:
        p_l, q_l, t_l = ps.tolist(), qs.tolist(), taker.tolist()
        for k in long:
            a, z = int(idx[k]), int(ends[k])
            vol[k] = sum(q_l[a:z])
            qv[k] = sum(map(mul, p_l[a:z], q_l[a:z]))
            tbv[k] = sum(t_l[a:z])
    return vol, qv, tbv


def to_us(ts: datetime) -> int:
    """Aware datetime → integer epoch microseconds (exact)."""
    return (ts - EPOCH) // _US


def sec_to_dt(sec: int) -> datetime:
    return EPOCH + timedelta(seconds=sec)


def tf_levels(timeframes: Sequence[str], base: int) -> list[tuple[str, int]]:
    """(label, seconds) of every timeframe longer than ``base``, each a multiple of the one before.

    Timeframes shorter than the base cannot be built from it and are left out; the caller
    decides whether the base itself is emitted.
    """
    out: list[tuple[str, int]] = []
    prev = base
    for tf in timeframes:
        secs = tf_seconds(tf)
        if secs <= base:
            continue
        if secs % prev:
            raise ValueError(f"timeframe {tf!r} ({secs}s) is not a multiple of {prev}s")
        out.append((tf, secs))
        prev = secs
    return out


# An exact bar in flight: [start, end, open, high, low, close, vol, qv, trades, tbv, filled]
# (start/end in epoch seconds, vol/tbv scaled by QTY_SCALE, qv by QUOTE_SCALE).
_ExactBar = list


def _to_bar(symbol: str, tf: str, a: _ExactBar, ts: Optional[datetime] = None) -> Bar:
    """The output bar of accumulator ``a``: exact ints divided once, correctly rounded."""
    vol = a[6]
    return Bar(
        symbol,
        tf,
        sec_to_dt(a[0]) if ts is None else ts,
        a[2],
        a[3],
        a[4],
        a[5],
        vol / QTY_SCALE,
        a[7] / QUOTE_SCALE,
        a[8],
        a[9] / QTY_SCALE,
        a[7] / (vol * QTY_SCALE) if vol else a[5],  # vwap; an empty bar's is its close
        a[10],
    )


def _exact(bar: Bar, start: int, size: int) -> _ExactBar:
    """A built bar back as an exact accumulator (kline fields have at most 8 decimals)."""
    return [
        start,
        start + size,
        bar.open,
        bar.high,
        bar.low,
        bar.close,
        to_scaled(bar.volume),
        to_scaled(bar.quote_volume) * QTY_SCALE,
        bar.trades,
        to_scaled(bar.taker_buy_volume),
        bar.filled,
    ]  # fmt: skip


class _Level:
    """The open bar of one timeframe, fed contiguous bars of the timeframe below it."""

    __slots__ = ("label", "size", "acc")

    def __init__(self, label: str, size: int) -> None:
        self.label = label
        self.size = size
        self.acc: Optional[_ExactBar] = None

    def push(self, b: _ExactBar) -> list[_ExactBar]:
        """Add bar ``b`` (in time order); return the bars of this level it completes."""
        done = []
        a = self.acc
        if a is not None and b[0] >= a[1]:  # input gap past our end (resume after flush, Rollup)
            done.append(a)
            a = None
        if a is None:
            start = b[0] - b[0] % self.size
            a = [start, start + self.size, *b[2:]]
            self.acc = a
        elif b[10]:
            pass  # a filled bar adds nothing: its prices are the close carried from before
        elif a[10]:
            a[2:11] = b[2:11]  # first traded sub-bar: the prices are its own, like a kline's
        else:
            if b[3] > a[3]:
                a[3] = b[3]
            if b[4] < a[4]:
                a[4] = b[4]
            a[5] = b[5]
            a[6] += b[6]
            a[7] += b[7]
            a[8] += b[8]
            a[9] += b[9]
        if b[1] >= a[1]:
            done.append(a)
            self.acc = None
        return done


class _Cascade:
    """Shared roll-up machinery: emit a bar of level i and feed it to level i + 1."""

    symbol: str
    levels: list[_Level]
    out: list[Out]

    def _emit_level(self, i: int, a: _ExactBar) -> None:
        levels = self.levels
        self.out.append(_to_bar(self.symbol, levels[i].label, a))
        if i + 1 < len(levels):
            for done in levels[i + 1].push(a):
                self._emit_level(i + 1, done)

    def _feed(self, b: _ExactBar) -> None:
        if self.levels:
            for done in self.levels[0].push(b):
                self._emit_level(0, done)

    def _flush_levels(self) -> int:
        """Emit every open (partial) bar, shortest first; return the latest end emitted."""
        end = _NEVER
        for i, level in enumerate(self.levels):
            a = level.acc
            if a is not None:
                level.acc = None
                end = max(end, a[1])
                self._emit_level(i, a)
        return end

    def drain(self) -> list[Out]:
        """Records produced since the last call (bars in emission order, then health)."""
        out, self.out = self.out, []
        return out


class SymbolBars(_Cascade):
    """Event-time bars of one symbol: 1s buckets, watermark, late ticks and the cascade.

    Feed :meth:`add_tick` / :meth:`add_progress` / :meth:`flush`, then :meth:`drain` the
    produced :class:`Bar` (every configured timeframe) and ``late_ticks`` :class:`Health`
    records. ``late_ticks`` rows are stamped with the closed boundary (watermark second) at the
    late tick's arrival and carry the count of late ticks seen while the boundary sat there;
    a later row for the same stamp repeats the running count, so an UPSERT on
    (ts, symbol, metric) keeps the total. The object is picklable and its size is bounded by
    the lateness (open seconds) plus one open bar per timeframe.
    """

    def __init__(self, symbol: str, timeframes: Sequence[str], lateness: timedelta) -> None:
        if lateness < timedelta(0):
            raise ValueError("lateness must not be negative")
        self.symbol = symbol
        self.timeframes = tuple(timeframes)
        self.emit_1s = any(tf_seconds(tf) == 1 for tf in timeframes)
        self.base_label = next((tf for tf in timeframes if tf_seconds(tf) == 1), "1s")
        self.levels = [_Level(label, secs) for label, secs in tf_levels(timeframes, 1)]
        self.lateness_us = lateness // _US
        self.buckets: dict[int, list] = {}  # second → [o, h, l, c, vol, qv, n, tbv, o_us, o_id,
        #                                                c_us, c_id]
        self.closed_until = _NEVER  # every second before it is emitted (or was never started)
        self.max_us = _NEVER
        self.progress_us = _NEVER
        self.last_close: Optional[float] = None
        self.late_total = 0
        self._late_sec = _NEVER
        self._late_n = 0
        self._late_dirty = False
        self.out: list[Out] = []

    # -- input ------------------------------------------------------------------------------

    def resume(
        self, cut: datetime, last_close: Optional[float], history: Sequence[Bar] = ()
    ) -> None:
        """Start where a previous run (or the exchange's history) left off, before any tick.

        ``history``: complete bars of the first timeframe above 1s (e.g. 1m klines or stored
        bars), oldest first, ending at or before ``cut``: emitted and rolled up into the longer
        timeframes like bars built here, so a longer bar open at ``cut`` continues with the
        trades. Every second before ``cut`` counts as closed; silent seconds from ``cut`` on are
        filled with ``last_close``.
        """
        if self.buckets or self.closed_until != _NEVER:
            raise ValueError("resume: the bars of this symbol have already started")
        cut_s = to_us(cut) // _SEC_US
        if history:
            if not self.levels or history[0].tf != self.levels[0].label:
                raise ValueError(f"resume: history bars must be {self.levels[0].label!r} bars")
            size = self.levels[0].size
            for bar in history:
                start = to_us(bar.ts) // _SEC_US
                if start + size > cut_s:
                    raise ValueError("resume: a history bar ends after the cut")
                self._emit_level(0, _exact(bar, start, size))
        self.closed_until = cut_s
        self.last_close = last_close

    def add_tick(self, t: Tick) -> None:
        us = (t.ts - EPOCH) // _US
        sec = us // _SEC_US
        if sec < self.closed_until:
            self._late()
            return
        p = t.price
        v = t.qty * 1e8
        q = round(v) if v < _FAST_LIMIT else to_scaled(t.qty)
        v = p * 1e8
        ps = round(v) if v < _FAST_LIMIT else to_scaled(p)
        tid = t.trade_id
        b = self.buckets.get(sec)
        if b is None:
            self.buckets[sec] = [
                p, p, p, p, q, ps * q, t.last_id - t.first_id + 1,
                0 if t.buyer_maker else q, us, tid, us, tid,
            ]  # fmt: skip
        else:
            if p > b[1]:
                b[1] = p
            elif p < b[2]:
                b[2] = p
            b[4] += q
            b[5] += ps * q
            b[6] += t.last_id - t.first_id + 1
            if not t.buyer_maker:
                b[7] += q
            if us > b[10] or (us == b[10] and tid > b[11]):
                b[3] = p
                b[10] = us
                b[11] = tid
            elif us < b[8] or (us == b[8] and tid < b[9]):
                b[0] = p
                b[8] = us
                b[9] = tid
        if us > self.max_us:
            self.max_us = us
            if us > self.progress_us:
                new = (us - self.lateness_us) // _SEC_US
                if new > self.closed_until:
                    self._close_to(new)

    def add_batch(self, tb: TickBatch) -> None:
        """The ticks of ``tb``, in order: exactly what :meth:`add_tick` on each would do.

        Vectorised: tick ``i`` is late iff its second is before the boundary its predecessors
        had closed, ``max(closed_until, (max(us_0..us_{i-1}) − lateness) // 1 s)`` counting
        only times past ``max(progress, max_us)`` (a late tick never moves the boundary, so it
        may sit in the running max). The other ticks only ever land in still-open seconds, so
        they can all be bucketed first and the seconds closed once, in order, at the end: the
        same bars in the same order (``tests/flows/test_ohlcv_batch.py``).
        """
        n = len(tb)
        if n == 0:
            return
        us = tb.ts_us
        sec = us // _SEC_US
        lat = self.lateness_us
        base = max(self.progress_us, self.max_us)
        # before[i]: the newest tick time ahead of tick i that moved the watermark; a time not
        # past max(progress, max_us) never does (that watermark is already applied).
        before = np.full(n, _NEVER, dtype=np.int64)
        np.maximum.accumulate(us[:-1], out=before[1:])
        before[before <= base] = _NEVER
        closed = np.maximum((before - lat) // _SEC_US, self.closed_until)
        late = sec < closed
        cols = (tb.price, tb.qty, tb.trade_id, tb.first_id, tb.last_id, tb.buyer_maker)
        if late.any():
            for stamp in closed[late].tolist():
                self._late(stamp)
            keep = ~late
            if not keep.any():
                return
            us, sec = us[keep], sec[keep]
            cols = tuple(c[keep] for c in cols)
        self._bucket(us, sec, *cols)
        top = int(us.max())
        if top > self.max_us:
            self.max_us = top
            if top > self.progress_us:
                new = (top - lat) // _SEC_US
                if new > self.closed_until:
                    self._close_to(new)

    def _bucket(
        self,
        us: np.ndarray,
        sec: np.ndarray,
        price: np.ndarray,
        qty: np.ndarray,
        tid: np.ndarray,
        first: np.ndarray,
        last: np.ndarray,
        maker: np.ndarray,
    ) -> None:
        """Merge on-time ticks (numpy columns) into the open 1s buckets.

        Every per-second field is a column op (the sums exact in int64, see
        :func:`_second_sums`); Python only touches each second once, to merge it.
        """
        n = len(us)
        d = us[1:] - us[:-1]
        ordered = ((d > 0) | ((d == 0) & (tid[1:] > tid[:-1]))).all()
        if not ordered:
            order = np.lexsort((tid, us))  # by (time, trade id), stable: open first, close last
            us, sec, price, qty, tid = us[order], sec[order], price[order], qty[order], tid[order]
            first, last, maker = first[order], last[order], maker[order]
        qs = _scaled_column(qty)
        ps = _scaled_column(price)
        starts = np.flatnonzero(sec[1:] != sec[:-1]) + 1
        idx = np.concatenate((np.zeros(1, np.int64), starts))
        ends = np.append(starts, n)
        close = ends - 1
        if not ordered:  # equal (time, id) keys: the first to arrive stays the close
            same = np.zeros(n, dtype=bool)
            same[1:] = (us[1:] == us[:-1]) & (tid[1:] == tid[:-1])
            run = np.where(same, 0, np.arange(n))  # index of the first of each equal-key run
            np.maximum.accumulate(run, out=run)
            close = run[close]
        vol, qv, tbv = _second_sums(ps, qs, maker, idx, ends)
        buckets = self.buckets
        for row in zip(
            sec[idx].tolist(),
            price[idx].tolist(),
            np.maximum.reduceat(price, idx).tolist(),
            np.minimum.reduceat(price, idx).tolist(),
            price[close].tolist(),
            vol,
            qv,
            np.add.reduceat(last - first + 1, idx).tolist(),
            tbv,
            us[idx].tolist(),
            tid[idx].tolist(),
            us[close].tolist(),
            tid[close].tolist(),
        ):
            s = row[0]
            b = buckets.get(s)
            if b is None:
                buckets[s] = list(row[1:])
                continue
            _, o, h, lo, c, v, q, k, t, o_us, o_id, c_us, c_id = row
            if h > b[1]:
                b[1] = h
            if lo < b[2]:
                b[2] = lo
            b[4] += v
            b[5] += q
            b[6] += k
            b[7] += t
            if c_us > b[10] or (c_us == b[10] and c_id > b[11]):
                b[3], b[10], b[11] = c, c_us, c_id
            if o_us < b[8] or (o_us == b[8] and o_id < b[9]):
                b[0], b[8], b[9] = o, o_us, o_id

    def add_progress(self, ts: datetime) -> None:
        """The feed of this symbol is complete up to ``ts``: close what the watermark allows."""
        us = to_us(ts)
        if us > self.progress_us:
            self.progress_us = us
            new = (max(us, self.max_us) - self.lateness_us) // _SEC_US
            if new > self.closed_until:
                self._close_to(new)

    def flush(self) -> None:
        """End of input: emit every open bar (partial ones included); see the module docstring."""
        if self.buckets:
            self._close_to(max(self.buckets) + 1)
        end = self._flush_levels()
        if end > self.closed_until:
            self.closed_until = end

    def drain(self) -> list[Out]:
        if self._late_dirty:
            self._emit_late()
        return super().drain()

    # -- internals --------------------------------------------------------------------------

    def _late(self, stamp: Optional[int] = None) -> None:
        """Count one late tick, stamped with the boundary closed at its arrival."""
        stamp = self.closed_until if stamp is None else stamp
        self.late_total += 1
        if self._late_sec != stamp:
            if self._late_dirty:
                self._emit_late()
            self._late_sec = stamp
            self._late_n = 0
        self._late_n += 1
        self._late_dirty = True

    def _emit_late(self) -> None:
        self.out.append(
            Health(self.symbol, "late_ticks", sec_to_dt(self._late_sec), float(self._late_n))
        )
        self._late_dirty = False

    def _close_to(self, new: int) -> None:
        """Emit every second in [closed_until, new), filling silent seconds once started."""
        buckets = self.buckets
        start = self.closed_until
        if self.last_close is None:  # not started: begin at the first bucket, if it is closed
            first = min(buckets) if buckets else new
            if first >= new:
                self.closed_until = new
                return
            start = first
        emit_1s = self.emit_1s
        out = self.out
        symbol, label = self.symbol, self.base_label
        push = self.levels[0].push if self.levels else None
        emit = self._emit_level
        pop = buckets.pop
        c = self.last_close
        ts = sec_to_dt(start)  # then + 1 s a second: exact, and cheaper than from epoch
        for s in range(start, new):
            b = pop(s, None)
            if b is None:
                a = [s, s + 1, c, c, c, c, 0, 0, 0, 0, True]
            else:
                c = b[3]
                a = [s, s + 1, b[0], b[1], b[2], c, b[4], b[5], b[6], b[7], False]
            if emit_1s:
                out.append(_to_bar(symbol, label, a, ts))
            if push is not None:
                for done in push(a):
                    emit(0, done)
            ts += _SEC
        self.last_close = c
        self.closed_until = new


class Rollup(_Cascade):
    """Cascade alone: bars of ``base_tf`` in → the same bars plus every longer timeframe out.

    Input bars must come in time order per symbol; one starting before the end of the previous
    one would rewrite an emitted bar and is dropped (counted in ``dropped``). A gap in the input
    closes the open longer bars as partial ones. :meth:`flush` emits the open bars at the end.
    """

    def __init__(self, symbol: str, base_tf: str, timeframes: Sequence[str]) -> None:
        self.symbol = symbol
        self.base = tf_seconds(base_tf)
        self.levels = [_Level(label, secs) for label, secs in tf_levels(timeframes, self.base)]
        self.next_start = _NEVER
        self.dropped = 0
        self.out: list[Out] = []

    def add_bar(self, bar: Bar) -> None:
        start = (bar.ts - EPOCH) // timedelta(seconds=1)
        if start < self.next_start:
            self.dropped += 1
            return
        self.next_start = start + self.base
        self.out.append(bar)
        self._feed(_exact(bar, start, self.base))

    def flush(self) -> None:
        end = self._flush_levels()
        if end > self.next_start:
            self.next_start = end
