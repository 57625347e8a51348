"""``pairstream backtest`` end to end: against what the live flow wrote, a 24-set grid, errors.

The live-flow check replays the week of 1m klines through ``flows.pairs`` into the session's
real QuestDB and compares its ``signals`` table with the backtest of the same bars and
parameters: positions and actions exact, pnl / fees / cum_pnl within 1e-9·max(|value|, |y|)
(PnL is a difference of prices; ILP and the JSON read-back carry doubles exactly, so in
practice they are bit-identical).
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from connectors.questdb_server import free_port
from connectors.questdb_sink import drop_tables
from flows.backtest_cli import read_klines
from flows.cli import main
from pairstream.backtest import ParamSet, align, simulate
from pairstream.config import load
from tests.conftest import REPO, run_flow

KLINES = REPO / "data" / "klines"
BTC = KLINES / "futures-um-klines-1m-BTCUSDT-2024-07-01_2024-07-07.csv"
ETH = KLINES / "futures-um-klines-1m-ETHUSDT-2024-07-01_2024-07-07.csv"
PAIR = "BTCUSDT/ETHUSDT"


def write_config(path: Path, extra_symbols: str = "", extra_pairs: str = "") -> Path:
    path.write_text(
        f"""
symbols    = ["BTCUSDT", "ETHUSDT"{extra_symbols}]
timeframes = ["1m"]
pairs      = [{{ y = "BTCUSDT", x = "ETHUSDT" }}{extra_pairs}]

[source]
kind  = "replay"
paths = ["{BTC}", "{ETH}"]

[analytics]
window = 60
z_window = 60
adf_window = 120
adf_every = 10

[signals]
entry = 2.0
exit = 0.5
stop = 3.0
fee_bps = 4.0
"""
    )
    return path


def run_cli(monkeypatch, capsys, config: Path, conf: str, *args: str) -> tuple[int, str, str]:
    monkeypatch.setenv("PAIRSTREAM_CONFIG", str(config))
    monkeypatch.setenv("QDB_CLIENT_CONF", conf)
    try:
        code = main(["backtest", *args])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def live(questdb, tmp_path_factory):
    """The flow's own run over the week of klines (tables dropped first)."""
    drop_tables(questdb.http)
    config = write_config(tmp_path_factory.mktemp("live") / "week.toml")
    run_flow(questdb, config)
    return questdb, config


def test_backtest_reproduces_the_live_flows_signals(live, monkeypatch, capsys, tmp_path):
    questdb, config = live
    monkeypatch.setenv("QDB_CLIENT_CONF", questdb.conf)
    cfg = load(config)
    stored = questdb.http.query(
        f"SELECT ts, position, action, pnl, fees, cum_pnl, y FROM signals "
        f"WHERE pair = '{PAIR}' AND tf = '1m' ORDER BY ts"
    )
    bars = align(read_klines(str(BTC), "BTCUSDT") + read_klines(str(ETH), "ETHUSDT"),
                 "BTCUSDT", "ETHUSDT", "1m")  # fmt: skip
    got = simulate(bars, ParamSet(cfg.analytics_for("1m"), cfg.signals))
    assert len(stored) == len(got) == 10080
    assert [r["ts"] for r in stored] == [s.ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ") for s in got]
    assert [r["position"] for r in stored] == [s.position for s in got]
    assert [r["action"] for r in stored] == [s.action for s in got]
    assert {"enter_long", "enter_short", "exit", "stop"} <= {s.action for s in got}
    y = np.array([r["y"] for r in stored])
    for col in ("pnl", "fees", "cum_pnl"):
        a = np.array([getattr(s, col) for s in got])
        b = np.array([r[col] for r in stored])
        assert (np.abs(a - b) <= 1e-9 * np.maximum(np.abs(b), y)).all(), col

    # the command over the bars the flow stored: its row for the config's own parameters
    # carries the same PnL and trade count as the signals table; a re-run upserts
    args = ("--tf", "1m", "--grid", "exit=0.5,0", "--dir", str(tmp_path), "-w", "1")
    for _ in range(2):
        code, out, err = run_cli(monkeypatch, capsys, config, questdb.conf, *args)
        assert code == 0, err
        assert "10,080 bars 2024-07-01T00-00 .. 2024-07-08T00-00 from QuestDB" in out
        assert "stored 2 row(s) in QuestDB table backtests" in out
    questdb.http.wait_applied()
    rows = questdb.http.query("SELECT * FROM backtests ORDER BY exit DESC")
    assert len(rows) == 2
    assert [r["exit"] for r in rows] == [0.5, 0.0]
    assert rows[0]["pnl"] == pytest.approx(stored[-1]["cum_pnl"], rel=1e-9)
    trades = sum(r["action"] in ("exit", "stop") for r in stored)
    assert rows[0]["trades"] == trades
    assert rows[0]["params"].startswith("entry=2;exit=0.5;stop=3;fee_bps=4;use=zscore;")
    assert rows[0]["ts"] == "2024-07-01T00:00:00.000000Z"
    assert rows[0]["last_ts"] == "2024-07-07T23:59:00.000000Z"
    csv_path = tmp_path / "backtest_BTCUSDT-ETHUSDT_1m_2024-07-01T00-00_2024-07-08T00-00.csv"
    with open(csv_path, newline="") as fh:
        csv_rows = list(csv.DictReader(fh))
    assert [float(r["pnl"]) for r in csv_rows] == [r["pnl"] for r in rows]


def test_questdb_errors_are_one_line(live, monkeypatch, capsys, tmp_path):
    questdb, _ = live
    config = write_config(
        tmp_path / "sol.toml", ', "SOLUSDT"', ', { y = "BTCUSDT", x = "SOLUSDT" }'
    )
    cases = [
        (("--pair", "BTCUSDT/SOLUSDT"), "no 1m bars of SOLUSDT in QuestDB table bars"),
        (("--from", "2025-01-01"), "empty range: no 1m bars of BTCUSDT/ETHUSDT in [2025-01-01"),
        (("--tf", "5m"), "no 5m bars of BTCUSDT and ETHUSDT"),
    ]
    for args, message in cases:
        code, out, err = run_cli(monkeypatch, capsys, config, questdb.conf, *args)
        assert code == 2 and out == ""
        assert err.startswith("pairstream: error: ") and err.count("\n") == 1, err
        assert message in err, err


def test_a_24_set_grid_over_the_week_prints_its_table(tmp_path):
    out_csv = tmp_path / "grid.csv"
    cmd = [
        sys.executable, "-m", "flows.cli", "backtest", "--klines", str(BTC), str(ETH),
        "--no-store", "--stop", "4", "-o", str(out_csv), "-w", "2",
        "--grid", "entry=1.5:3:0.5", "window=30,60,120", "exit=0,0.5",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert "24 parameter set(s)" in lines[0]
    assert lines[1].split() == [
        "#", "entry", "window", "exit", "trades", "hit%", "pnl", "return%", "sharpe", "maxDD%"
    ]  # fmt: skip
    body = lines[2:26]
    assert [int(r.split()[0]) for r in body] == list(range(1, 25))
    assert lines[26] == f"wrote {out_csv}"
    assert len({len(r) for r in lines[1:26]}) == 1  # aligned
    with open(out_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 24 and len({r["params"] for r in rows}) == 24
    assert [(float(r["entry"]), int(r["window"]), float(r["exit"])) for r in rows[:3]] == [
        (1.5, 30, 0.0), (1.5, 30, 0.5), (1.5, 60, 0.0)
    ]  # fmt: skip
    assert all(int(r["bars"]) == 10080 for r in rows)
    assert any(int(r["trades"]) > 0 for r in rows)


@pytest.mark.parametrize(
    "args, message",
    [
        (("--pair", "BTCUSDT/SOLUSDT"), "--pair: unknown pair 'BTCUSDT/SOLUSDT' (configured in"),
        (("--pair", "btc"), "--pair: expected a pair like BTCUSDT/ETHUSDT, got 'btc'"),
        (("--grid", "entri=1,2"), "unknown parameter 'entri' (known: entry, exit, stop,"),
        (("--entry", "abc"), "signals.entry: expected a number, got 'abc'"),
        (("--grid", "entry=0.2,2"), "signals.exit: must be ≥ 0 and below signals.entry (0.2)"),
        (("--from", "yesterday"), "--from: expected an ISO time like 2024-07-01T00:00"),
        (("--from", "2024-07-02", "--to", "2024-07-01"), "--from must be before --to"),
        (("--from", "2025-01-01"), "empty range: no 1m bars of BTCUSDT/ETHUSDT in [2025-01-01"),
        (("--tf", "5m"), "--klines hold 1m bars, not --tf 5m"),
        (("--tf", "fast"), "--tf: expected a timeframe like 1m, got 'fast'"),
    ],
)
def test_argument_errors_are_one_line(args, message, monkeypatch, capsys, tmp_path):
    config = write_config(tmp_path / "c.toml")
    dead = f"http::addr=127.0.0.1:{free_port()};"
    full = ("--klines", str(BTC), str(ETH), "--no-store", "--dir", str(tmp_path), *args)
    code, out, err = run_cli(monkeypatch, capsys, config, dead, *full)
    assert code == 2 and out == ""
    assert err.startswith("pairstream: error: ") and err.count("\n") == 1, err
    assert message in err, err


def test_missing_files_and_unreachable_questdb_are_one_line(monkeypatch, capsys, tmp_path):
    config = write_config(tmp_path / "c.toml")
    dead = f"http::addr=127.0.0.1:{free_port()};"
    not_klines = tmp_path / "BTCUSDT-trades.csv"
    not_klines.write_text("1,60000.1,0.5,30000.05,1719792000000,true\n")
    cases = [
        (("--klines", str(tmp_path / "no.csv"), str(ETH), "--no-store"), "no.csv does not exist"),
        (("--klines", str(not_klines), str(ETH), "--no-store"), "line 1: bad kline row"),
        ((), "QuestDB at http://127.0.0.1:"),
        (("--klines", str(BTC), str(ETH)), "--no-store runs --klines without it"),
    ]
    for args, message in cases:
        code, out, err = run_cli(monkeypatch, capsys, config, dead, *args)
        assert code == 2 and out == ""
        assert err.startswith("pairstream: error: ") and err.count("\n") == 1, err
        assert message in err, err
