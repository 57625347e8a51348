"""Every query Grafana will run (panels, variables, annotations, alert rules) against QuestDB.

Each query goes through :func:`tests.grafana.macros.render_query` (template variables with each
of their values, then the plugin's macros for a concrete time range) and runs on the real
QuestDB filled by ``grafana_tables``. Two dashboard ranges: the whole history (zoomed out:
``SAMPLE BY`` of tens of minutes) and the 8 live minutes of window A (sub-second sampling).
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.grafana import walk
from tests.grafana.macros import TimeRange, render_query

DASHBOARDS = walk.dashboards()
DASH_QUERIES = [q for name, d in DASHBOARDS.items() for q in walk.dashboard_queries(name, d)]
ALERT_QUERIES = list(walk.alert_queries())
NUMERIC = (int, float)


def _ranges(filled) -> dict[str, TimeRange]:
    return {
        "history": TimeRange(
            filled.first - timedelta(minutes=1), filled.last + timedelta(minutes=1)
        ),
        "live": TimeRange(filled.live_first, filled.live_first + timedelta(minutes=8)),
    }


def _combos(dash: dict[str, Any], http) -> list[dict[str, str]]:
    values = walk.variable_values(dash)
    for v in dash.get("templating", {}).get("list", []):
        if v["type"] == "query":
            rows = http.query(v["query"])
            values[v["name"]] = [str(next(iter(r.values()))) for r in rows]
    names = sorted(values)
    return [dict(zip(names, combo)) for combo in itertools.product(*(values[n] for n in names))]


def _time_column(rows: list[dict[str, Any]]) -> str:
    for k, v in rows[0].items():
        if isinstance(v, str) and len(v) >= 20 and v[4] == "-" and v[10] == "T":
            return k
    raise AssertionError(f"no timestamp column in {list(rows[0])}")


def _fields_used(panel: dict[str, Any]) -> set[str]:
    """Column names the panel refers to: overrides, reduce field regexes, transformations."""
    used = set()
    for o in panel.get("fieldConfig", {}).get("overrides", []):
        if o["matcher"]["id"] == "byName":
            used.add(o["matcher"]["options"])
    fields = panel.get("options", {}).get("reduceOptions", {}).get("fields", "")
    if fields.startswith("/^") and fields.endswith("$/"):
        used.add(fields[2:-2])
    for t in panel.get("transformations", []):
        for key in ("columnField", "rowField", "valueField"):
            if key in t["options"]:
                used.add(t["options"][key])
    return used


def check_result(q: walk.Query, rows: list[dict[str, Any]], need_rows: bool) -> bool:
    """Check one result; True when it holds a number to show.

    Rows whose estimator columns are NULL are legitimate (a timeframe still warming up, e.g.
    1m analytics over the 8 minutes of window A); that a panel shows numbers at all is checked
    over every range and variable value together by the caller.
    """
    if need_rows:
        assert rows, f"{q.where}: no rows"
    if not rows:
        return False
    cols = set(rows[0])
    missing = _fields_used(q.panel) - cols
    assert not missing, f"{q.where}: panel uses {missing}, query returns {sorted(cols)}"
    numeric = [
        c
        for c in cols
        if any(isinstance(r[c], NUMERIC) and not isinstance(r[c], bool) for r in rows)
    ]
    if q.kind in ("timeseries", "candlestick"):
        t = _time_column(rows)
        times = [r[t] for r in rows]
        assert times == sorted(times), f"{q.where}: not ascending by time (plugin long→wide)"
        if q.kind == "candlestick":
            assert {"open", "high", "low", "close"} <= cols, f"{q.where}: OHLC missing"
            for r in rows:
                assert (
                    r["low"]
                    <= min(r["open"], r["close"])
                    <= max(r["open"], r["close"])
                    <= r["high"]
                ), f"{q.where}: inconsistent candle {r}"
        if q.fmt == 0:
            long = [c for c in cols - {t} if all(isinstance(r[c], str) for r in rows)]
            assert len(long) <= 1, f"{q.where}: several label columns {long}"
    if q.kind == "annotation":
        assert {"time", "text"} <= cols, f"{q.where}: annotations need time and text"
    return bool(numeric)


def test_every_query_is_found():
    kinds = {q.kind for q in DASH_QUERIES}
    assert {
        "timeseries",
        "candlestick",
        "table",
        "stat",
        "bargauge",
        "variable",
        "annotation",
    } <= kinds
    assert len(DASH_QUERIES) >= 30
    assert len(ALERT_QUERIES) == 3


@pytest.mark.parametrize("q", DASH_QUERIES, ids=[q.where for q in DASH_QUERIES])
def test_dashboard_query_runs_and_returns_what_the_panel_uses(q, questdb, grafana_tables):
    dash = DASHBOARDS[q.where.split(" › ")[0]]
    combos = _combos(dash, questdb.http)
    assert combos, f"{q.where}: no variable values"
    shows_numbers = False
    for rng_name, rng in _ranges(grafana_tables).items():
        for variables in combos:
            sql = render_query(q.sql, rng, variables, min_interval=q.panel.get("interval"))
            try:
                rows = questdb.http.query(sql)
            except Exception as e:  # noqa: BLE001 - report the SQL that failed
                raise AssertionError(f"{q.where} [{rng_name} {variables}]: {e}\n{sql}") from None
            shows_numbers |= check_result(q, rows, need_rows=rng_name == "history")
    if q.kind in ("timeseries", "candlestick", "stat", "bargauge"):
        assert shows_numbers, f"{q.where}: no numeric values for any range or variable"


def test_variable_defaults_are_among_their_values(questdb, grafana_tables):
    for name, dash in DASHBOARDS.items():
        for v in dash["templating"]["list"]:
            if v["type"] == "query":
                values = [str(next(iter(r.values()))) for r in questdb.http.query(v["query"])]
            else:
                values = [o["value"] for o in v["options"]]
            assert v["current"]["value"] in values, f"{name} ${v['name']}"


@pytest.mark.parametrize("q", ALERT_QUERIES, ids=[q.where for q in ALERT_QUERIES])
def test_alert_query_runs(q, questdb, grafana_tables):
    """Evaluated as Grafana would, range = now − from … now − to, with "now" at the end of the
    data or at the last warm analytics row (window A's 1m/5m analytics are still warming up,
    where a rule rightly sees no data)."""
    warm = questdb.http.query("SELECT tf, max(ts) t FROM pair_analytics WHERE warm")
    nows = [datetime.fromisoformat(r["t"].replace("Z", "+00:00")) for r in warm]
    rows, sql = [], ""
    for now in (grafana_tables.last, *nows):
        start, end = now - timedelta(seconds=q.relative[0]), now - timedelta(seconds=q.relative[1])
        sql = render_query(q.sql, TimeRange(start, end), {}, interval_ms=q.interval_ms)
        rows = rows or questdb.http.query(sql)
    assert rows, f"{q.where}: no rows\n{sql}"
    labels = [c for c in rows[0] if isinstance(rows[0][c], str)]
    values = [c for c in rows[0] if isinstance(rows[0][c], NUMERIC) and c != "time"]
    assert len(values) == 1, f"{q.where}: one value column for the condition, got {values}"
    assert labels, f"{q.where}: a label column (pair/symbol) gives one alert per series"
    assert all(r[values[0]] is not None for r in rows)
