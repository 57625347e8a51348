"""Bytewax operator running one :class:`~pairstream.signals.SignalMachine` per pair+timeframe."""

from __future__ import annotations

from typing import Optional

import bytewax.operators as op
from bytewax.dataflow import Stream, operator

from flows.rebuild import History, machine_outdated, rebuilt_machine
from pairstream.config import Config
from pairstream.records import Analytics, Signal
from pairstream.signals import SignalMachine


@operator
def signals(
    step_id: str, analytics: Stream[Analytics], cfg: Config, history: Optional[History] = None
) -> Stream[Signal]:
    """One :class:`SignalMachine` per pair+timeframe (``cfg.signals``), in bar order.

    A restored machine built with other signal or analytics settings is rebuilt from
    ``history`` (stored bars).
    """

    def step(machine: Optional[SignalMachine], a: Analytics):
        a_cfg = cfg.analytics_for(a.tf)
        if machine is None:
            machine = SignalMachine(cfg.signals, a_cfg)
        elif history is not None and machine_outdated(machine, cfg.signals, a_cfg):
            machine = rebuilt_machine(machine, cfg.signals, a_cfg, history, a.pair, a.tf, a.ts)
        return machine, machine.update(a)

    keyed = op.key_on("key", analytics, lambda a: f"{a.pair}|{a.tf}")
    return op.key_rm("unkey", op.stateful_map("machine", keyed, step))
