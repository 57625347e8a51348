"""Bytewax operator running the rolling pair estimators, one state per pair, timeframe, preset."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Optional

import bytewax.operators as op
from bytewax.dataflow import Stream, operator
from bytewax.operators import KeyedStream, StatefulBatchLogic

from flows.rebuild import History, rebuilt_estimator
from pairstream.config import AnalyticsConfig, Config
from pairstream.estimators import PairEstimator
from pairstream.records import Analytics, PairBar

Item = tuple[str, PairBar]  # (preset, bar)


class _EstimateLogic(StatefulBatchLogic[Item, Analytics, PairEstimator]):
    """One key's :class:`PairEstimator`, fed a whole batch per call.

    The settings are looked up and checked once, at the key's first bar (they cannot change
    within a run): a restored estimator built with other settings is rebuilt from ``history``.
    """

    def __init__(
        self,
        est: Optional[PairEstimator],
        settings: Callable[[str, str], AnalyticsConfig],
        history: Optional[History],
    ) -> None:
        self.est = est
        self.settings = settings
        self.history = history
        self.checked = False

    def _first(self, preset: str, pb: PairBar) -> PairEstimator:
        want = self.settings(pb.tf, preset)
        est = self.est
        if est is None:
            est = PairEstimator(want, pb.pair, pb.tf, preset)
        elif est.cfg != want and self.history is not None:
            est = rebuilt_estimator(est, want, self.history, pb, preset)
        self.est, self.checked = est, True
        return est

    def on_batch(self, values: list[Item]) -> tuple[list[Analytics], bool]:
        est = self.est if self.checked else self._first(*values[0])
        update = est.update
        return [update(pb.ts, pb.y, pb.x) for _, pb in values], StatefulBatchLogic.RETAIN

    def snapshot(self) -> PairEstimator:
        assert self.est is not None
        return copy.deepcopy(self.est)


@operator
def _stateful(
    step_id: str,
    up: KeyedStream[Item],
    builder: Callable[[Optional[PairEstimator]], _EstimateLogic],
    inner: tuple[str, ...],
) -> KeyedStream[Analytics]:
    """``stateful_batch`` nested under the step ids ``inner``: the state's step id stays
    ``….estimate.stateful_flat_map.stateful.stateful_batch`` (what ``op.stateful_map`` gave
    it), so recovery snapshots of earlier versions still resume."""
    if inner:
        return _stateful(inner[0], up, builder, inner[1:])
    return op.stateful_batch("stateful_batch", up, builder)


@operator
def pair_analytics(
    step_id: str, pair_bars: Stream[PairBar], cfg: Config, history: Optional[History] = None
) -> Stream[Analytics]:
    """PairBars (in time order per pair+tf) → one Analytics row per preset and bar.

    Settings from ``cfg.analytics_for(tf, preset)``; every preset is its own keyed state, so
    each costs one estimator update per bar whatever the history (``"default"`` is
    ``[analytics]``). The state is a :class:`PairEstimator` (picklable, O(window)). A restored
    estimator built with other settings is rebuilt from ``history`` (stored bars). Fan-out,
    keying and unkeying work on whole batches (one Python call per batch, not per row).
    """
    presets = cfg.preset_names

    def fan(batch: list[PairBar]) -> list[tuple[str, Item]]:
        return [(f"{pb.pair}|{pb.tf}|{p}", (p, pb)) for pb in batch for p in presets]

    def builder(resume: Optional[PairEstimator]) -> _EstimateLogic:
        return _EstimateLogic(resume, cfg.analytics_for, history)

    keyed = op.flat_map_batch("presets", pair_bars, fan)
    out = _stateful("estimate", keyed, builder, ("stateful_flat_map", "stateful"))
    return op.flat_map_batch("unkey", out, lambda batch: [a for _, a in batch])
