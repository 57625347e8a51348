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
    from connectors.schema import TABLES

    for t in TABLES:
        questdb.http.exec(f"DROP TABLE IF EXISTS {t.name}")
    return questdb
