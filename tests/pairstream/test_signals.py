"""SignalMachine against the array reference on the week's analytics.

Tolerance: positions and actions exact; pnl, fees and cum_pnl within 1e-12 relative to the
price level (|y|) — in practice they are bit-identical. Raw and log prices (notional hedge
``beta·y/x``), OLS and Kalman (``use = "z_kf"`` hedges with ``beta_kf``).
"""

from __future__ import annotations

import numpy as np
import pytest

from pairstream.config import AnalyticsConfig, SignalsConfig
from pairstream.estimators import PairEstimator
from pairstream.records import Analytics
from pairstream.signals import SignalMachine
from tests.reference import load_pair_closes, reference_signals


def _week(prices: str) -> list[Analytics]:
    df = load_pair_closes()
    est = PairEstimator(AnalyticsConfig(adf_every=50, prices=prices), "BTCUSDT/ETHUSDT", "1m")
    return [est.update(t.to_pydatetime(), y, x) for t, y, x in zip(df.ts, df.y, df.x)]


@pytest.fixture(scope="module")
def analytics() -> list[Analytics]:
    return _week("raw")


@pytest.fixture(scope="module")
def log_analytics() -> list[Analytics]:
    return _week("log")


def _nan(v):
    return np.nan if v is None else v


CONFIGS = {
    "default": SignalsConfig(),
    "stop": SignalsConfig(entry=2.0, exit=0.5, stop=3.0),
    "z_kf": SignalsConfig(entry=1.5, exit=0.2, use="z_kf"),
    "no_fees": SignalsConfig(entry=1.0, exit=0.5, fee_bps=0.0),
    # log prices with kalman_obs_var 1e-3: the innovations are ~1% of their predicted std
    "z_kf_log": SignalsConfig(entry=0.015, exit=0.002, use="z_kf"),
}
CASES = [(n, "raw") for n in sorted(CONFIGS) if n != "z_kf_log"] + [
    ("default", "log"),
    ("z_kf_log", "log"),
]


@pytest.mark.parametrize(("name", "prices"), CASES)
def test_matches_reference_on_the_week(
    name: str, prices: str, analytics: list[Analytics], log_analytics: list[Analytics]
) -> None:
    cfg = CONFIGS[name]
    rows = analytics if prices == "raw" else log_analytics
    m = SignalMachine(cfg, prices=prices)
    got = [m.update(a) for a in rows]
    kf = cfg.use == "z_kf"
    z = np.array([_nan(a.z_kf if kf else a.zscore) for a in rows])
    beta = np.array([_nan(a.beta_kf if kf else a.beta) for a in rows])
    y = np.array([a.y for a in rows])
    x = np.array([a.x for a in rows])
    ref = reference_signals(z, beta, y, x, cfg, prices)
    assert [s.position for s in got] == ref["position"].tolist()
    assert [s.action for s in got] == ref["action"].tolist()
    h = np.array([_nan(s.hedge) for s in got])
    np.testing.assert_allclose(h, ref["hedge"].to_numpy(), rtol=1e-15, atol=0)
    entries = [i for i, s in enumerate(got) if s.action.startswith("enter")]
    assert entries
    for i in entries:  # the hedge is the sizing beta, times y/x (notional) with log prices
        scale = rows[i].y / rows[i].x if prices == "log" else 1.0
        assert got[i].hedge == pytest.approx(got[i].beta * scale, rel=1e-15)
    for col in ("pnl", "fees", "cum_pnl"):
        a = np.array([getattr(s, col) for s in got])
        np.testing.assert_allclose(a, ref[col].to_numpy(), rtol=0, atol=1e-12 * np.abs(y).max())
    actions = {s.action for s in got}
    assert {"enter_long", "enter_short", "exit"} <= actions  # trades happened
    if cfg.stop is not None:
        assert "stop" in actions
    if cfg.fee_bps == 0:
        assert all(s.fees == 0 for s in got)
    else:
        assert sum(s.fees > 0 for s in got) >= 4
    held = [s for s in got if s.position != 0]
    assert held and all(s.beta is not None and s.hedge is not None for s in held)
    assert all(s.funding == 0.0 and s.cum_funding == 0.0 for s in got)  # no funding book


@pytest.mark.parametrize("exit_level", [0.3, 0.0])
def test_after_a_stop_waits_for_the_exit_crossing(analytics: list[Analytics], exit_level) -> None:
    """Stopped out, the machine stays flat until z crosses the exit level on the stopped side
    (a stopped short: z ≤ exit; a stopped long: z ≥ −exit), then trades again."""
    cfg = SignalsConfig(entry=1.5, exit=exit_level, stop=2.0)
    m = SignalMachine(cfg)
    got = [m.update(a) for a in analytics]
    stops = [i for i, s in enumerate(got) if s.action == "stop"]
    assert stops
    for i in stops:
        side = got[i - 1].position  # -1: a short was stopped, +1: a long
        j = i + 1
        while j < len(got) and (
            got[j].zscore is None or -side * got[j].zscore > cfg.exit
        ):
            assert got[j].position == 0 and got[j].action == "hold"
            j += 1
    entries_after_stops = [s for s in got[stops[0] + 1 :] if s.action.startswith("enter")]
    assert entries_after_stops  # released: trading goes on after the first stop
