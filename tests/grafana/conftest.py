"""Fixtures of the Grafana tests: QuestDB tables filled with realistic rows.

``grafana_tables`` is the one place that decides how the tables get their rows; today
:mod:`tests.grafana.filler` writes them from the real Binance data. When a replay of the full
flow (``flows.pairs`` over the same files) is available, swap its body for that replay and keep
the return value (:class:`tests.grafana.filler.Filled`): every query test keeps working.
"""

from __future__ import annotations

import pytest

from tests.grafana import filler


@pytest.fixture(scope="module")
def grafana_tables(questdb) -> filler.Filled:
    from connectors.schema import TABLES

    for t in TABLES:
        questdb.http.exec(f"DROP TABLE IF EXISTS {t.name}")
    return filler.fill(questdb)
