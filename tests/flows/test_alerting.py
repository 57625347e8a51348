"""The alerts operator: rules keyed by pair+tf, events logged, no state without rules."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta

import bytewax.operators as op
import numpy as np
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main

from flows.alerting import alerts
from pairstream.alerts import FIRING, RESOLVED, AlertEngine, load_rules
from pairstream.records import AlertEvent
from tests.pairstream.test_alerts import CFG, PAIR, T0, rows, rule  # noqa: F401


def test_alerts_operator(caplog) -> None:
    rules = load_rules(
        replace(
            CFG,
            alerts=(
                {
                    "id": "z1",
                    "pair": PAIR,
                    "tf": "1m",
                    "when": "abs(zscore) > 2",
                    "severity": "critical",
                },
                {"id": "c1", "pair": PAIR, "tf": "1m", "when": "corr < 0.5"},
                {"id": "z5", "pair": PAIR, "tf": "5m", "when": "zscore < -1", "severity": "info"},
                {
                    "id": "sol",
                    "pair": "SOLUSDT/ETHUSDT",
                    "tf": "1m",
                    "when": "price(SOLUSDT) > 150",
                },
            ),
        )
    )
    rng = np.random.default_rng(3)
    one = rows(list(rng.normal(0, 1.6, 200)))
    one = [replace(a, corr=float(c)) for a, c in zip(one, rng.uniform(0, 1, 200), strict=True)]
    five_times = [T0 + timedelta(minutes=5 * i) for i in range(40)]
    five = rows(list(rng.normal(0, 1.6, 40)), five_times, tf="5m")
    sol_prices = 150 + 8 * np.sin(np.arange(50) / 4)
    sol = rows([0.0] * 50, pair="SOLUSDT/ETHUSDT")
    sol = [replace(a, y=float(p)) for a, p in zip(sol, sol_prices, strict=True)]
    unwatched = rows([5.0] * 30, tf="1s")
    # interleave keys the way the flow would (time order within each key)
    inp = []
    for i in range(200):
        inp.append(one[i])
        if i < 40:
            inp.append(five[i])
        if i < 50:
            inp.append(sol[i])
        if i < 30:
            inp.append(unwatched[i])
    out: list[AlertEvent] = []
    flow = Dataflow("alerts_test")
    s = op.input("in", flow, TestingSource(inp))
    ev = alerts("alerts", s, rules)
    op.output("out", ev, TestingSink(out))
    with caplog.at_level(logging.INFO, logger="pairstream.alerts"):
        run_main(flow)

    expected = []
    for key_rules, data in (((rules[0], rules[1]), one), ((rules[2],), five), ((rules[3],), sol)):
        engine = AlertEngine(key_rules)
        expected += [e for a in data for e in engine.update(a)]
    key = lambda e: (e.rule_id, e.ts, e.state)  # noqa: E731
    assert sorted(out, key=key) == sorted(expected, key=key)
    assert {e.rule_id for e in out} == {"z1", "c1", "z5", "sol"}
    assert not [e for e in out if e.tf == "1s"]
    logged = [rec for rec in caplog.records if rec.name == "pairstream.alerts"]
    assert sorted(rec.getMessage() for rec in logged) == sorted(e.message for e in out)
    levels = {
        (e.rule_id, e.state): r.levelno for e in out for r in logged if r.getMessage() == e.message
    }
    assert levels[("z1", FIRING)] == logging.CRITICAL and levels[("z1", RESOLVED)] == logging.INFO
    assert levels[("c1", FIRING)] == logging.WARNING and levels[("z5", FIRING)] == logging.INFO


def test_alerts_operator_without_rules_emits_nothing() -> None:
    out: list[AlertEvent] = []
    flow = Dataflow("no_rules")
    op.output("out", alerts("alerts", op.input("in", flow, TestingSource(rows([3, 0, 3]))), ()),
              TestingSink(out))  # fmt: skip
    run_main(flow)
    assert out == []
