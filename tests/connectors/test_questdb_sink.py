"""The QuestDB sink against a real server: exact round trip, idempotence, outages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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
