"""The edge-triggered alert engine against an independent pandas reference.

The reference works on whole columns: conditions are pandas nullable-boolean arrays (SQL
three-valued logic), the ``for`` runs come from a groupby over run ids, and each FIRING /
RESOLVED edge is the first index of a boolean mask after the previous edge (a search per
event, not a per-row state machine).
"""

from __future__ import annotations

import pickle
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pairstream.alerts import FIRING, RESOLVED, AlertEngine, AlertRule, load_rules, step
from pairstream.config import AnalyticsConfig, Config, PairConfig
from pairstream.records import AlertEvent, Analytics
from tests.reference import reference_edges

PAIR = "BTCUSDT/ETHUSDT"
T0 = datetime(2024, 7, 1, tzinfo=timezone.utc)
CFG = Config(
    symbols=("BTCUSDT", "ETHUSDT", "SOLUSDT"),
    pairs=(PairConfig("BTCUSDT", "ETHUSDT"), PairConfig("SOLUSDT", "ETHUSDT")),
)
REPO = Path(__file__).resolve().parents[2]


def rule(when: str = "abs(zscore) > 2", **kw: str) -> AlertRule:
    raw = {"id": kw.pop("id", "r"), "pair": kw.pop("pair", PAIR), "tf": kw.pop("tf", "1m")}
    raw.update(when=when, **kw)
    (r,) = load_rules(replace(CFG, alerts=(raw,)))
    return r


def rows(zs, times=None, pair: str = PAIR, tf: str = "1m") -> list[Analytics]:
    """Analytics rows carrying ``zs`` (None = warm-up NULL) at ``times`` (default: 1 per minute)."""
    times = times or [T0 + timedelta(minutes=i) for i in range(len(zs))]
    out = []
    for ts, z in zip(times, zs, strict=True):
        z = None if z is None or (isinstance(z, float) and np.isnan(z)) else float(z)
        out.append(
            Analytics(
                pair,
                tf,
                ts,
                60000.0,
                3400.0,
                17.0,
                100.0,
                5.0,
                z,
                0.9,
                0.01,
                17.0,
                100.0,
                z,
                30.0,
                z is not None,
            )  # fmt: skip
        )
    return out


def run_engine(r: AlertRule, data: list[Analytics]) -> list[AlertEvent]:
    engine = AlertEngine((r,))
    return [ev for a in data for ev in engine.update(a)]


def edges(events: list[AlertEvent]) -> list[tuple[datetime, str]]:
    return [(e.ts, e.state) for e in events]


# ---------------------------------------------------------------------------------------------
# the pandas reference


def z_array(zs) -> pd.api.extensions.ExtensionArray:
    return pd.array([None if z is None else z for z in zs], dtype="Float64")


# ---------------------------------------------------------------------------------------------
# engine behaviour


def test_one_firing_and_one_resolved_per_episode() -> None:
    zs = [0, 1, 2.5, 3, 2.7, 2.1, 0.5, 0.2, 2.2, 2.4, 1.0, 0.1]
    ev = run_engine(rule(), rows(zs))
    t = [T0 + timedelta(minutes=i) for i in range(len(zs))]
    assert edges(ev) == [(t[2], FIRING), (t[6], RESOLVED), (t[8], FIRING), (t[10], RESOLVED)]
    z = z_array(zs)
    assert edges(ev) == reference_edges(
        pd.Series(t), abs(z) > 2, ~(abs(z) > 2), timedelta(), timedelta()
    )


def test_clear_hysteresis_suppresses_flapping() -> None:
    zs = [2.5, 1.9, 2.1, 1.5, 2.3, 1.2, 2.2, 0.9, 2.6]
    t = [T0 + timedelta(minutes=i) for i in range(len(zs))]
    flapping = run_engine(rule(), rows(zs))
    calm = run_engine(rule(clear="abs(zscore) < 1"), rows(zs))
    assert [e.state for e in flapping].count(FIRING) == 5
    assert edges(calm) == [(t[0], FIRING), (t[7], RESOLVED), (t[8], FIRING)]
    z = z_array(zs)
    assert edges(calm) == reference_edges(
        pd.Series(t), abs(z) > 2, abs(z) < 1, timedelta(), timedelta()
    )
    assert calm[1].expr == "abs(zscore) < 1" and calm[0].expr == "abs(zscore) > 2"


def test_for_is_measured_by_bar_timestamps() -> None:
    # irregular bar times: the condition must hold from its first true bar for 3 minutes
    times = [T0 + timedelta(minutes=m) for m in (0, 1, 2, 3, 6, 7, 8, 9, 10, 11)]
    zs = [3, 3, 0, 3, 3, 3, 3, 0, 3, 3]
    ev = run_engine(rule(**{"for": "3m"}), rows(zs, times))
    assert edges(ev) == [(times[4], FIRING), (times[7], RESOLVED)]
    z = z_array(zs)
    ref = reference_edges(
        pd.Series(times), abs(z) > 2, ~(abs(z) > 2), timedelta(minutes=3), timedelta()
    )
    assert edges(ev) == ref


def test_cooldown_defers_a_firing_it_does_not_drop_it() -> None:
    zs = [3, 0, 3, 3, 3, 3, 3, 0, 0, 0, 0, 3]
    t = [T0 + timedelta(minutes=i) for i in range(len(zs))]
    ev = run_engine(rule(cooldown="5m"), rows(zs))
    # fired at 0, resolved at 1; true again at 2 but within the cooldown: fires at 5 (0 + 5m)
    assert edges(ev) == [
        (t[0], FIRING),
        (t[1], RESOLVED),
        (t[5], FIRING),
        (t[7], RESOLVED),
        (t[11], FIRING),
    ]
    z = z_array(zs)
    ref = reference_edges(
        pd.Series(t), abs(z) > 2, ~(abs(z) > 2), timedelta(), timedelta(minutes=5)
    )
    assert edges(ev) == ref


def test_null_never_fires_and_never_resolves() -> None:
    zs = [None, None, 3, None, None, 0.5, None, None]
    t = [T0 + timedelta(minutes=i) for i in range(len(zs))]
    ev = run_engine(rule(), rows(zs))
    assert edges(ev) == [(t[2], FIRING), (t[5], RESOLVED)]
    assert run_engine(rule(), rows([None] * 20)) == []
    # a NULL also breaks a `for` run
    ev = run_engine(rule(**{"for": "2m"}), rows([3, 3, None, 3, 3, 3]))
    assert edges(ev) == [(T0 + timedelta(minutes=5), FIRING)]


def test_or_with_a_null_metric_follows_sql_logic() -> None:
    r = rule("zscore > 2 or corr < 0.5")
    a = rows([None])[0]
    assert r.when.evaluate(replace(a, corr=0.4)) is True
    assert r.when.evaluate(replace(a, corr=0.6)) is None
    assert r.clear.evaluate(replace(a, corr=0.6)) is None


def test_event_fields() -> None:
    r = rule("abs(zscore) > 2 and corr > 0.5", id="z", severity="critical")
    (fired,) = run_engine(r, rows([-2.5]))
    assert (fired.rule_id, fired.pair, fired.tf, fired.state, fired.severity) == (
        "z",
        PAIR,
        "1m",
        FIRING,
        "critical",
    )
    assert fired.expr == "abs(zscore) > 2 and corr > 0.5"
    assert fired.value == -2.5  # the first metric written, signed (before abs)
    assert fired.message == (
        "[critical] z FIRING on BTCUSDT/ETHUSDT 1m at 2024-07-01T00:00:00+00:00: "
        "abs(zscore) > 2 and corr > 0.5 (zscore=-2.5, corr=0.9)"
    )
    assert "\n" not in fired.message


def test_replayed_or_out_of_order_rows_are_ignored() -> None:
    data = rows([3, 0, 3])
    ev = run_engine(rule(), [data[0], data[0], data[1], data[0], data[2], data[1]])
    assert edges(ev) == [(data[0].ts, FIRING), (data[1].ts, RESOLVED), (data[2].ts, FIRING)]


def test_at_most_one_event_per_rule_and_bar() -> None:
    # overlapping when/clear: resolves at a bar where `when` still holds, fires again next bar
    r = rule("zscore > 2", clear="zscore < 3")
    ev = run_engine(r, rows([4, 2.5, 2.5, 2.5]))
    assert [e.state for e in ev] == [FIRING, RESOLVED, FIRING, RESOLVED]
    assert len({e.ts for e in ev}) == len(ev)


def test_state_survives_pickle_mid_stream() -> None:
    r = rule(clear="abs(zscore) < 1", cooldown="3m", **{"for": "1m"})
    rng = np.random.default_rng(7)
    data = rows(list(np.cumsum(rng.normal(0, 0.8, 300)) % 6 - 3))
    straight = run_engine(r, data)
    engine = AlertEngine((r,))
    first = [e for a in data[:150] for e in engine.update(a)]
    engine = pickle.loads(pickle.dumps(engine))
    rest = [e for a in data[150:] for e in engine.update(a)]
    assert first + rest == straight and len(straight) > 10


def test_rebind_keeps_unchanged_rules_and_resets_edited_ones() -> None:
    a, b = rule(id="a"), rule(id="b")
    engine = AlertEngine((a, b))
    engine.update(rows([3])[0])
    assert engine.states["a"].firing and engine.states["b"].firing
    b2 = rule("abs(zscore) > 2.5", id="b")
    rebound = engine.rebind((a, b2))
    assert rebound.states["a"].firing and "b" not in rebound.states
    assert edges(rebound.update(rows([3, 3])[1])) == [(T0 + timedelta(minutes=1), FIRING)]


_z = st.one_of(st.none(), st.floats(-4, 4, allow_nan=False))


@settings(max_examples=200, deadline=None)
@given(
    zs=st.lists(_z, min_size=1, max_size=120),
    gaps=st.lists(st.integers(1, 3), min_size=120, max_size=120),
    hold=st.integers(0, 4),
    cooldown=st.integers(0, 8),
    clear=st.sampled_from([None, "abs(zscore) < 1", "zscore < 2.5"]),
)
def test_engine_matches_pandas_reference(zs, gaps, hold, cooldown, clear) -> None:
    times = list(T0 + timedelta(minutes=m) for m in np.cumsum(gaps[: len(zs)]).tolist())
    kw = {"for": f"{hold}m", "cooldown": f"{cooldown}m"}
    if clear:
        kw["clear"] = clear
    r = rule(**kw)
    z = z_array(zs)
    when = abs(z) > 2
    clear_arr = {None: ~when, "abs(zscore) < 1": abs(z) < 1, "zscore < 2.5": z < 2.5}[clear]
    ref = reference_edges(
        pd.Series(times), when, clear_arr, timedelta(minutes=hold), timedelta(minutes=cooldown)
    )
    assert edges(run_engine(r, rows(zs, times))) == ref


def test_step_is_the_engine_for_one_rule() -> None:
    from pairstream.alerts import RuleState

    r, state = rule(), RuleState()
    out = [step(r, state, a) for a in rows([0, 3, 3, 0])]
    assert [e.state if e else None for e in out] == [None, FIRING, None, RESOLVED]


# ---------------------------------------------------------------------------------------------
# a week of real 1m klines through the real estimators


def _klines(symbol: str) -> pd.DataFrame:
    name = f"futures-um-klines-1m-{symbol}-2024-07-01_2024-07-07.csv"
    for base in (REPO / "data" / "klines", REPO.parent / "shared" / "data" / "binance" / "klines"):
        if (base / name).exists():
            return pd.read_csv(base / name)
    pytest.skip(f"{name} not found")


@pytest.fixture(scope="module")
def week() -> list[Analytics]:
    btc, eth = _klines("BTCUSDT"), _klines("ETHUSDT")
    assert (btc.open_time.to_numpy() == eth.open_time.to_numpy()).all()
    ts = pd.to_datetime(btc.open_time, unit="ms", utc=True)
    try:
        from pairstream.estimators import PairEstimator
    except ImportError:  # pragma: no cover - the estimators are a parallel piece of work
        PairEstimator = None
    if PairEstimator is not None:
        est = PairEstimator(AnalyticsConfig(), PAIR, "1m")
        return [
            est.update(t.to_pydatetime(), float(y), float(x))
            for t, y, x in zip(ts, btc.close, eth.close, strict=True)
        ]
    # fallback: a plain pandas rolling z-score of the log-price ratio (realistic rows only)
    s = np.log(btc.close) - np.log(eth.close)
    z = (s - s.rolling(60).mean()) / s.rolling(60).std()
    return rows([None if np.isnan(v) else v for v in z], [t.to_pydatetime() for t in ts])


@pytest.mark.parametrize(
    ("when", "extra", "hold", "cooldown"),
    [
        ("abs(zscore) > 2", {"clear": "abs(zscore) < 1", "cooldown": "30m"}, 0, 30),
        ("abs(zscore) > 2", {"clear": "abs(zscore) < 1", "cooldown": "2h", "for": "3m"}, 3, 120),
        ("z_kf < -2", {"cooldown": "10m"}, 0, 10),
    ],
)
def test_week_of_klines_matches_pandas(week, when, extra, hold, cooldown) -> None:
    r = rule(when, **extra)
    events = run_engine(r, week)
    df = pd.DataFrame({"ts": [a.ts for a in week], "zscore": [a.zscore for a in week],
                       "z_kf": [a.z_kf for a in week]})  # fmt: skip
    z = pd.array(df.zscore, dtype="Float64")
    zk = pd.array(df.z_kf, dtype="Float64")
    if when.startswith("abs"):
        w, c = abs(z) > 2, abs(z) < 1
    else:
        w = zk < -2
        c = ~w
    ref = reference_edges(df.ts, w, c, timedelta(minutes=hold), timedelta(minutes=cooldown))
    assert edges(events) == ref
    n_fire = sum(e.state == FIRING for e in events)
    n_true = int(pd.Series(w).fillna(False).sum())
    print(f"\n{when} {extra}: {len(week)} rows, {n_true} rows true, {n_fire} FIRING, "
          f"{len(events) - n_fire} RESOLVED")  # fmt: skip
    assert 5 <= n_fire < n_true  # edges, not one event per true row
    assert all(a.ts < b.ts for a, b in zip(events, events[1:]))


# ---------------------------------------------------------------------------------------------
# the Bytewax operator
