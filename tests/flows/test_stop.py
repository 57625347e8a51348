"""Ctrl-C and SIGTERM end the flow with one line after the sink wrote what it held (issue 17).

Real processes on the real sample: a paced replay (so the flow is busy when the signal comes)
whose ticks are only ever flushed by the stop (``flush_interval = "1h"``, ``flush_rows`` out of
reach), while its bars are committed as they close. Every 1s bar stored before the signal must
then find all of its trades in ``ticks``, and the stored ticks must be a gap-free prefix of the
tape.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from connectors.questdb_sink import drop_tables, ensure_tables
from flows.cli import init_recovery
from tests.conftest import REPO, SAMPLE
from tests.connectors.test_questdb_sink import sample_ticks

CONFIG = """\
symbols    = ["BTCUSDT", "ETHUSDT"]
timeframes = ["1s", "1m", "5m"]
pairs      = [{{ y = "BTCUSDT", x = "ETHUSDT" }}]

[source]
kind  = "replay"
paths = ["{frames}"]
speed = 5    # 8 minutes of tape in ~96 s: the signal always comes while it runs

[questdb]
conf = "http::addr=127.0.0.1:9000;"
flush_rows = 100000000
flush_interval = "1h"

[bars]
lateness = "0ms"
"""
WAIT = 300.0  # seconds for the first bars under a loaded machine; then a failure


def write_config(tmp_path: Path) -> Path:
    (frames,) = SAMPLE.glob("futures-um-ws-trade-frames-BTCUSDT+ETHUSDT-merged-*.txt.gz")
    path = tmp_path / "paced.toml"
    path.write_text(CONFIG.format(frames=frames))
    return path


def start(cmd: list[str], questdb, config: Path) -> subprocess.Popen:
    env = dict(os.environ, PAIRSTREAM_CONFIG=str(config), QDB_CLIENT_CONF=questdb.conf)
    return subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # its own process group, like a job in a terminal
    )


def bars_once_some_exist(proc: subprocess.Popen, http, n: int) -> set[tuple[str, str]]:
    """Wait (polling QuestDB) until ``n`` 1s bars are stored; the (symbol, ts) stored then."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        rows = http.query("SELECT symbol, ts FROM bars WHERE tf = '1s'")
        if len(rows) >= n:
            return {(r["symbol"], r["ts"]) for r in rows}
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"no {n} bars after {WAIT:.0f}s")


def check_flushed(http, bars_before: set[tuple[str, str]]) -> int:
    """Each 1s bar stored before the stop has all its trades in ticks; ticks are a prefix of
    the tape per symbol. Returns the number of stored ticks."""
    http.wait_applied()
    rows = http.query("SELECT symbol, ts, trade_id FROM ticks ORDER BY symbol, trade_id")
    per_second = Counter((r["symbol"], r["ts"][:19]) for r in rows)
    bars = http.query("SELECT symbol, ts, trades FROM bars WHERE tf = '1s'")
    checked = 0
    for b in bars:
        if (b["symbol"], b["ts"]) in bars_before:
            assert per_second[(b["symbol"], b["ts"][:19])] == b["trades"], b
            checked += 1
    assert checked == len(bars_before)
    tape: dict[str, list[int]] = {}
    for t in sample_ticks():
        tape.setdefault(t.symbol, []).append(t.trade_id)
    for symbol, ids in tape.items():
        stored = [r["trade_id"] for r in rows if r["symbol"] == symbol]
        assert stored == sorted(ids)[: len(stored)], symbol  # no hole, nothing extra
    return len(rows)


def test_ctrl_c_of_pairstream_run_is_one_line_and_flushes_the_sink(questdb, tmp_path):
    """Acceptance: Ctrl-C (SIGINT to the process group, as a terminal sends it) of
    `pairstream run`: exit 130, exactly one line on stderr, no traceback, rows flushed."""
    drop_tables(questdb.http)
    ensure_tables(questdb.conf)  # empty tables to poll from the start
    cmd = [sys.executable, "-m", "flows.cli", "run", "--config", str(write_config(tmp_path))]
    proc = start(cmd, questdb, tmp_path / "paced.toml")
    before = bars_once_some_exist(proc, questdb.http, 20)
    held = questdb.http.query("SELECT count() n FROM ticks")[0]["n"]
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert err.splitlines() == ["pairstream: stopped"]
    stored = check_flushed(questdb.http, before)
    assert stored > held  # the stop wrote the ticks the sink held


def test_sigterm_with_recovery_says_where_the_state_is(questdb, tmp_path):
    """SIGTERM of `python -m bytewax.run flows.pairs -r DIR`: exit 0, one line naming DIR."""
    drop_tables(questdb.http)
    ensure_tables(questdb.conf)  # empty tables to poll from the start
    rec = tmp_path / "recovery"
    init_recovery(rec)
    cmd = [sys.executable, "-m", "bytewax.run", "flows.pairs", "-r", str(rec), "-s", "5",
           "-b", "0"]
    proc = start(cmd, questdb, write_config(tmp_path))
    before = bars_once_some_exist(proc, questdb.http, 3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0
    assert err.splitlines() == [f"pairstream: stopped; state saved in {rec.resolve()}"]
    check_flushed(questdb.http, before)


SCRIPT = """\
import dataclasses, sys
from connectors import shutdown
from connectors.questdb_sink import QuestDBSink
from tests.connectors.test_questdb_sink import sample_ticks
shutdown.install()
t = sample_ticks()[0]
part = QuestDBSink(sys.argv[1], dead_letter=sys.argv[2]).build_part("t", "ticks", None)
part.write_batch([t, dataclasses.replace(t, trade_id=1, buyer_maker="?")])
part.close()
print("not reached")
"""


def test_a_failing_background_writer_stops_the_process_with_one_line(questdb, tmp_path):
    """The sink's writer thread cannot write its dead-letter file: one line, exit 1; the flow
    does not go on as if the rows were stored."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    dl = blocker / "dead.jsonl"  # a path under a file: not writable, even for root
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, questdb.conf, str(dl)],
        cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert proc.stdout == ""
    (line,) = proc.stderr.splitlines()
    assert line.startswith(
        f"pairstream: error: questdb: table ticks: cannot write the dead-letter file {dl}: "
    ), line

