"""Bytewax operator running one :class:`~pairstream.signals.SignalMachine` per pair+timeframe."""

from __future__ import annotations

from typing import Optional

import bytewax.operators as op
from bytewax.dataflow import Stream, operator

from pairstream.config import Config
from pairstream.records import Analytics, Signal
from pairstream.signals import SignalMachine


@operator
def signals(step_id: str, analytics: Stream[Analytics], cfg: Config) -> Stream[Signal]:
    """One :class:`SignalMachine` per pair+timeframe (``cfg.signals``), in bar order."""

    def step(machine: Optional[SignalMachine], a: Analytics):
        machine = machine if machine is not None else SignalMachine(cfg.signals)
        return machine, machine.update(a)

    keyed = op.key_on("key", analytics, lambda a: f"{a.pair}|{a.tf}")
    return op.key_rm("unkey", op.stateful_map("machine", keyed, step))
