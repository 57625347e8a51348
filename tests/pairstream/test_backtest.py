"""The backtest against the vectorised references; grid parsing; the crossing exit.

Tolerances: positions and actions exact; per-bar pnl, fees and cum_pnl within 1e-9·|y| (the
price level: PnL is a difference of prices); metrics within 1e-9 relative (Sharpe, returns) —
the reference metrics are computed with pandas from the reference signal frame.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from pairstream.backtest import (
    BacktestError,
    ParamSet,
    align,
    backtest,
    expand,
    metrics,
    parse_grid,
    simulate,
)
from pairstream.config import AnalyticsConfig, SignalsConfig
from pairstream.records import Analytics, Bar, PairBar
from pairstream.signals import SignalMachine
from tests.reference import load_pair_closes, reference_analytics, reference_signals

PAIR, TF = "BTCUSDT/ETHUSDT", "1m"


@pytest.fixture(scope="module")
def week() -> list[PairBar]:
    df = load_pair_closes()
    return [
        PairBar(PAIR, TF, t.to_pydatetime(), float(y), float(x))
        for t, y, x in zip(df.ts, df.y, df.x)
    ]


def reference_metrics(ref: pd.DataFrame, y, x, beta, tf_s: int) -> dict:
    """Metrics from the reference frame with pandas (trade ids by cumulative entries)."""
    pnl = ref["pnl"]
    cum = pnl.cumsum()
    dd = (cum.cummax().clip(lower=0.0) - cum).max()
    entry = ref["action"].isin(["enter_long", "enter_short"])
    close = ref["action"].isin(["exit", "stop"])
    in_trade = (ref["position"] != 0) | close
    trade_id = entry.cumsum().where(in_trade)
    per_trade = pnl.groupby(trade_id).sum()
    closed_ids = trade_id[close].to_numpy()
    closed = per_trade.loc[closed_ids]
    notional = (np.abs(y) + np.abs(ref["hedge"]) * np.abs(x))[entry].mean()
    return {
        "trades": int(close.sum()),
        "wins": int((closed > 0).sum()),
        "pnl": float(cum.iloc[-1]),
        "total_return": float(cum.iloc[-1] / notional),
        "sharpe": float(pnl.mean() / pnl.std(ddof=1) * math.sqrt(365 * 86400 / tf_s)),
        "max_drawdown_pnl": float(dd),
        "max_drawdown": float(dd / notional),
        "notional": float(notional),
        "hit_rate": float((closed > 0).mean()),
        "fees": float(ref["fees"].sum()),
    }


CASES = {
    "stop": ParamSet(AnalyticsConfig(), SignalsConfig(entry=2.0, exit=0.5, stop=4.0)),
    "z_kf_exit0": ParamSet(
        AnalyticsConfig(window=120, z_window=30),
        SignalsConfig(entry=1.5, exit=0.0, use="z_kf", fee_bps=2.0),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_backtest_equals_the_vectorised_reference(name: str, week: list[PairBar]) -> None:
    p = CASES[name]
    got = simulate(week, p)
    y = np.array([b.y for b in week])
    x = np.array([b.x for b in week])
    an = reference_analytics(y, x, p.analytics, adf=False)
    kf = p.signals.use == "z_kf"
    z = an["z_kf" if kf else "zscore"].to_numpy()
    ref = reference_signals(z, an["beta_kf" if kf else "beta"].to_numpy(), y, x, p.signals)
    assert [s.position for s in got] == ref["position"].tolist()
    assert [s.action for s in got] == ref["action"].tolist()
    tol = 1e-9 * np.abs(y).max()
    for col in ("pnl", "fees", "cum_pnl"):
        a = np.array([getattr(s, col) for s in got])
        np.testing.assert_allclose(a, ref[col].to_numpy(), rtol=0, atol=tol)
    actions = set(ref["action"])
    assert {"enter_long", "enter_short", "exit"} <= actions
    assert ("stop" in actions) == (p.signals.stop is not None)

    m = metrics(got, TF)
    want = reference_metrics(ref, y, x, ref["hedge"], 60)
    assert (m.trades, m.wins, m.bars) == (want["trades"], want["wins"], len(week))
    assert m.trades > 5
    for k in ("pnl", "fees", "max_drawdown_pnl"):
        assert getattr(m, k) == pytest.approx(want[k], rel=0, abs=tol), k
    for k in ("total_return", "sharpe", "max_drawdown", "notional", "hit_rate"):
        assert getattr(m, k) == pytest.approx(want[k], rel=1e-9), k
    assert m.open_position == int(ref["position"].iloc[-1])


def test_grid_results_keep_order_and_do_not_depend_on_workers(week: list[PairBar]) -> None:
    bars = week[:1500]
    sets = expand(
        AnalyticsConfig(adf_every=50),
        SignalsConfig(),
        {"fee_bps": 1},
        parse_grid(["window=30,60", "entry=1.5,2"]),
    )
    one = backtest(bars, sets, workers=1)
    two = backtest(bars, sets, workers=2)
    assert one == two and len(one) == 4
    assert [(r.window, r.entry, r.fee_bps) for r in one] == [
        (30, 1.5, 1.0), (30, 2.0, 1.0), (60, 1.5, 1.0), (60, 2.0, 1.0)
    ]  # fmt: skip
    for r, p in zip(one, sets):
        assert r.pnl == pytest.approx(simulate(bars, p)[-1].cum_pnl, rel=0, abs=0)
        assert (r.ts, r.last_ts, r.bars) == (bars[0].ts, bars[-1].ts, 1500)


def test_grid_parsing() -> None:
    g = parse_grid(["entry=1.5:3:0.5", "window=30,60,120", "fee-bps=0:8:4", "stop=none,4"])
    assert g == {
        "entry": [1.5, 2.0, 2.5, 3.0],
        "window": [30, 60, 120],
        "fee_bps": [0, 4, 8],
        "stop": [None, 4],
    }
    assert parse_grid(["exit=0:0.3:0.1"])["exit"] == [0.0, 0.1, 0.2, 0.3]
    sets = expand(AnalyticsConfig(), SignalsConfig(), {"z-window": 30}, g)
    assert len(sets) == 4 * 3 * 3 * 2
    assert {type(s.analytics.window) for s in sets} == {int}
    assert {s.analytics.z_window for s in sets} == {30}
    assert sets[0].key == (
        "entry=1.5;exit=0.5;stop=none;fee_bps=0;use=zscore;prices=raw;window=30;z_window=30;"
        "corr_window=60;adf_window=120;adf_every=10;kalman_delta=0.0001;kalman_obs_var=0.001;"
        "kalman_p0=1"
    )
    assert len({s.key for s in sets}) == len(sets)


@pytest.mark.parametrize(
    "specs, overrides, message",
    [
        (["entri=1,2"], {}, "unknown parameter 'entri' (known: entry, exit, stop"),
        (["entry"], {}, "expected key=a:b:step or key=v1,v2"),
        (["entry=3:1:0.5"], {}, "need start ≤ stop and step > 0"),
        (["entry=1:2"], {}, "expected start:stop:step"),
        (["window=30,60", "window=90"], {}, "window is given twice"),
        (["window=30.5"], {}, "analytics.window: expected an integer, got 30.5"),
        (["entry=0.4,2"], {}, "signals.exit: must be ≥ 0 and below signals.entry (0.4)"),
        (["use=z,zscore"], {}, "signals.use: expected 'zscore' or 'z_kf', got 'z'"),
        ([], {"stop": 1.0}, "signals.stop: must be above signals.entry, got 1.0"),
        ([], {"window": 2}, "analytics.window: must be at least 3 bars, got 2"),
        (["entry=1:100000:0.001"], {}, "more than 10000"),
    ],
)
def test_grid_errors_are_one_line(specs, overrides, message) -> None:
    with pytest.raises(BacktestError) as e:
        expand(AnalyticsConfig(), SignalsConfig(), overrides, parse_grid(specs))
    assert message in str(e.value) and "\n" not in str(e.value)
    if specs and "=" in specs[0] and message.startswith("signals.exit"):
        assert "(grid point entry=0.4)" in str(e.value)


def _row(i: int, z, beta=1.0) -> Analytics:
    ts = datetime(2024, 7, 1, tzinfo=timezone.utc) + timedelta(minutes=i)
    return Analytics(PAIR, TF, ts, 100.0 + i, 50.0, beta, 0.0, 0.0, z, None, None,
                     None, None, None, None, z is not None)  # fmt: skip


def test_exit_is_a_crossing_and_exit_zero_closes() -> None:
    """A jump from ≥ entry to ≤ −entry closes the short (and does not re-enter on that bar)."""
    zs = [None, 2.5, 1.0, -2.5, -2.6, -1.0, 0.2, 3.0]
    m = SignalMachine(SignalsConfig(entry=2.0, exit=0.0))
    got = [(s.action, s.position) for s in (m.update(_row(i, z)) for i, z in enumerate(zs))]
    assert got == [
        ("hold", 0), ("enter_short", -1), ("hold", -1), ("exit", 0), ("enter_long", 1),
        ("hold", 1), ("exit", 0), ("enter_short", -1),
    ]  # fmt: skip
    # the stop is one-sided: beyond −stop a short is an exit (favourable), beyond +stop a stop
    m = SignalMachine(SignalsConfig(entry=2.0, exit=0.5, stop=3.0))
    acts = [m.update(_row(i, z)).action for i, z in enumerate([2.1, -3.5, 2.1, 3.5, 1.0, 0.4])]
    assert acts == ["enter_short", "exit", "enter_short", "stop", "hold", "hold"]


def test_align_is_the_flows_aligner_and_forward_fills() -> None:
    t0 = datetime(2024, 7, 1, tzinfo=timezone.utc)

    def bar(sym: str, i: int, close: float) -> Bar:
        return Bar(sym, TF, t0 + timedelta(minutes=i), close, close, close, close,
                   1.0, close, 1, 0.5, close, False)  # fmt: skip

    bars = [bar("ETHUSDT", i, 10.0 + i) for i in range(4)]
    bars += [bar("BTCUSDT", i, 100.0 + i) for i in (0, 1, 3)]  # BTC silent at minute 2
    out = align(reversed(bars), "BTCUSDT", "ETHUSDT", TF)
    assert [(b.ts.minute, b.y, b.x) for b in out] == [
        (0, 100.0, 10.0), (1, 101.0, 11.0), (2, 101.0, 12.0), (3, 103.0, 13.0)
    ]  # fmt: skip
    with pytest.raises(BacktestError, match="no bars"):
        backtest([], [ParamSet(AnalyticsConfig(), SignalsConfig())])
