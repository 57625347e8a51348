"""Bytewax operator running the rolling pair estimators, one state per pair and timeframe."""

from __future__ import annotations

from typing import Optional

import bytewax.operators as op
from bytewax.dataflow import Stream, operator

from pairstream.config import Config
from pairstream.estimators import PairEstimator
from pairstream.records import Analytics, PairBar


@operator
def pair_analytics(step_id: str, pair_bars: Stream[PairBar], cfg: Config) -> Stream[Analytics]:
    """PairBars (in time order per pair+tf) → Analytics rows, settings from ``analytics_for(tf)``.

    The state is a :class:`PairEstimator` (picklable, O(window)), so recovery snapshots are small.
    """

    def step(est: Optional[PairEstimator], pb: PairBar):
        if est is None:
            est = PairEstimator(cfg.analytics_for(pb.tf), pb.pair, pb.tf)
        return est, est.update(pb.ts, pb.y, pb.x)

    keyed = op.key_on("key", pair_bars, lambda pb: f"{pb.pair}|{pb.tf}")
    return op.key_rm("unkey", op.stateful_map("estimate", keyed, step))
