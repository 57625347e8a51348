"""Bytewax operator running the rolling pair estimators, one state per pair, timeframe, preset."""

from __future__ import annotations

from typing import Optional

import bytewax.operators as op
from bytewax.dataflow import Stream, operator
from bytewax.operators import KeyedStream

from flows.keyed import GroupStep, stateful_groups, tagged_groups, unkey
from flows.rebuild import History, rebuilt_estimator
from pairstream.config import AnalyticsConfig, Config
from pairstream.estimators import PairEstimator
from pairstream.records import Analytics, PairBar

Group = tuple[str, list[PairBar]]  # (preset, one key's bars of a batch in order)


@operator
def _estimate(step_id: str, up: KeyedStream[Group], step: GroupStep) -> KeyedStream[Analytics]:
    """The state step under ``<step_id>.stateful_flat_map.stateful.stateful_batch``, the id
    ``op.stateful_map`` gave it: recovery snapshots of earlier versions still resume."""
    return stateful_groups("stateful_flat_map", up, step)


@operator
def pair_analytics(
    step_id: str, pair_bars: Stream[PairBar], cfg: Config, history: Optional[History] = None
) -> Stream[Analytics]:
    """PairBars (in time order per pair+tf) → one Analytics row per preset and bar.

    Settings from ``cfg.analytics_for(tf, preset)``; every preset is its own keyed state, so
    each costs one estimator update per bar whatever the history (``"default"`` is
    ``[analytics]``). The state is a :class:`PairEstimator` (picklable, O(window)). A restored
    estimator built with other settings is rebuilt from ``history`` (stored bars). A batch's
    bars are grouped by key in one call (:mod:`flows.keyed`): one Python call per key and batch.
    """
    presets = cfg.preset_names

    def by_key(batch: list[PairBar]) -> list[tuple[str, Group]]:
        return tagged_groups((f"{pb.pair}|{pb.tf}|{p}", p, pb) for pb in batch for p in presets)

    wants: dict[tuple[str, str], AnalyticsConfig] = {}  # analytics_for, once per tf+preset

    def step(est: Optional[PairEstimator], group: Group, out: list[Analytics]) -> PairEstimator:
        preset, bars = group
        first = bars[0]
        want = wants.get((first.tf, preset))
        if want is None:
            want = wants[first.tf, preset] = cfg.analytics_for(first.tf, preset)
        if est is None:
            est = PairEstimator(want, first.pair, first.tf, preset)
        elif est.cfg is not want and est.cfg != want and history is not None:
            est = rebuilt_estimator(est, want, history, first, preset)
        update = est.update
        out.extend([update(pb.ts, pb.y, pb.x) for pb in bars])
        return est

    return unkey("unkey", _estimate("estimate", op.flat_map_batch("key", pair_bars, by_key), step))
