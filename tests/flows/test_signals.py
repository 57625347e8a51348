"""The signals operator runs one SignalMachine per pair+timeframe, as the machine alone does."""

from __future__ import annotations

from dataclasses import replace

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main

from flows.signals import signals
from pairstream.config import Config, SignalsConfig
from pairstream.records import Analytics
from pairstream.signals import SignalMachine
from tests.pairstream.test_signals import analytics  # noqa: F401


def test_operator_matches_machine(analytics: list[Analytics]) -> None:  # noqa: F811
    rows = analytics[:600] + [replace(a, tf="5m") for a in analytics[:300]]
    cfg = Config(signals=SignalsConfig(entry=1.5, exit=0.3))
    out: list = []
    flow = Dataflow("signals_test")
    s = op.input("in", flow, TestingSource(rows))
    op.output("out", signals("signals", s, cfg), TestingSink(out))
    run_main(flow)
    for tf, n in (("1m", 600), ("5m", 300)):
        m = SignalMachine(cfg.signals)
        want = [m.update(a) for a in rows if a.tf == tf]
        assert [s for s in out if s.tf == tf] == want and len(want) == n
