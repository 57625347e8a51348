"""The front door: `pairstream demo` fills QuestDB and says how to query it."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace

from connectors.questdb_http import QuestDBHttp
from connectors.questdb_server import free_port
from flows import cli
from pairstream.config import QuestDBConfig, parse
from tests.conftest import REPO


def test_demo_replays_the_sample_into_questdb(fresh_tables):
    env = dict(os.environ, QDB_CLIENT_CONF=fresh_tables.conf)
    proc = subprocess.run(
        [sys.executable, "-m", "flows.cli", "demo"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "BTCUSDT      10701 ticks" in proc.stdout
    assert "ETHUSDT      13655 ticks" in proc.stdout
    assert "curl -G" in proc.stdout and "psql" in proc.stdout
    rows = fresh_tables.http.query("SELECT symbol, count() n FROM ticks ORDER BY symbol")
    assert rows == [{"symbol": "BTCUSDT", "n": 10_701}, {"symbol": "ETHUSDT", "n": 13_655}]


def test_a_local_questdb_is_started_when_none_answers(tmp_path, monkeypatch):
    port = free_port()
    monkeypatch.setattr(cli, "LOCAL_DATA", tmp_path / "qdb")
    cfg = replace(parse({}), questdb=QuestDBConfig(conf=f"http::addr=127.0.0.1:{port};"))
    http = QuestDBHttp.from_conf(cfg.questdb.conf, timeout=2)
    assert not http.ping()
    with cli.questdb_for(cfg) as srv:
        assert srv is not None and http.ping()
        assert (tmp_path / "qdb" / "db").is_dir()
    assert not http.ping()  # stopped again


def test_run_with_recovery_initialises_the_directory_once(tmp_path, monkeypatch):
    """`pairstream run --recovery DIR` creates the partitions the first time, then reuses them,
    and hands `-r DIR -s 5 -b 30` to `python -m bytewax.run flows.pairs`."""
    calls = []
    monkeypatch.setattr(cli, "run_flow", lambda path, args: calls.append(args) or 0)
    monkeypatch.setattr(cli, "questdb_for", _no_questdb)
    rec = tmp_path / "recovery"
    for _ in range(2):
        assert (
            cli.main(
                ["run", "--config", str(REPO / "config" / "demo.toml"), "--recovery", str(rec)]
            )
            == 0
        )
    assert [p.name for p in rec.iterdir()] == ["part-0.sqlite3"]
    assert calls == [["-r", str(rec), "-s", "5", "-b", "30"]] * 2


class _no_questdb:  # noqa: N801 - stands in for the questdb_for context manager
    def __init__(self, cfg, keep=False):
        pass

    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return None


def test_replay_command_runs_the_flow_with_progress_and_summary(fresh_tables, tmp_path):
    env = dict(os.environ, QDB_CLIENT_CONF=fresh_tables.conf)
    files = sorted(str(p) for p in (REPO / "data" / "sample").glob("futures-um-trades-*.csv"))
    proc = subprocess.run(
        [sys.executable, "-m", "flows.cli", "replay", *files],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "24,356 records from 2 file(s)" in proc.stdout
    assert "100% 24,356/24,356 records" in proc.stderr  # the progress bar reached the end
    counts = {
        t: fresh_tables.http.query(f"SELECT count() n FROM {t}")[0]["n"]
        for t in ("ticks", "bars", "pair_analytics")
    }
    assert counts["ticks"] == 24_356 and counts["bars"] > 900 and counts["pair_analytics"] > 400
    for table, n in counts.items():
        assert f"{table:<15} {n:>9,} rows" in proc.stdout
