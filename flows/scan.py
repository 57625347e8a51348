"""Bytewax operator of the live pair scan: the flow's bars → ``pair_scan`` rows on schedule."""

from __future__ import annotations

from datetime import timedelta
from typing import Optional

import bytewax.operators as op
from bytewax.dataflow import Stream, operator

from pairstream.config import ScanConfig, tf_seconds
from pairstream.records import EPOCH, Bar, PairScan
from pairstream.scan import ScanJob, ScanSchedule

_MS = 1000
_ONE_MS = timedelta(milliseconds=1)


@operator
def pair_scan(step_id: str, bars: Stream[Bar], cfg: ScanConfig) -> Stream[PairScan]:
    """Rescan ``[scan] symbols`` every ``every`` of bar time over the last ``window`` bars.

    One keyed state (:class:`~pairstream.scan.ScanSchedule`) collects the closes of the scan
    timeframe; when a boundary is reached it emits one job per symbol, which are redistributed
    over the Bytewax workers (the numerics are the CPU cost) and turned into rows there.
    """
    tf_ms = tf_seconds(cfg.tf) * _MS
    wanted = frozenset(cfg.symbols)

    def collect(state: Optional[ScanSchedule], bar: Bar) -> tuple[ScanSchedule, list[ScanJob]]:
        if state is None:
            state = ScanSchedule(cfg.symbols, cfg.tf, tf_ms, cfg.window, cfg.every_s * _MS)
        return state, state.push(bar.symbol, (bar.ts - EPOCH) // _ONE_MS, bar.close)

    mine = op.filter("bars", bars, lambda b: b.tf == cfg.tf and b.symbol in wanted)
    keyed = op.key_on("key", mine, lambda _b: "scan")
    jobs = op.key_rm("unkey", op.stateful_flat_map("schedule", keyed, collect))
    spread = op.redistribute("spread", jobs)
    return op.flat_map("compute", spread, ScanJob.rows)
