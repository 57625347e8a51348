"""The pair_analytics operator (and the bars → align → analytics chain) in a real Bytewax run.

Checked against the independent reference with the same tolerances as the estimator tests,
including a per-timeframe ``[analytics.5m]`` override.
"""

from __future__ import annotations

from datetime import timezone

import bytewax.operators as op
import pandas as pd
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main

from flows.align import align_pairs
from flows.analytics import pair_analytics
from pairstream.config import parse
from pairstream.records import Analytics, Bar, PairBar
from tests.reference import (
    assert_analytics_equal,
    load_klines,
    load_pair_closes,
    reference_analytics,
)

CFG = parse(
    {
        "timeframes": ["1m", "5m"],
        "analytics": {
            "window": 30, "z_window": 20, "corr_window": 20, "adf_window": 40, "adf_every": 5,
            "5m": {"window": 12, "z_window": 10, "adf_window": 20, "prices": "log"},
        },
    }
)  # fmt: skip
PAIR = "BTCUSDT/ETHUSDT"


def closes_5m(df: pd.DataFrame) -> pd.DataFrame:
    """5m closes of the real 1m klines: the last close of each 5-minute interval."""
    g = df.set_index("ts").resample("5min", label="left", closed="left").last()
    return g.reset_index()


def run_flow(items: list, build) -> list:
    out: list = []
    flow = Dataflow("analytics_test")
    s = op.input("in", flow, TestingSource(items))
    op.output("out", build(s), TestingSink(out))
    run_main(flow)
    return out


def test_operator_per_timeframe_settings_match_reference() -> None:
    m1 = load_pair_closes().iloc[:900].reset_index(drop=True)
    m5 = closes_5m(load_pair_closes().iloc[:3000])
    frames = {"1m": m1, "5m": m5}
    items = [
        PairBar(PAIR, tf, ts.to_pydatetime(), y, x)
        for tf, df in frames.items()
        for ts, y, x in zip(df.ts, df.y, df.x)
    ]
    out = run_flow(items, lambda s: pair_analytics("analytics", s, CFG))
    assert CFG.analytics_for("5m").window == 12 and CFG.analytics_for("1m").window == 30
    for tf, df in frames.items():
        rows = [a for a in out if a.tf == tf]
        assert [a.ts for a in rows] == [t.to_pydatetime() for t in df.ts]
        acfg = CFG.analytics_for(tf)
        ref = reference_analytics(df.y.to_numpy(), df.x.to_numpy(), acfg)
        assert_analytics_equal(rows, ref, prices=acfg.prices)
        first_beta = next(i for i, a in enumerate(rows) if a.beta is not None)
        assert first_beta == acfg.window - 1


def kline_bars(symbol: str, n: int) -> list[Bar]:
    df = load_klines(symbol).iloc[:n]
    return [
        Bar(symbol, "1m", ts.to_pydatetime().astimezone(timezone.utc), r.open, r.high, r.low,
            r.close, r.volume, r.quote_volume, int(r.count), r.taker_buy_volume,
            r.quote_volume / r.volume, False)
        for ts, r in zip(df.ts, df.itertuples())
    ]  # fmt: skip


def test_bars_to_analytics_chain() -> None:
    btc, eth = kline_bars("BTCUSDT", 500), kline_bars("ETHUSDT", 500)
    items = [b for pair in zip(eth, btc) for b in pair]  # x leg first: order must not matter

    def build(s):
        pb = align_pairs("align", s, list(CFG.pairs), CFG.timeframes)
        return pair_analytics("analytics", pb, CFG)

    out: list[Analytics] = run_flow(items, build)
    assert len(out) == 500 and all(a.pair == PAIR and a.tf == "1m" for a in out)
    y = [b.close for b in btc]
    x = [b.close for b in eth]
    assert [a.y for a in out] == y and [a.x for a in out] == x
    ref = reference_analytics(y, x, CFG.analytics_for("1m"))
    assert_analytics_equal(out, ref)
    assert sum(a.warm for a in out) == 500 - 30 - 20 + 2


def test_state_keeps_the_step_id_of_earlier_versions() -> None:
    # recovery snapshots are stored under the stateful step's id: it must stay what
    # op.stateful_map("estimate") gave it, or a resumed flow would start its estimators cold
    flow = Dataflow("pairs")
    s = op.input("in", flow, TestingSource([]))
    op.output("out", pair_analytics("analytics", s, CFG), TestingSink([]))
    ids, todo = [], list(flow.substeps)
    while todo:
        step = todo.pop()
        ids.append(step.step_id)
        todo.extend(step.substeps)
    assert "pairs.analytics.estimate.stateful_flat_map.stateful.stateful_batch" in ids
