"""The whole flow (`python -m bytewax.run flows.pairs`) into a real QuestDB, end to end.

* 7 days of official 1m klines (offline OHLC mode): every pair_analytics row equals the
  independent statsmodels/pandas/pykalman reference, signals equal the vectorised reference,
  alert edges equal a pandas reference over the stored analytics, and a second replay
  changes no table (idempotent writes).
* Window A trades with 2 workers and with 2 processes write exactly the rows of 1 worker.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from connectors.questdb_server import free_port
from connectors.questdb_sink import drop_tables
from connectors.schema import TABLES
from pairstream.config import load
from tests.conftest import REPO, run_flow
from tests.reference import (
    assert_analytics_equal,
    load_pair_closes,
    reference_analytics,
    reference_edges,
    reference_signals,
)

WEEK = REPO / "config" / "week.toml"
DEMO = REPO / "config" / "demo.toml"
COMPARED = ("ticks", "bars", "pair_analytics", "signals", "alerts")


def table(http, name: str, where: str = "") -> pd.DataFrame:
    out = http.exec(f"SELECT * FROM {name} {where} ORDER BY ts")
    cols = [c["name"] for c in out["columns"]]
    return pd.DataFrame(out["dataset"], columns=cols)


def snapshot(http) -> dict[str, pd.DataFrame]:
    """Every compared table, sorted by its identity keys (ts first)."""
    out = {}
    for t in TABLES:
        if t.name in COMPARED:
            df = table(http, t.name)
            out[t.name] = df.sort_values(["ts", *t.keys]).reset_index(drop=True)
    return out




@pytest.fixture(scope="module")
def week(questdb):
    drop_tables(questdb.http)
    run_flow(questdb, WEEK)
    return questdb


def _rows(df: pd.DataFrame) -> list[SimpleNamespace]:
    recs = df.replace({np.nan: None}).to_dict("records")
    return [SimpleNamespace(**r) for r in recs]


@pytest.mark.parametrize("tf", ["1m", "5m"])
def test_week_analytics_equal_the_reference(week, tf):
    cfg = load(WEEK).analytics_for(tf)
    got = table(week.http, "pair_analytics", f"WHERE pair = 'BTCUSDT/ETHUSDT' AND tf = '{tf}'")
    closes = load_pair_closes()
    if tf == "5m":
        closes = closes.set_index("ts").resample("5min").last().reset_index()
    assert len(got) == len(closes) == {"1m": 10_080, "5m": 2_016}[tf]
    assert (pd.to_datetime(got["ts"], utc=True) == closes["ts"]).all()
    ref = reference_analytics(closes["y"].to_numpy(), closes["x"].to_numpy(), cfg)
    assert_analytics_equal(_rows(got), ref)
    assert got["warm"].sum() == len(got) - (cfg.window + cfg.z_window - 2)


def test_week_signals_equal_the_reference(week):
    cfg = load(WEEK).signals
    a = table(week.http, "pair_analytics", "WHERE tf = '1m'")
    s = table(week.http, "signals", "WHERE tf = '1m'")
    assert len(s) == len(a) == 10_080
    z = a["zscore"].astype(float).to_numpy()
    ref = reference_signals(z, a["beta"].astype(float).to_numpy(), a["y"], a["x"], cfg)
    assert (s["position"].to_numpy() == ref["position"].to_numpy()).all()
    assert (s["action"].to_numpy() == ref["action"].to_numpy()).all()
    scale = np.abs(a["y"].to_numpy())
    for col in ("pnl", "fees", "cum_pnl"):
        assert np.allclose(s[col], ref[col], rtol=0, atol=1e-9 * scale.max()), col
    trades = (s["action"] != "hold").sum()
    print(f"\nweek 1m: {trades} entries/exits, cum_pnl {s['cum_pnl'].iloc[-1]:.2f}")
    assert trades > 10


def test_week_alerts_equal_a_pandas_reference_over_stored_analytics(week):
    a1 = table(week.http, "pair_analytics", "WHERE tf = '1m'")
    a5 = table(week.http, "pair_analytics", "WHERE tf = '5m'")
    alerts = table(week.http, "alerts")
    z = pd.array(a1["zscore"], dtype="Float64")
    adf = pd.array(a5["adf_p"], dtype="Float64")
    y = pd.array(a1["y"], dtype="Float64")
    cases = {
        "z-extreme": (a1.ts, abs(z) > 2, abs(z) < 1, timedelta(0), timedelta(minutes=30)),
        "cointegration-lost": (a5.ts, adf > 0.1, adf < 0.05, timedelta(minutes=30), timedelta(0)),
        "btc-below-55k": (a1.ts, y < 55000, y > 55500, timedelta(0), timedelta(0)),
    }
    for rule_id, (ts, when, clear, hold, cooldown) in cases.items():
        ref = reference_edges(ts, when, clear, hold, cooldown)
        got = alerts[alerts.rule_id == rule_id]
        got_edges = list(zip(pd.to_datetime(got.ts, utc=True), got.state))
        assert got_edges == [(pd.Timestamp(t), s) for t, s in ref], rule_id
        assert len(ref) >= 2, rule_id


def test_replaying_again_duplicates_nothing(week):
    before = snapshot(week.http)
    run_flow(week, WEEK)
    after = snapshot(week.http)
    for name in COMPARED:
        pd.testing.assert_frame_equal(before[name], after[name], obj=name)


def _two_processes(questdb) -> None:
    ports = [free_port(), free_port()]
    addresses = ";".join(f"127.0.0.1:{p}" for p in ports)
    env = dict(os.environ, PAIRSTREAM_CONFIG=str(DEMO), QDB_CLIENT_CONF=questdb.conf)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "bytewax.run", "flows.pairs", "-i", str(i), "-a", addresses],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    questdb.http.wait_applied()


def test_workers_and_processes_write_the_rows_of_one_worker(questdb):
    http = questdb.http
    drop_tables(http)
    run_flow(questdb, DEMO)
    one = snapshot(http)
    assert len(one["ticks"]) == 24_356 and len(one["pair_analytics"]) > 400
    drop_tables(http)
    run_flow(questdb, DEMO, "-w", "2")
    two_workers = snapshot(http)
    drop_tables(http)
    _two_processes(questdb)
    two_procs = snapshot(http)
    for name in COMPARED:
        pd.testing.assert_frame_equal(one[name], two_workers[name], obj=f"{name} -w 2")
        pd.testing.assert_frame_equal(one[name], two_procs[name], obj=f"{name} 2 processes")


def test_replay_fills_bars_with_exactly_the_bars_of_the_ticks(window_a):
    """The bars table after `python -m bytewax.run flows.pairs` on window A: the pure bar
    logic's rows (pinned to klines and pandas in test_ohlcv), each (ts, symbol, tf) once, and
    the official klines for every complete minute."""
    from tests.pairstream.test_ohlcv import (
        COMPLETE_A,
        KLINE_FIELDS,
        bars_of,
        load_klines,
        load_ticks,
    )
    from tests.pairstream.test_ohlcv import run as pure_bars

    http = window_a.http
    cfg = load(DEMO)
    stored = table(http, "bars")
    n_distinct = http.query("SELECT count() n FROM (SELECT DISTINCT ts, symbol, tf FROM bars)")
    assert len(stored) == n_distinct[0]["n"]
    for sym in ("BTCUSDT", "ETHUSDT"):
        want = bars_of(pure_bars(load_ticks(sym), cfg.bars.lateness_td, cfg.timeframes)[0])
        got = stored[stored.symbol == sym].sort_values(["tf", "ts"])
        want_df = pd.DataFrame([{f: getattr(b, f) for f in got.columns} for b in want])
        want_df["ts"] = want_df["ts"].map(lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
        want_df = want_df.sort_values(["tf", "ts"]).reset_index(drop=True)
        pd.testing.assert_frame_equal(got.reset_index(drop=True), want_df, check_dtype=False)
        klines = load_klines(sym)
        for m in COMPLETE_A:
            row = got[(got.tf == "1m") & (got.ts == m.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))]
            assert len(row) == 1
            for col, attr in KLINE_FIELDS:
                assert float(klines[m.to_pydatetime()][col]) == row.iloc[0][attr], (sym, m, col)
