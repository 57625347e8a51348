"""Bytewax operator running the rolling pair estimators, one state per pair, timeframe, preset."""

from __future__ import annotations

from typing import Optional

import bytewax.operators as op
from bytewax.dataflow import Stream, operator

from flows.rebuild import History, rebuilt_estimator
from pairstream.config import Config
from pairstream.estimators import PairEstimator
from pairstream.records import Analytics, PairBar


@operator
def pair_analytics(
    step_id: str, pair_bars: Stream[PairBar], cfg: Config, history: Optional[History] = None
) -> Stream[Analytics]:
    """PairBars (in time order per pair+tf) → one Analytics row per preset and bar.

    Settings from ``cfg.analytics_for(tf, preset)``; every preset is its own keyed state, so
    each costs one estimator update per bar whatever the history (``"default"`` is
    ``[analytics]``). The state is a :class:`PairEstimator` (picklable, O(window)). A restored
    estimator built with other settings is rebuilt from ``history`` (stored bars).
    """
    presets = cfg.preset_names

    def step(est: Optional[PairEstimator], item: tuple[str, PairBar]):
        preset, pb = item
        want = cfg.analytics_for(pb.tf, preset)
        if est is None:
            est = PairEstimator(want, pb.pair, pb.tf, preset)
        elif est.cfg != want and history is not None:
            est = rebuilt_estimator(est, want, history, pb, preset)
        return est, est.update(pb.ts, pb.y, pb.x)

    fanned = op.flat_map("presets", pair_bars, lambda pb: [(p, pb) for p in presets])
    keyed = op.key_on("key", fanned, lambda it: f"{it[1].pair}|{it[1].tf}|{it[0]}")
    return op.key_rm("unkey", op.stateful_map("estimate", keyed, step))
