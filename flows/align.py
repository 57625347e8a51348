"""Bytewax operator aligning every configured pair (the maths: :mod:`pairstream.align`)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Optional

import bytewax.operators as op
from bytewax.dataflow import Stream, operator

from pairstream.align import PairAligner
from pairstream.config import PairConfig
from pairstream.records import Bar, PairBar

log = logging.getLogger("pairstream.align")


def _fan_out(
    bar: Bar, pairs: tuple[PairConfig, ...], timeframes: frozenset[str]
) -> Iterable[tuple[str, tuple[PairConfig, Bar]]]:
    if bar.tf not in timeframes:
        return []
    return [(f"{p.id}|{bar.tf}", (p, bar)) for p in pairs if bar.symbol in (p.y, p.x)]


@operator
def align_pairs(
    step_id: str, bars: Stream[Bar], pairs: list[PairConfig], timeframes: Iterable[str]
) -> Stream[PairBar]:
    """Fan each bar out to every configured pair holding its symbol, align per pair+tf."""
    pairs_t = tuple(pairs)
    tfs = frozenset(timeframes)

    def step(state: Optional[PairAligner], item: tuple[PairConfig, Bar]):
        pair, bar = item
        state = state if state is not None else PairAligner(pair.y, pair.x, bar.tf, pair.id)
        forced = state.forced
        out = state.push(bar)
        if state.forced > forced and forced % 1000 == 0:  # the first, then every 1000th
            log.warning("align %s %s: a leg is %d bars behind: forward-filled it (%d intervals "
                        "so far)", state.pair, state.tf, state.max_pending, state.forced)
        return state, out

    keyed = op.flat_map("fan_out", bars, lambda b: _fan_out(b, pairs_t, tfs))
    return op.key_rm("unkey", op.stateful_flat_map("align", keyed, step))
