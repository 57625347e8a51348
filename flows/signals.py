"""Bytewax operator running one :class:`~pairstream.signals.SignalMachine` per pair, timeframe
and preset, with the funding of both legs."""

from __future__ import annotations

from typing import Optional, Union

import bytewax.operators as op
from bytewax.dataflow import Stream, operator

from flows.keyed import grouped, stateful_groups, unkey
from flows.rebuild import History, machine_outdated, rebuilt_machine
from pairstream.config import AnalyticsConfig, Config
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

    def fan(batch: list[Funding]) -> list[tuple[str, list[tuple[str, Funding]]]]:
        return grouped((k, (prices, e)) for e in batch for k, legs, prices in keys
                       if e.symbol in legs)  # fmt: skip

    def by_key(batch: list[Analytics]) -> list[tuple[str, list[Analytics]]]:
        return grouped((f"{a.pair}|{a.tf}|{a.preset}", a) for a in batch)

    a_cfgs: dict[tuple[str, str], AnalyticsConfig] = {}  # analytics_for, once per tf+preset

    def step(
        machine: Optional[SignalMachine],
        group: list[Union[Analytics, tuple[str, Funding]]],
        out: list[Signal],
    ) -> SignalMachine:
        checked = False  # a group is one key (one tf+preset): one settings check suffices
        for item in group:
            if isinstance(item, Analytics):
                if not checked:
                    a_cfg = a_cfgs.get((item.tf, item.preset))
                    if a_cfg is None:
                        a_cfg = a_cfgs[item.tf, item.preset] = cfg.analytics_for(
                            item.tf, item.preset)  # fmt: skip
                    if machine is None:
                        machine = SignalMachine(cfg.signals, a_cfg.prices, funding, a_cfg)
                    elif history is not None and machine_outdated(machine, cfg.signals, a_cfg):
                        machine = rebuilt_machine(machine, cfg, a_cfg, history, item, funding)
                    checked = True  # and stays up to date: update never changes its settings
                out.append(machine.update(item))
                continue
            prices, e = item
            if machine is None:
                machine = SignalMachine(cfg.signals, prices, funding)
            machine.add_funding(e)
        return machine

    keyed = op.flat_map_batch("key", analytics, by_key)
    if funding_events is not None:
        fanned = op.flat_map_batch("fan_funding", funding_events, fan)
        keyed = op.merge("with_funding", keyed, fanned)
    return unkey("unkey", stateful_groups("machine", keyed, step))
