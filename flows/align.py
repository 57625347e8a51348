"""Bytewax operator aligning every configured pair (the maths: :mod:`pairstream.align`)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Optional

import bytewax.operators as op
from bytewax.dataflow import Stream, operator

from flows.keyed import stateful_groups, tagged_groups, unkey
from pairstream.align import PairAligner
from pairstream.config import PairConfig
from pairstream.records import Bar, PairBar

log = logging.getLogger("pairstream.align")

_Group = tuple[PairConfig, list[Bar]]  # one pair+tf's bars of a batch, in arrival order


@operator
def align_pairs(
    step_id: str, bars: Stream[Bar], pairs: list[PairConfig], timeframes: Iterable[str]
) -> Stream[PairBar]:
    """Fan each bar out to every configured pair holding its symbol, align per pair+tf."""
    # tf → symbol → the (key, pair) of every pair holding it: one lookup per bar
    routes: dict[str, dict[str, tuple[tuple[str, PairConfig], ...]]] = {
        tf: {
            s: tuple((f"{p.id}|{tf}", p) for p in pairs if s in (p.y, p.x))
            for s in {leg for p in pairs for leg in (p.y, p.x)}
        }
        for tf in frozenset(timeframes)
    }

    def fan_out(batch: list[Bar]) -> list[tuple[str, _Group]]:
        none: dict[str, tuple[tuple[str, PairConfig], ...]] = {}
        return tagged_groups(
            (key, pair, bar)
            for bar in batch
            for key, pair in routes.get(bar.tf, none).get(bar.symbol, ())
        )

    def step(state: Optional[PairAligner], group: _Group, out: list[PairBar]) -> PairAligner:
        pair, group_bars = group
        if state is None:
            state = PairAligner(pair.y, pair.x, group_bars[0].tf, pair.id)
        push = state.push_to
        for bar in group_bars:
            forced = state.forced
            push(bar, out)
            if state.forced > forced and forced % 1000 == 0:  # the first, then every 1000th
                log.warning("align %s %s: a leg is %d bars behind: forward-filled it (%d "
                            "intervals so far)", state.pair, state.tf, state.max_pending,
                            state.forced)
        return state

    keyed = op.flat_map_batch("fan_out", bars, fan_out)
    return unkey("unkey", stateful_groups("align", keyed, step))
