"""Bytewax operator running the rolling pair estimators, one state per pair and timeframe."""

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
    """PairBars (in time order per pair+tf) → Analytics rows, settings from ``analytics_for(tf)``.

    The state is a :class:`PairEstimator` (picklable, O(window)), so recovery snapshots are small.
    A restored estimator built with other settings is rebuilt from ``history`` (stored bars).
    """

    def step(est: Optional[PairEstimator], pb: PairBar):
        want = cfg.analytics_for(pb.tf)
        if est is None:
            est = PairEstimator(want, pb.pair, pb.tf)
        elif est.cfg != want and history is not None:
            est = rebuilt_estimator(est, want, history, pb)
        return est, est.update(pb.ts, pb.y, pb.x)

    keyed = op.key_on("key", pair_bars, lambda pb: f"{pb.pair}|{pb.tf}")
    return op.key_rm("unkey", op.stateful_map("estimate", keyed, step))
