"""Bytewax operator turning each symbol's mark price stream into funding settlements."""

from __future__ import annotations

from typing import Optional

import bytewax.operators as op
from bytewax.dataflow import Stream, operator

from pairstream.funding import MarkFunding
from pairstream.records import Funding, Mark


@operator
def funding_from_marks(step_id: str, marks: Stream[Mark]) -> Stream[Funding]:
    """Marks (per symbol, in arrival order) → one Funding per settlement they announce."""

    def step(state: Optional[MarkFunding], m: Mark):
        state = state if state is not None else MarkFunding()
        return state, state.update(m)

    keyed = op.key_on("key", marks, lambda m: m.symbol)
    return op.key_rm("unkey", op.stateful_flat_map("settle", keyed, step))
