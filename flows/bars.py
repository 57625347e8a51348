"""Bars stage: ticks → event-time OHLCV bars of every timeframe (1s → 1m → 5m cascade).

Why not Bytewax's ``windowing`` operators (EventClock + TumblingWindower): their watermark
advances with wall time, so after a restart the backfilled ticks arrive "late" and are lost
(our issue 9); a key's window state is dropped once its windows close, so a straggler re-opens
an emitted window and yields a second, partial bar; the worker spins between bars (Bytewax
issue 578); and the per-tick Python cost is high. Instead a keyed ``stateful_batch`` step (the
low-level form of ``op.stateful``: same ``on_notify``/``on_eof``/``notify_at``/``snapshot``
contract, one call per batch instead of per item) drives a pure :class:`pairstream.ohlcv.SymbolBars`
per symbol whose watermark is data progress only: ``max(latest tick time, latest Progress
time) − lateness``. Sources emit :class:`~pairstream.records.Progress` ("this symbol's feed is
complete up to ts") so a silent symbol's bars still close; a replay needs none, because at end
of input every open bar is emitted. Nothing depends on wall time (``notify_at`` is never set),
so the worker is idle between items, and state is snapshotted with the recovery epoch, so a
resumed flow loses no bar and never emits one twice.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Optional, Union

import bytewax.operators as op
from bytewax.dataflow import Stream, operator
from bytewax.operators import StatefulBatchLogic

from connectors.store_resume import SymbolStart
from pairstream.config import tf_seconds
from pairstream.ohlcv import Rollup, SymbolBars
from pairstream.records import Bar, Health, Progress, Tick, TickBatch


@dataclass(frozen=True)
class BarsOut:
    """``bars``: every timeframe (``tf`` labels as configured); ``late``: ``late_ticks`` rows."""

    bars: Stream[Bar]
    late: Stream[Health]


_In = Union[Tick, TickBatch, Progress]
Seed = Callable[[str], Optional[SymbolStart]]


class _BarsLogic(StatefulBatchLogic[_In, Union[Bar, Health], SymbolBars]):
    """One symbol's :class:`SymbolBars`, made on the first batch (the builder gets no key)."""

    def __init__(
        self,
        resume: Optional[SymbolBars],
        timeframes: tuple[str, ...],
        lateness: timedelta,
        seed: Optional[Seed] = None,
    ) -> None:
        if resume is not None:
            if resume.timeframes != timeframes:
                raise ValueError(
                    f"recovered bar state has timeframes {list(resume.timeframes)}, the config "
                    f"has {list(timeframes)}: start with a fresh recovery directory"
                )
            resume.lateness_us = lateness // timedelta(microseconds=1)
        self.state = resume
        self._tfs = timeframes
        self._lateness = lateness
        self._seed = seed

    def _start(self, symbol: str) -> SymbolBars:
        """A new symbol's bars; with a start plan, resumed from the store and the exchange."""
        state = SymbolBars(symbol, self._tfs, self._lateness)
        start = self._seed(symbol) if self._seed is not None else None
        if start is not None and start.cut is not None:
            state.resume(start.cut, start.last_close, start.history)
            for t in start.ticks:
                state.add_tick(t)
        return state

    def on_batch(self, values: list[list[_In]]) -> tuple[Iterable, bool]:
        state = self.state
        if state is None:
            state = self.state = self._start(values[0][0].symbol)
        add_tick = state.add_tick
        for group in values:
            for v in group:
                if type(v) is TickBatch:
                    state.add_batch(v)
                elif type(v) is Tick:
                    add_tick(v)
                elif type(v) is Progress:
                    state.add_progress(v.ts)
                else:
                    raise TypeError(
                        f"bars: expected Tick, TickBatch or Progress, got {type(v).__name__}"
                    )
        return state.drain(), StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[Iterable, bool]:
        if self.state is None:
            return [], StatefulBatchLogic.RETAIN
        self.state.flush()
        return self.state.drain(), StatefulBatchLogic.RETAIN

    def notify_at(self) -> None:
        return None  # event time only: never woken by the clock

    def snapshot(self) -> SymbolBars:
        return copy.deepcopy(self.state)


def _by_symbol(batch: list[_In]) -> list[tuple[str, list]]:
    """One ``(symbol, [items])`` per symbol in a batch, each symbol's items in arrival order.

    Keying whole per-symbol lists instead of single items turns Bytewax's per-item routing cost
    into a per-batch one; the state machine still sees every item, one by one, in order.
    """
    groups: dict[str, list] = {}
    for e in batch:
        g = groups.get(e.symbol)
        if g is None:
            groups[e.symbol] = [e]
        else:
            g.append(e)
    return list(groups.items())


@operator
def bars(
    step_id: str,
    events: Stream[_In],
    timeframes: Sequence[str],
    lateness: timedelta,
    seed: Optional[Seed] = None,
) -> BarsOut:
    """Ticks (or TickBatches) and Progress → bars of ``timeframes`` per symbol, and late counts.

    ``timeframes`` are labels as in the config (``"1s"``, ``"1m"``, ``"5m"``), shortest first,
    each a multiple of the one before; 1s buckets are always built and 1s bars emitted only if
    a 1s timeframe is listed. Per symbol, bars of every timeframe come in increasing ``ts``
    and each (symbol, tf, ts) exactly once.

    ``seed(symbol)`` (live starts without recovered state) gives where the symbol's bars
    resume: its history bars and stored ticks are replayed before the first item.
    """
    tfs = tuple(timeframes)
    for tf in tfs:
        tf_seconds(tf)  # fail at build time on a bad label
    SymbolBars("CHECK", tfs, lateness)  # ... and on a bad timeframe ladder or lateness
    keyed = op.flat_map_batch("key", events, _by_symbol)
    out = op.stateful_batch(
        "ohlcv", keyed, lambda resume: _BarsLogic(resume, tfs, lateness, seed)
    )
    values = op.key_rm("unkey", out)
    split = op.branch("split", values, lambda x: isinstance(x, Bar))
    return BarsOut(split.trues, split.falses)


class _RollupLogic(StatefulBatchLogic[Bar, Bar, Rollup]):
    def __init__(self, resume: Optional[Rollup], base_tf: str, timeframes: tuple[str, ...]):
        self.state = resume
        self._base = base_tf
        self._tfs = timeframes

    def on_batch(self, values: list[Bar]) -> tuple[Iterable, bool]:
        if self.state is None:
            self.state = Rollup(values[0].symbol, self._base, self._tfs)
        add = self.state.add_bar
        for b in values:
            add(b)
        return self.state.drain(), StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[Iterable, bool]:
        if self.state is None:
            return [], StatefulBatchLogic.RETAIN
        self.state.flush()
        return self.state.drain(), StatefulBatchLogic.RETAIN

    def snapshot(self) -> Rollup:
        return copy.deepcopy(self.state)


@operator
def rollup_bars(
    step_id: str, bars: Stream[Bar], base_tf: str, timeframes: Sequence[str]
) -> Stream[Bar]:
    """Bars of ``base_tf`` (e.g. replayed 1m klines) → those bars plus every longer timeframe.

    Timeframes shorter than ``base_tf`` cannot be built and are left out; bars of another tf
    than ``base_tf`` in the input are ignored. Out-of-order input bars are dropped.
    """
    tfs = tuple(timeframes)
    Rollup("CHECK", base_tf, tfs)  # fail at build time on a bad ladder
    base = op.filter("base_only", bars, lambda b: b.tf == base_tf)
    keyed = op.key_on("key", base, lambda b: b.symbol)
    out = op.stateful_batch("rollup", keyed, lambda resume: _RollupLogic(resume, base_tf, tfs))
    return op.key_rm("unkey", out)
