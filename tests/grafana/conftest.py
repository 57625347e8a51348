"""Fixtures of the Grafana tests: QuestDB tables filled with realistic rows.

``grafana_tables`` is the one place that decides how the tables get their rows:
:mod:`tests.grafana.filler` replays the real Binance data through the full flow.
"""

from __future__ import annotations

import pytest

from connectors.questdb_sink import drop_tables
from tests.grafana import filler


@pytest.fixture(scope="module")
def grafana_tables(questdb) -> filler.Filled:
    drop_tables(questdb.http)
    return filler.fill(questdb)
