"""Funding in the paper PnL: the week of 1m klines replayed with the legs' funding files.

The reference is written from the rule alone (pandas/numpy over the stored ``signals`` rows and
the raw funding CSVs, none of pairstream's code): an event at ``T`` is paid by the position
after the last bar ending at or before ``T`` — per leg ``−qty·markPrice·fundingRate`` with
``qty = position`` for y and ``−position·hedge`` for x — and booked on the next bar.
Tolerance: 1e-9 relative to the total funding; positions and hedges exact.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from connectors.questdb_sink import drop_tables
from tests.conftest import REPO, run_flow
from tests.flows.test_pairs import table

WEEK = REPO / "config" / "week.toml"
FUNDING = {
    s: REPO / "data" / "funding" / f"futures-um-fundingRate-{s}-2024-06-30_2024-08-10.csv"
    for s in ("BTCUSDT", "ETHUSDT")
}
KLINES = [
    REPO / "data" / "klines" / f"futures-um-klines-1m-{s}-2024-07-01_2024-07-07.csv"
    for s in ("BTCUSDT", "ETHUSDT")
]
TF_S = {"1m": 60, "5m": 300}


def _config(tmp_path, funding: bool):
    """config/week.toml with absolute paths, plus the funding files when asked."""
    text = WEEK.read_text()
    paths = [str(p) for p in KLINES] + ([str(p) for p in FUNDING.values()] if funding else [])
    text = text.replace(
        'paths = ["../data/klines/futures-um-klines-1m-*-2024-07-01_2024-07-07.csv"]',
        f"paths = {paths!r}".replace("'", '"'),
    )
    assert str(KLINES[0]) in text
    out = tmp_path / f"week-{'with' if funding else 'without'}-funding.toml"
    out.write_text(text)
    return out


@pytest.fixture(scope="module")
def runs(questdb, tmp_path_factory):
    """Signals of the week with funding files and without, from two flows into QuestDB."""
    tmp = tmp_path_factory.mktemp("funding")
    out = {}
    for funding in (True, False):
        drop_tables(questdb.http)
        run_flow(questdb, _config(tmp, funding))
        out[funding] = {
            tf: table(questdb.http, "signals", f"WHERE tf = '{tf}'") for tf in ("1m", "5m")
        }
    return out


def reference_funding(signals: pd.DataFrame, tf_s: int) -> np.ndarray:
    """Funding booked on each bar, from the rule, the rows' positions/hedges and the CSVs."""
    ts = pd.to_datetime(signals["ts"], utc=True)
    ends = (ts + pd.Timedelta(seconds=tf_s)).to_numpy()
    pos = signals["position"].to_numpy(float)
    hedge = signals["hedge"].astype(float).fillna(0.0).to_numpy()
    booked = np.zeros(len(signals))
    for sym, path in FUNDING.items():
        f = pd.read_csv(path)
        t = pd.to_datetime(f["fundingTime"], unit="ms", utc=True).to_numpy()
        last = np.searchsorted(ends, t, side="right") - 1  # last bar ending at or before T
        ok = (last >= 0) & (last + 1 < len(signals))  # booked on the next bar, if there is one
        i = last[ok]
        qty = pos[i] if sym == "BTCUSDT" else -pos[i] * hedge[i]
        cash = -qty * f["markPrice"].to_numpy()[ok] * f["fundingRate"].to_numpy()[ok]
        np.add.at(booked, i + 1, cash)
    return booked


@pytest.mark.parametrize("tf", ["1m", "5m"])
def test_cum_funding_equals_the_rule_recomputed(runs, tf):
    s = runs[True][tf]
    assert len(s) == {"1m": 10_080, "5m": 2_016}[tf]
    want = reference_funding(s, TF_S[tf])
    total = want.sum()
    got = s["cum_funding"].to_numpy(float)
    assert abs(got[-1] - total) <= 1e-9 * abs(total), (got[-1], total)
    np.testing.assert_allclose(s["funding"].to_numpy(float), want, rtol=0, atol=1e-9 * abs(total))
    assert (s["funding"] != 0).sum() >= 5  # positions were held across funding times
    print(f"\nweek {tf}: cum_funding {got[-1]:.6f}, cum_pnl {s['cum_pnl'].iloc[-1]:.2f}")


@pytest.mark.parametrize("tf", ["1m", "5m"])
def test_funding_is_the_difference_of_the_pnl(runs, tf):
    w, wo = runs[True][tf], runs[False][tf]
    assert (w["position"].to_numpy() == wo["position"].to_numpy()).all()
    assert (wo["funding"] == 0).all() and (wo["cum_funding"] == 0).all()
    diff = w["cum_pnl"].to_numpy(float) - wo["cum_pnl"].to_numpy(float)
    cum = w["cum_funding"].to_numpy(float)
    scale = abs(cum[-1])
    assert np.abs(diff - cum).max() <= 1e-9 * scale
    pnl_diff = w["pnl"].to_numpy(float) - wo["pnl"].to_numpy(float)
    np.testing.assert_allclose(pnl_diff, w["funding"].to_numpy(float), rtol=0, atol=1e-9 * scale)


def test_backtest_reports_the_same_total(runs, questdb, tmp_path):
    """`pairstream backtest --klines ... --funding ...` with the week's settings."""
    out = tmp_path / "bt.csv"
    proc = subprocess.run(
        [
            sys.executable, "-m", "flows.cli", "backtest", "--klines", *map(str, KLINES),
            "--funding", *map(str, FUNDING.values()), "--no-store", "-o", str(out), "-w", "1",
        ],
        cwd=REPO,
        env={**__import__("os").environ, "PAIRSTREAM_CONFIG": str(WEEK)},
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "funding" in proc.stdout
    r = pd.read_csv(out)
    s = runs[True]["1m"]
    total = float(s["cum_funding"].iloc[-1])
    assert len(r) == 1
    assert r["funding"].iloc[0] == pytest.approx(total, rel=1e-9)
    assert r["pnl"].iloc[0] == pytest.approx(float(s["cum_pnl"].iloc[-1]), rel=1e-9)
