"""Bytewax operator evaluating the user's alert rules (the engine: :mod:`pairstream.alerts`)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Optional

import bytewax.operators as op
from bytewax.dataflow import Stream, operator

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
    by_key: dict[str, tuple[AlertRule, ...]] = {}
    for rule in rules:
        by_key[rule.key] = (*by_key.get(rule.key, ()), rule)

    def mapper(
        engine: Optional[AlertEngine], row: Analytics
    ) -> tuple[AlertEngine, Iterable[AlertEvent]]:
        key_rules = by_key[stream_key(row.pair, row.tf)]
        if engine is None:
            engine = AlertEngine(key_rules)
        elif engine.rules is not key_rules:  # resumed from a snapshot
            engine = engine.rebind(key_rules)
        events = engine.update(row)
        for ev in events:
            logger.log(_LEVEL[ev.severity] if ev.state == FIRING else logging.INFO, ev.message)
        return engine, events

    watched = op.filter("watched", analytics, lambda a: stream_key(a.pair, a.tf) in by_key)
    keyed = op.key_on("key", watched, lambda a: stream_key(a.pair, a.tf))
    events = op.stateful_flat_map("rules", keyed, mapper)
    return op.key_rm("unkey", events)
