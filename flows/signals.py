"""Bytewax operator running one :class:`~pairstream.signals.SignalMachine` per pair, timeframe
and preset, with the funding of both legs."""

from __future__ import annotations

from typing import Optional, Union

import bytewax.operators as op
from bytewax.dataflow import Stream, operator

from flows.rebuild import History, machine_outdated, rebuilt_machine
from pairstream.config import Config
from pairstream.funding import FundingBook
from pairstream.records import Analytics, Funding, Signal
from pairstream.signals import SignalMachine


@operator
def signals(
    step_id: str,
    analytics: Stream[Analytics],
    cfg: Config,
    funding: Optional[FundingBook] = None,
    funding_events: Optional[Stream[Funding]] = None,
    history: Optional[History] = None,
) -> Stream[Signal]:
    """Signals in bar order per pair+tf+preset (``cfg.signals``).

    ``funding``: events known up front (replay files); ``funding_events``: events streamed in
    (live, from the mark price stream), copied to every pair, timeframe and preset holding the
    symbol. Each machine sizes its hedge for the ``prices`` setting of its preset. A restored
    machine built with other signal or analytics settings is rebuilt from ``history`` (stored
    bars).
    """
    keys = [
        (f"{p.id}|{tf}|{preset}", (p.y, p.x), cfg.analytics_for(tf, preset).prices)
        for p in cfg.pairs
        for tf in cfg.timeframes
        for preset in cfg.preset_names
    ]

    def fan(e: Funding) -> list[tuple[str, tuple[str, Funding]]]:
        return [(k, (prices, e)) for k, legs, prices in keys if e.symbol in legs]

    def step(machine: Optional[SignalMachine], item: Union[Analytics, tuple[str, Funding]]):
        if isinstance(item, Analytics):
            a_cfg = cfg.analytics_for(item.tf, item.preset)
            if machine is None:
                machine = SignalMachine(cfg.signals, a_cfg.prices, funding, a_cfg)
            elif history is not None and machine_outdated(machine, cfg.signals, a_cfg):
                machine = rebuilt_machine(machine, cfg, a_cfg, history, item, funding)
            return machine, [machine.update(item)]
        prices, e = item
        if machine is None:
            machine = SignalMachine(cfg.signals, prices, funding)
        machine.add_funding(e)
        return machine, []

    keyed = op.key_on("key", analytics, lambda a: f"{a.pair}|{a.tf}|{a.preset}")
    if funding_events is not None:
        fanned = op.flat_map("fan_funding", funding_events, fan)
        keyed = op.merge("with_funding", keyed, fanned)
    return op.key_rm("unkey", op.stateful_flat_map("machine", keyed, step))
