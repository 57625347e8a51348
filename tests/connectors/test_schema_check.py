"""Existing tables are checked against connectors/schema.py at start, on a real QuestDB."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time

import pytest

from connectors.questdb_sink import drop_tables, ensure_tables
from connectors.schema import TABLES, TICKS
from connectors.schema_check import SchemaMismatch
from tests.conftest import REPO

TICKS_COLS = (
    "ts TIMESTAMP, symbol SYMBOL, {price}, qty DOUBLE, trade_id LONG, first_id LONG, "
    "last_id LONG, buyer_maker BOOLEAN"
)


@pytest.fixture
def empty(questdb):
    """No pairstream table before or after the test (the next test recreates its own)."""
    drop_tables(questdb.http)
    yield questdb
    drop_tables(questdb.http)


def create(http, name: str, cols: str, tail: str) -> None:
    http.exec(f"CREATE TABLE {name} ({cols}) {tail}")


def catalogue(http, name: str) -> tuple[dict, dict]:
    meta = {r["table_name"]: r for r in http.query("SELECT * FROM tables()")}[name]
    cols = {r["column"]: r for r in http.query(f"SELECT * FROM table_columns('{name}')")}
    return meta, cols


def test_a_wrong_column_type_stops_with_one_line_naming_table_column_and_fix(empty):
    create(empty.http, "ticks", TICKS_COLS.format(price="price STRING"),
           "timestamp(ts) PARTITION BY DAY WAL DEDUP UPSERT KEYS(ts, symbol, trade_id)")
    with pytest.raises(SchemaMismatch) as e:
        ensure_tables(empty.conf)
    assert str(e.value) == (
        "table ticks: column price is STRING, pairstream writes DOUBLE; fix: ALTER TABLE ticks "
        "ALTER COLUMN price TYPE DOUBLE, or rename it (RENAME TABLE ticks TO ticks_old) or drop "
        "it, and pairstream creates it anew"
    )
    # the fix it names works, and then the table passes
    empty.http.exec("ALTER TABLE ticks ALTER COLUMN price TYPE DOUBLE")
    empty.http.wait_applied(["ticks"])  # a WAL table applies the ALTER asynchronously
    ensure_tables(empty.conf)


@pytest.mark.parametrize(
    ("tail", "gist"),
    [
        ("timestamp(ts) PARTITION BY HOUR WAL", "table ticks is partitioned by HOUR"),
        ("timestamp(ts) PARTITION BY DAY BYPASS WAL", "table ticks is not a WAL table"),
        ("", "table ticks is not a WAL table"),  # no designated timestamp, no partitions
    ],
)
def test_table_layout_mismatches_stop_start_up(empty, tail, gist):
    create(empty.http, "ticks", TICKS_COLS.format(price="price DOUBLE"), tail)
    with pytest.raises(SchemaMismatch, match=f"^{gist}"):
        ensure_tables(empty.conf)


def test_other_designated_timestamp_stops_start_up(empty):
    create(empty.http, "ticks", "t2 TIMESTAMP, " + TICKS_COLS.format(price="price DOUBLE"),
           "timestamp(t2) PARTITION BY DAY WAL")
    with pytest.raises(SchemaMismatch, match="^table ticks: designated timestamp is t2"):
        ensure_tables(empty.conf)


def test_dedup_off_or_on_other_keys_is_enabled_with_the_schema_keys_and_logged(empty, caplog):
    create(empty.http, "ticks", TICKS_COLS.format(price="price DOUBLE"),
           "timestamp(ts) PARTITION BY DAY WAL")
    create(empty.http, "bars", "ts TIMESTAMP, symbol SYMBOL, tf SYMBOL",
           "timestamp(ts) PARTITION BY DAY WAL DEDUP UPSERT KEYS(ts, symbol)")
    with caplog.at_level(logging.WARNING, "pairstream.questdb"):
        ensure_tables(empty.conf)
    empty.http.wait_applied()  # ALTERs of a WAL table apply asynchronously
    for t in TABLES:
        meta, cols = catalogue(empty.http, t.name)
        assert meta["dedup"] and {c for c, r in cols.items() if r["upsertKey"]} == {"ts", *t.keys}
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == (
        "questdb: table ticks did not match the schema; ran: "
        "ALTER TABLE ticks DEDUP ENABLE UPSERT KEYS(ts, symbol, trade_id)"
    )
    assert lines[1].startswith("questdb: table bars did not match the schema; ran: "
                               "ALTER TABLE bars ADD COLUMN open DOUBLE; ")
    assert lines[1].endswith("; ALTER TABLE bars DEDUP ENABLE UPSERT KEYS(ts, symbol, tf)")
    assert len(lines) == 2
    caplog.clear()
    ensure_tables(empty.conf)  # now every table matches: nothing to do, nothing logged
    assert caplog.records == []


def test_columns_the_schema_added_later_are_added_with_their_types(empty):
    """An older table (here: ticks without buyer_maker) gets the new columns; rows stay."""
    cols = TICKS_COLS.format(price="price DOUBLE").replace(", buyer_maker BOOLEAN", "")
    create(empty.http, "ticks", cols,
           "timestamp(ts) PARTITION BY DAY WAL DEDUP UPSERT KEYS(ts, symbol, trade_id)")
    empty.http.exec("INSERT INTO ticks (ts, symbol, price, trade_id) "
                    "VALUES ('2024-07-19T00:00:00Z', 'BTCUSDT', 1.5, 7)")
    empty.http.wait_applied(["ticks"])
    ensure_tables(empty.conf, [TICKS])
    empty.http.wait_applied(["ticks"])  # ALTERs of a WAL table apply asynchronously
    _, have = catalogue(empty.http, "ticks")
    assert {c: r["type"] for c, r in have.items()} == {"ts": "TIMESTAMP", **dict(TICKS.columns)}
    assert empty.http.query("SELECT trade_id, buyer_maker FROM ticks") == [
        {"trade_id": 7, "buyer_maker": False}  # QuestDB's BOOLEAN has no NULL
    ]


def test_a_missing_identity_column_stops_start_up(empty):
    """Old rows would hold NULL in a DEDUP key: filling it is the user's call, not ours."""
    cols = TICKS_COLS.format(price="price DOUBLE").replace("trade_id LONG, ", "")
    create(empty.http, "ticks", cols, "timestamp(ts) PARTITION BY DAY WAL")
    with pytest.raises(SchemaMismatch, match=(
        r"^table ticks: column trade_id \(LONG, part of the DEDUP key\) is missing; "
        r"fix: ALTER TABLE ticks ADD COLUMN trade_id LONG, fill it"
    )):
        ensure_tables(empty.conf)


def test_string_where_the_schema_says_varchar_is_accepted(empty):
    """ILP writes strings into STRING and VARCHAR columns alike (tables of older versions)."""
    create(empty.http, "alerts",
           "ts TIMESTAMP, rule_id SYMBOL, pair SYMBOL, tf SYMBOL, state SYMBOL, severity SYMBOL, "
           "expr STRING, value DOUBLE, message STRING",
           "timestamp(ts) PARTITION BY DAY WAL DEDUP UPSERT KEYS(ts, rule_id, pair, tf)")
    ensure_tables(empty.conf)


def test_flow_with_a_wrong_ticks_column_fails_within_seconds_with_one_line(empty):
    """Acceptance: a pre-created ticks with a wrong type stops start-up, no hang, one line."""
    create(empty.http, "ticks", TICKS_COLS.format(price="price STRING"),
           "timestamp(ts) PARTITION BY DAY WAL DEDUP UPSERT KEYS(ts, symbol, trade_id)")
    env = dict(os.environ, PAIRSTREAM_CONFIG=str(REPO / "config" / "demo.toml"),
               QDB_CLIENT_CONF=empty.conf)
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "bytewax.run", "flows.pairs"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )
    took = time.monotonic() - start
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "pairstream: error: table ticks: column price is STRING, pairstream writes DOUBLE; fix: "
        "ALTER TABLE ticks ALTER COLUMN price TYPE DOUBLE, or rename it (RENAME TABLE ticks TO "
        "ticks_old) or drop it, and pairstream creates it anew"
    ]
    assert empty.http.query("SELECT count() n FROM ticks") == [{"n": 0}]
    # ~2 s here (interpreter and imports); the bound only says "no hang", even under load
    assert took < 60, took


def test_tables_of_the_version_before_presets_are_upgraded_in_place(empty, caplog):
    """pair_analytics/signals written before presets existed are the base set: their rows get
    preset = 'default' and the DEDUP key grows, so a re-written bar still upserts them."""
    from connectors.schema import PAIR_ANALYTICS

    old = [(c, t) for c, t in PAIR_ANALYTICS.columns if c != "preset"]
    create(empty.http, "pair_analytics", ", ".join(["ts TIMESTAMP", *(f"{c} {t}" for c, t in old)]),
           "timestamp(ts) PARTITION BY DAY WAL DEDUP UPSERT KEYS(ts, pair, tf)")
    empty.http.exec("INSERT INTO pair_analytics (ts, pair, tf, y, x, warm) VALUES "
                    "('2024-07-01T00:00:00.000000Z', 'BTCUSDT/ETHUSDT', '1m', 1.5, 2.5, false)")
    empty.http.wait_applied(["pair_analytics"])
    with caplog.at_level(logging.WARNING, logger="pairstream"):
        ensure_tables(empty.conf)
    assert any("UPDATE pair_analytics SET preset = 'default'" in r.getMessage()
               for r in caplog.records)
    meta, cols = catalogue(empty.http, "pair_analytics")
    assert meta["dedup"] and {c for c, r in cols.items() if r["upsertKey"]} == {
        "ts", "pair", "tf", "preset"}
    assert empty.http.query("SELECT pair, tf, preset, y FROM pair_analytics") == [
        {"pair": "BTCUSDT/ETHUSDT", "tf": "1m", "preset": "default", "y": 1.5}]
    ensure_tables(empty.conf)  # now it matches: nothing more to fix
    # the old row is upserted by the same bar written again, not duplicated
    empty.http.exec("INSERT INTO pair_analytics (ts, pair, tf, preset, y, x, warm) VALUES "
                    "('2024-07-01T00:00:00.000000Z', 'BTCUSDT/ETHUSDT', '1m', 'default', 9.5, "
                    "2.5, false)")
    empty.http.wait_applied(["pair_analytics"])
    assert empty.http.query("SELECT preset, y FROM pair_analytics") == [
        {"preset": "default", "y": 9.5}]
