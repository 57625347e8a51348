"""Bytewax operator evaluating the user's alert rules (the engine: :mod:`pairstream.alerts`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Optional

import bytewax.operators as op
from bytewax.dataflow import Stream, operator

from flows.keyed import grouped, stateful_groups, unkey
from pairstream.alerts import FIRING, AlertEngine, AlertRule, stream_key
from pairstream.records import AlertEvent, Analytics

logger = logging.getLogger("pairstream.alerts")
_LEVEL = {"info": logging.INFO, "warning": logging.WARNING, "critical": logging.CRITICAL}


@operator
def alerts(
    step_id: str, analytics: Stream[Analytics], rules: Sequence[AlertRule]
) -> Stream[AlertEvent]:
    """Evaluate ``rules`` on every Analytics row and emit FIRING/RESOLVED edges.

    Rows are keyed by pair+tf; the state of a key is an :class:`AlertEngine` holding all the
    rules of that key. Rows of keys with no rule are dropped before any state is made. Each
    event is also logged on ``pairstream.alerts`` (FIRING at the rule's severity, RESOLVED at
    INFO).
    """
    by_key_rules: dict[str, tuple[AlertRule, ...]] = {}
    for rule in rules:
        by_key_rules[rule.key] = (*by_key_rules.get(rule.key, ()), rule)

    def by_key(batch: list[Analytics]) -> list[tuple[str, list[Analytics]]]:
        keyed = ((stream_key(a.pair, a.tf), a) for a in batch)
        # rows of keys with no rule: dropped, no state made
        return grouped((k, a) for k, a in keyed if k in by_key_rules)

    def step(
        engine: Optional[AlertEngine], group: list[Analytics], out: list[AlertEvent]
    ) -> AlertEngine:
        key_rules = by_key_rules[stream_key(group[0].pair, group[0].tf)]
        if engine is None:
            engine = AlertEngine(key_rules)
        elif engine.rules is not key_rules:  # resumed from a snapshot
            engine = engine.rebind(key_rules)
        update = engine.update
        for row in group:
            events = update(row)
            if events:
                for ev in events:
                    level = _LEVEL[ev.severity] if ev.state == FIRING else logging.INFO
                    logger.log(level, ev.message)
                out.extend(events)
        return engine

    keyed = op.flat_map_batch("key", analytics, by_key)
    return unkey("unkey", stateful_groups("rules", keyed, step))
