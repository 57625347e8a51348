"""The QuestDB sink against a real server: exact round trip, idempotence, outages."""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys
from pathlib import Path

import bytewax.operators as op
import pytest

from connectors import dead_letter
from connectors.frames import dt_to_ms
from connectors.questdb_server import QuestDBServer
from connectors.questdb_sink import QuestDBSink
from connectors.replay import ReplaySource
from pairstream.records import TickBatch, expand_ticks
from tests.conftest import REPO, SAMPLE

FRAMES = str(SAMPLE / "futures-um-ws-trade-frames-BTCUSDT+ETHUSDT-merged-*.txt.gz")


def sample_batches():
    """Window A as the full-speed replay hands it over (TickBatches), read from its partition."""
    src = ReplaySource([FRAMES], ["BTCUSDT", "ETHUSDT"])
    (part_name,) = src.list_parts()
    part = src.build_part("t", part_name, None)
    out = []
    while True:
        try:
            out.extend(part.next_batch())
        except StopIteration:
            return out


def sample_ticks():
    """Window A ticks, one Tick record each."""
    return expand_ticks(sample_batches())


def read_ticks(http) -> list[tuple]:
    rows = http.query(
        "SELECT symbol, ts, price, qty, trade_id, first_id, last_id, buyer_maker "
        "FROM ticks ORDER BY symbol, trade_id"
    )
    return [tuple(r.values()) for r in rows]


def as_rows(ticks) -> list[tuple]:
    """Ticks as QuestDB returns them (ISO micro timestamps), sorted like read_ticks."""
    out = []
    for t in sorted(ticks, key=lambda t: (t.symbol, t.trade_id)):
        ms = dt_to_ms(t.ts)
        iso = t.ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}000Z"
        out.append(
            (t.symbol, iso, t.price, t.qty, t.trade_id, t.first_id, t.last_id, t.buyer_maker)
        )
    return out


def write(sink: QuestDBSink, records, batch: int = 5000, hook=None) -> None:
    part = sink.build_part("test", "ticks", None)
    for i in range(0, len(records), batch):
        part.write_batch(records[i : i + batch])
        if hook:
            hook(i // batch)
    part.close()


def test_ticks_round_trip_exactly(fresh_tables):
    http = fresh_tables.http
    ticks = sample_ticks()
    assert len(ticks) == 24_356
    write(QuestDBSink(fresh_tables.conf), ticks)
    http.wait_applied(["ticks"])
    assert read_ticks(http) == as_rows(ticks)


def test_tick_batches_round_trip_exactly(fresh_tables):
    http = fresh_tables.http
    batches = sample_batches()
    assert {type(b) for b in batches} == {TickBatch}
    write(QuestDBSink(fresh_tables.conf, flush_rows=3000), batches, batch=3)
    http.wait_applied(["ticks"])
    assert read_ticks(http) == as_rows(expand_ticks(batches))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # questdb.ingress: still the Buffer
def test_tick_batches_write_the_same_ilp_as_single_ticks():
    from questdb.ingress import Buffer

    from connectors.questdb_sink import tick_frame
    from connectors.schema import TICKS

    batches = sample_batches()[:6]
    for version in (1, 2):
        rows = Buffer(protocol_version=version)
        for t in expand_ticks(batches):
            symbols, columns = TICKS.row(t)
            rows.row("ticks", symbols=symbols, columns=columns, at=t.ts)
        bulk = Buffer(protocol_version=version)
        bulk.dataframe(tick_frame(batches), table_name="ticks", symbols=["symbol"], at="ts")
        assert len(rows) > 0 and bytes(bulk) == bytes(rows)


def test_writing_twice_keeps_one_copy(fresh_tables):
    http = fresh_tables.http
    ticks = sample_ticks()[:3000]
    sink = QuestDBSink(fresh_tables.conf)
    write(sink, ticks)
    write(sink, ticks[::-1])  # again, in another order
    http.wait_applied(["ticks"])
    assert read_ticks(http) == as_rows(ticks)


def test_flushes_on_timer_when_the_stream_is_quiet(fresh_tables):
    """A handful of rows, far below flush_rows, reach QuestDB without close()."""
    http = fresh_tables.http
    ticks = sample_ticks()[:7]
    part = QuestDBSink(fresh_tables.conf, flush_rows=10_000, flush_interval=0.05).build_part(
        "t", "ticks", None
    )
    try:
        part.write_batch(ticks)
        # wait for the background flush, then for WAL apply; no close() or snapshot() here
        import time

        deadline = time.monotonic() + 30
        while part.rows_written < len(ticks) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert part.rows_written == len(ticks)
        http.wait_applied(["ticks"])
        assert read_ticks(http) == as_rows(ticks)
    finally:
        part.close()


def test_close_writes_a_buffer_of_many_flushes_without_waiting_for_the_timer(fresh_tables):
    """The writer takes 50,000 rows per flush; a drain must take the rest at once, not one
    flush per timer period (with an hour's timer it used to hang for hours)."""
    import threading

    http = fresh_tables.http
    batches = sample_batches()
    copies = 3  # 73,068 rows handed over: two flushes; DEDUP keeps one copy of each tick
    part = QuestDBSink(fresh_tables.conf, flush_rows=10**9, flush_interval=3600.0).build_part(
        "t", "ticks", None
    )
    part.write_batch(batches * copies)
    closer = threading.Thread(target=part.close, daemon=True)
    closer.start()
    closer.join(120)  # a liveness bound, not a timing: the fixed drain needs ~1 s
    assert not closer.is_alive(), "close() waited for the flush timer"
    assert part.rows_written == copies * sum(map(len, batches))
    http.wait_applied(["ticks"])
    assert read_ticks(http) == as_rows(expand_ticks(batches))


def test_questdb_restart_mid_stream_loses_and_duplicates_nothing(tmp_path: Path):
    """SIGTERM QuestDB after a third of the stream, keep writing, start it again: all rows once."""
    srv = QuestDBServer(root=tmp_path / "qdb").start()
    ticks = sample_ticks()
    sink = QuestDBSink(srv.conf, flush_rows=1000, flush_interval=0.05, max_backoff=0.5)
    state = {"stopped": False}

    def hook(batch_no: int) -> None:
        if batch_no == 1:
            srv.stop()  # SIGTERM, wait for exit; rows keep coming meanwhile
            state["stopped"] = True
        if batch_no == 3:
            srv.start()  # same data directory and ports

    try:
        write(sink, ticks, batch=4000, hook=hook)
        assert state["stopped"]
        srv.http.wait_applied(["ticks"])
        assert read_ticks(srv.http) == as_rows(ticks)
    finally:
        srv.stop()


def test_flow_exits_with_one_line_when_questdb_is_unreachable(tmp_path: Path):
    from connectors.questdb_server import free_port

    port = free_port()  # nothing listens there
    env = dict(
        os.environ,
        PAIRSTREAM_CONFIG=str(REPO / "config" / "demo.toml"),
        QDB_CLIENT_CONF=f"http::addr=127.0.0.1:{port};",
    )
    proc = subprocess.run(
        [sys.executable, "-m", "bytewax.run", "flows.pairs"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert lines == [
        f"pairstream: error: QuestDB at http://127.0.0.1:{port} is unreachable "
        "(check [questdb] conf or QDB_CLIENT_CONF)"
    ]
    assert "Traceback" not in proc.stderr


def test_every_table_has_the_contract_of_design_md(fresh_tables):
    """ts designated, PARTITION BY DAY, WAL, DEDUP UPSERT KEYS(ts, identity...)."""
    from connectors.questdb_sink import ensure_tables
    from connectors.schema import TABLES

    http = fresh_tables.http
    ensure_tables(fresh_tables.conf)
    ensure_tables(fresh_tables.conf)  # idempotent
    meta = {r["table_name"]: r for r in http.query("SELECT * FROM tables()")}
    for t in TABLES:
        m = meta[t.name]
        assert (m["designatedTimestamp"], m["partitionBy"], m["walEnabled"], m["dedup"]) == (
            "ts",
            "DAY",
            True,
            True,
        )
        ddl = http.query(f"SHOW CREATE TABLE {t.name}")[0]["ddl"]
        assert f"DEDUP UPSERT KEYS({','.join(('ts', *t.keys))})" in ddl


def _refused_rows(ticks, bad: dict[int, dict]):
    """``ticks`` with the fields in ``bad`` (index → changes) set to values no column takes."""
    return [dataclasses.replace(t, **bad[i]) if i in bad else t for i, t in enumerate(ticks)]


def _rejected_counts(http) -> list[dict]:
    http.wait_applied(["feed_health"])
    return http.query(
        "SELECT symbol, sum(value) n FROM feed_health WHERE metric = 'rejected_rows' "
        "GROUP BY symbol"
    )


def test_rows_questdb_refuses_are_dead_lettered_and_counted_the_rest_written(
    fresh_tables, tmp_path, caplog
):
    """Acceptance: a batch with refused rows. QuestDB refuses a STRING for the BOOLEAN column
    (HTTP 400), the client a price that is no number; the others are written, once."""
    http = fresh_tables.http
    ticks = sample_ticks()
    bad = {5: {"buyer_maker": "maybe"}, 9_999: {"buyer_maker": "no"},
           24_000: {"buyer_maker": "yes"}, 17_000: {"price": "n/a"}}
    rows = _refused_rows(ticks, bad)
    dl = tmp_path / "var" / "dead.jsonl"
    sink = QuestDBSink(fresh_tables.conf, dead_letter=dl)
    part = sink.build_part("test", "ticks", None)
    with caplog.at_level(logging.WARNING, "pairstream.questdb"):
        for i in range(0, len(rows), 5000):
            part.write_batch(rows[i : i + 5000])
        part.close()  # returns: nothing is retried forever
    good = [t for i, t in enumerate(ticks) if i not in bad]
    assert (part.rows_written, part.rows_rejected) == (len(good), 4)
    http.wait_applied(["ticks"])
    assert read_ticks(http) == as_rows(good)
    entries = dead_letter.read(dl)
    assert sorted(e["row"]["trade_id"] for e in entries) == sorted(
        ticks[i].trade_id for i in bad
    )
    by_id = {e["row"]["trade_id"]: e for e in entries}
    assert by_id[ticks[5].trade_id]["row"]["buyer_maker"] == "maybe"
    assert {e["table"] for e in entries} == {"ticks"}
    assert by_id[ticks[5].trade_id]["reason"] == (
        "table: ticks, column: buyer_maker; cast error from protocol type: STRING to column "
        "type: BOOLEAN"
    )
    assert by_id[ticks[17_000].trade_id]["reason"].startswith("client: could not convert")
    assert _rejected_counts(http) == [{"symbol": "ticks", "n": 4.0}]
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == [  # one line per flush that had refused rows (here: one flush)
        f"questdb: table ticks: QuestDB refused 4 of 24356 rows (table: ticks, column: "
        f"buyer_maker; cast error from protocol type: STRING to column type: BOOLEAN); not "
        f"retried, written to {dl} (feed_health metric rejected_rows)"
    ]


def test_a_batch_of_only_refused_rows_is_dead_lettered_whole(fresh_tables, tmp_path):
    """Every row refused (e.g. a column altered under the flow): halving keeps the requests
    linear in the rows, and the partition carries on with the next batch."""
    http = fresh_tables.http
    ticks = sample_ticks()[:2_000]
    dl = tmp_path / "dead.jsonl"
    part = QuestDBSink(fresh_tables.conf, dead_letter=dl).build_part("test", "ticks", None)
    part.write_batch([dataclasses.replace(t, buyer_maker="?") for t in ticks[:1_500]])
    part.snapshot()
    part.write_batch(ticks[1_500:])
    part.close()
    assert (part.rows_written, part.rows_rejected) == (500, 1_500)
    assert len(dead_letter.read(dl)) == 1_500
    http.wait_applied(["ticks"])
    assert read_ticks(http) == as_rows(ticks[1_500:])
    assert _rejected_counts(http) == [{"symbol": "ticks", "n": 1_500.0}]


def test_a_dataflow_with_refused_rows_finishes(fresh_tables, tmp_path):
    """Through Bytewax (to_questdb): the run ends, the good rows are in QuestDB."""
    from bytewax.dataflow import Dataflow
    from bytewax.testing import TestingSource, run_main

    from connectors.questdb_sink import to_questdb

    ticks = sample_ticks()[:3_000]
    rows = _refused_rows(ticks, {10: {"buyer_maker": "x"}, 2_000: {"buyer_maker": "y"}})
    dl = tmp_path / "dead.jsonl"
    flow = Dataflow("refused")
    to_questdb("out", op.input("in", flow, TestingSource(rows, 500)),
               QuestDBSink(fresh_tables.conf, dead_letter=dl))
    run_main(flow)
    fresh_tables.http.wait_applied(["ticks"])
    assert read_ticks(fresh_tables.http) == as_rows(ticks[:10] + ticks[11:2_000] + ticks[2_001:])
    assert [e["row"]["trade_id"] for e in dead_letter.read(dl)] == [
        ticks[10].trade_id, ticks[2_000].trade_id
    ]
