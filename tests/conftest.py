"""Shared fixtures: a real QuestDB server for the whole test session.

The server is the ``org.questdb:questdb`` jar (see :mod:`connectors.questdb_server`) on free
loopback ports with a temporary data directory, stopped (SIGTERM) when the session ends.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.questdb_server import QuestDBServer

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data" / "binance"
SAMPLE = REPO / "data" / "sample"


@pytest.fixture(scope="session")
def questdb():
    """A live QuestDB: ``.conf`` (client conf string), ``.http`` (SQL client), ports, ``.root``."""
    srv = QuestDBServer().start()
    try:
        yield srv
    finally:
        srv.stop()


_counter = iter(range(1_000_000))


@pytest.fixture
def fresh_tables(questdb):
    """Drop every pairstream table so a test starts from empty tables (recreated by the sink)."""
    from connectors.questdb_sink import drop_tables

    drop_tables(questdb.http)
    return questdb


def run_flow(questdb, config: Path, *args: str, timeout: float = 900, env: dict | None = None):
    """Run ``python -m bytewax.run flows.pairs`` on ``config`` into ``questdb``; wait for WAL."""
    import os
    import subprocess
    import sys

    full_env = dict(os.environ, PAIRSTREAM_CONFIG=str(config), QDB_CLIENT_CONF=questdb.conf)
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-m", "bytewax.run", "flows.pairs", *args],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    questdb.http.wait_applied()
    return proc


@pytest.fixture(scope="module")
def window_a(questdb):
    """Tables holding exactly one replay of the bundled sample (window A) through the flow."""
    from connectors.questdb_sink import drop_tables

    drop_tables(questdb.http)
    run_flow(questdb, REPO / "config" / "demo.toml")
    return questdb
