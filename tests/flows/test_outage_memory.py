"""QuestDB down for 60 s while the live tape streams at 50× real time: bounded memory, nothing
lost, nothing twice, and the tables of an uninterrupted run.

Two flows (``python -m bytewax.run flows.pairs``, children) run side by side on two copies of
the same fake exchange replaying window A repeated 8 times (80 minutes of exchange time, ~96 s
at 50×): the baseline into the session QuestDB, the other into a QuestDB of its own that is
stopped for 60 s (50 minutes of tape) about 10 s in. The sink holds at most ``buffer_rows``
rows, then back-pressures the worker; the feed then holds at most ``high_water`` records, drops
its socket and, once QuestDB is back and the flow has drained, catches up over REST from the
last emitted id. The flow's resident memory is read from ``/proc/<pid>/status``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd

from connectors.questdb_server import QuestDBServer
from connectors.questdb_sink import drop_tables
from tests.conftest import REPO
from tests.fakes.exchange import FakeBinance
from tests.fakes.tape import aggregate, load_frames, repeated_tape
from tests.flows.test_pairs import COMPARED, snapshot

SPEED = 50
COPIES = 8  # 80 minutes of tape, ~96 s of wall time
OUTAGE = 60.0  # seconds of wall time with QuestDB stopped
HIGH_WATER = 20_000  # [source] high_water: records the feed may hold for the worker
BUFFER_ROWS = 20_000  # [questdb] buffer_rows: rows the sink holds while QuestDB is down
RSS_BOUND_MIB = 50  # peak RSS may exceed the RSS before the outage by at most this (measured: +11)
RUN_TIMEOUT = 170.0  # seconds; both flows end by themselves at ``until`` well before

CONFIG = """\
symbols    = ["BTCUSDT", "ETHUSDT"]
timeframes = ["1s", "1m", "5m"]
pairs      = [{{ y = "BTCUSDT", x = "ETHUSDT" }}]

[source]
kind       = "binance"
ws_url     = "{ws_url}"
rest_url   = "{rest_url}"
until      = "{until}"
high_water = {high_water}

[questdb]
conf = "http::addr=127.0.0.1:9000;"
flush_interval = "100ms"
buffer_rows = {buffer_rows}

[bars]
lateness = "500ms"

[analytics]
window = 30
z_window = 30
corr_window = 30
adf_window = 60
adf_every = 10
"""


def status_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak resident set) of ``pid`` in KiB; {} once it has exited."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    return {k: int(v.split()[0]) for k, _, v in (ln.partition(":") for ln in lines)
            if k in ("VmRSS", "VmHWM")}


def start_flow(tmp: Path, name: str, fake: FakeBinance, conf: str, until: str) -> tuple:
    cfg = tmp / f"{name}.toml"
    cfg.write_text(CONFIG.format(ws_url=fake.ws_url, rest_url=fake.rest_url, until=until,
                                 high_water=HIGH_WATER, buffer_rows=BUFFER_ROWS))
    env = dict(os.environ, PAIRSTREAM_CONFIG=str(cfg), QDB_CLIENT_CONF=conf)
    log = tmp / f"{name}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "bytewax.run", "flows.pairs"], cwd=REPO,
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    return proc, log


def test_questdb_down_60s_at_50x_memory_stays_bounded_and_nothing_is_lost(
        questdb, tmp_path, capsys):
    tape = repeated_tape(load_frames(), COPIES)
    end = datetime(2024, 7, 19, 0, 5, tzinfo=timezone.utc) + timedelta(minutes=10 * (COPIES - 1))
    until = end.isoformat().replace("+00:00", "Z")
    until_ms = int(end.timestamp() * 1000)
    want_ticks = sum(1 for g in aggregate(f.trade for f in tape) if g.T < until_ms)
    drop_tables(questdb.http)
    own = QuestDBServer(root=tmp_path / "qdb").start()
    procs: list[subprocess.Popen] = []
    try:
        with FakeBinance(tape, speed=SPEED) as base_fake, FakeBinance(tape, speed=SPEED) as fake:
            base, base_log = start_flow(tmp_path, "baseline", base_fake, questdb.conf, until)
            flow, flow_log = start_flow(tmp_path, "outage", fake, own.conf, until)
            procs = [base, flow]
            t0 = time.monotonic()
            before: dict[str, int] = {}
            peak = 0
            down_at = up_at = None
            while base.poll() is None or flow.poll() is None:
                now = time.monotonic()
                assert now - t0 < RUN_TIMEOUT, "flows still running"
                peak = max(peak, status_kib(flow.pid).get("VmHWM", 0))
                if down_at is None and fake.cursor >= len(tape) // COPIES:  # ~10 s in
                    before = status_kib(flow.pid)
                    before_cursor = fake.cursor
                    own.stop()
                    down_at = time.monotonic()
                elif down_at is not None and up_at is None and now - down_at >= OUTAGE:
                    own.start()  # same data directory and ports
                    up_at = time.monotonic()
                    up_cursor = fake.cursor
                time.sleep(0.05)
            elapsed = time.monotonic() - t0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    try:
        assert base.returncode == 0, base_log.read_text()[-3000:]
        assert flow.returncode == 0, flow_log.read_text()[-3000:]
        assert up_at is not None
        own.http.wait_applied()
        questdb.http.wait_applied()
        got, want = snapshot(own.http), snapshot(questdb.http)
    finally:
        own.stop()
    text = flow_log.read_text()
    sheds = text.count("records behind: connection closed")
    with capsys.disabled():
        print(f"\n[QuestDB down {OUTAGE:.0f}s at {SPEED}x] tape {len(tape)} trades, "
              f"{want_ticks} aggTrades before until; before the outage (tape index "
              f"{before_cursor}): VmRSS {before['VmRSS'] / 1024:.1f} MiB, peak "
              f"{before['VmHWM'] / 1024:.1f} MiB; outage over at tape index {up_cursor}; "
              f"peak RSS of the run {peak / 1024:.1f} MiB "
              f"(+{(peak - before['VmHWM']) / 1024:.1f} MiB); feed dropped its socket "
              f"{sheds}x; both runs {elapsed:.0f}s")
    assert up_cursor - before_cursor > len(tape) // 2  # the tape streamed on meanwhile
    assert "retrying" in text and sheds >= 1  # the sink and the feed saw the outage
    assert peak - before["VmHWM"] <= RSS_BOUND_MIB * 1024
    assert len(got["ticks"]) == want_ticks
    assert not got["ticks"].duplicated(["symbol", "trade_id"]).any()
    for name in COMPARED:
        pd.testing.assert_frame_equal(got[name], want[name], obj=f"{name} (QuestDB down)")
