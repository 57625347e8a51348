"""Crash recovery and outages lose and duplicate nothing (issue 9), on the live source.

The fake exchange (in this process) streams the real window A tape, accelerated, over
WebSocket + REST; the flow (`python -m bytewax.run flows.pairs`, a child process) runs to the
tape's ``[source] until`` bound and exits by itself. Compared with one uninterrupted run:

* the flow SIGKILLed at 5 seeded random points of the tape, restarted with recovery each time;
* QuestDB (a dedicated server) stopped for 20 s in the middle of a run, restarted on the same
  data directory and ports.

The ticks, bars, pair_analytics, signals and alerts tables must be equal row for row.
``feed_health`` is excluded: its rows are per wall-clock second (reconnect counts, lag) and
differ by design between any two runs.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Optional

import pandas as pd
import pytest

from connectors.questdb_server import QuestDBServer
from connectors.questdb_sink import drop_tables, ensure_tables
from flows.cli import init_recovery
from tests.conftest import REPO, run_flow
from tests.fakes.exchange import FakeBinance
from tests.fakes.tape import load_frames
from tests.flows.test_pairs import COMPARED, snapshot

SPEED = 20  # the 8 minute tape in ~24 s
UNTIL = "2024-07-19T00:05:00Z"  # both symbols trade after it (the tape ends 00:05:02.28)
RUN_TIMEOUT = 180.0  # seconds; a flow still running after it is a failure
RECOVERY_ARGS = ("-s", "1", "-b", "0")  # 1 s epochs (little to re-do); no external backups

CONFIG = """\
symbols    = ["BTCUSDT", "ETHUSDT"]
timeframes = ["1s", "1m", "5m"]
pairs      = [{{ y = "BTCUSDT", x = "ETHUSDT" }}]

[source]
kind    = "binance"
stream  = "aggTrade"
ws_url  = "{ws_url}"
rest_url = "{rest_url}"
until   = "{until}"
# Live funding (from the mark stream) is booked on the bar being processed when the settlement
# arrives, which a kill and restart can move; these tables are compared row for row.
marks   = false

[questdb]
conf = "http::addr=127.0.0.1:9000;"
flush_interval = "100ms"

[bars]
lateness = "500ms"

[analytics]
window = 30
z_window = 30
corr_window = 30
adf_window = 60
adf_every = 10

[analytics.1m]
window = 3
z_window = 3
corr_window = 3
adf_window = 10

[[alerts]]
id = "z-1s"
pair = "BTCUSDT/ETHUSDT"
tf = "1s"
when = "abs(zscore) > 2"
clear = "abs(zscore) < 1"
cooldown = "20s"

[[alerts]]
id = "corr-low"
pair = "BTCUSDT/ETHUSDT"
tf = "1s"
when = "corr < 0.2"
clear = "corr > 0.4"
"""


@pytest.fixture(scope="module")
def frames():
    return load_frames()


def write_config(path: Path, fake: FakeBinance) -> Path:
    path.write_text(CONFIG.format(ws_url=fake.ws_url, rest_url=fake.rest_url, until=UNTIL))
    return path


Hook = Callable[[subprocess.Popen, FakeBinance], Optional[str]]


def run_live(
    qdb, config: Path, fake: FakeBinance, args: tuple[str, ...], log: Path,
    hook: Optional[Hook] = None,
) -> tuple[int, Optional[str]]:
    """Start the flow; poll ``hook`` until it exits. ``hook`` returns "killed" after a SIGKILL."""
    env = dict(os.environ, PAIRSTREAM_CONFIG=str(config), QDB_CLIENT_CONF=qdb.conf)
    with open(log, "a") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bytewax.run", "flows.pairs", *args],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + RUN_TIMEOUT
    try:
        while proc.poll() is None:
            assert time.monotonic() < deadline, f"flow still running after {RUN_TIMEOUT}s"
            if hook is not None and hook(proc, fake) == "killed":
                return proc.wait(), "killed"
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, None


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


def uninterrupted(qdb, frames, tmp: Path) -> dict[str, pd.DataFrame]:
    drop_tables(qdb.http)
    with FakeBinance(frames, speed=SPEED) as fake:
        config = write_config(tmp / "live.toml", fake)
        code, _ = run_live(qdb, config, fake, (), tmp / "flow.log")
    assert code == 0, tail(tmp / "flow.log")
    qdb.http.wait_applied()
    return snapshot(qdb.http)


@pytest.fixture(scope="module")
def baseline(questdb, frames, tmp_path_factory):
    """The tables of one uninterrupted live run over the tape (no recovery flags)."""
    tables = uninterrupted(questdb, frames, tmp_path_factory.mktemp("baseline"))
    counts = {k: len(v) for k, v in tables.items()}
    print(f"\nuninterrupted live run: {counts}")
    # The run is worth comparing with: every stage wrote rows, alerts fired and resolved.
    assert counts["ticks"] == 8_784  # aggTrades of both symbols before UNTIL
    assert counts["bars"] > 2 * 470 and counts["pair_analytics"] > 400
    assert tables["pair_analytics"]["warm"].sum() > 300
    assert counts["signals"] == counts["pair_analytics"]
    assert set(tables["alerts"]["state"]) == {"FIRING", "RESOLVED"}
    return tables


def assert_same_tables(got: dict[str, pd.DataFrame], want: dict[str, pd.DataFrame], what: str):
    for name in COMPARED:
        pd.testing.assert_frame_equal(got[name], want[name], obj=f"{name} ({what})")


def test_kill_9_at_five_points_and_resume_writes_the_rows_of_one_run(
    questdb, frames, baseline, tmp_path
):
    """SIGKILL 2-6 s (seeded random) after each restart: kills land in start-up, in the REST
    backfill after a restart, mid-epoch and mid-stream; the tape goes on meanwhile.

    The first kill is timed from the first ticks in QuestDB, not from the first start: a flow
    killed before it ever committed a snapshot holding a trade id has no position to resume
    from, and starts afresh at the live edge, like a first start (a known limit, see the
    issue 9 note), so it could not equal a run that started earlier."""
    drop_tables(questdb.http)
    ensure_tables(questdb.conf)  # the killer polls the ticks table from the start
    rec = tmp_path / "recovery"
    init_recovery(rec)
    log = tmp_path / "flow.log"
    rng = random.Random(9)
    delays = [rng.uniform(2.0, 6.0) for _ in range(5)]
    kills: list[tuple[float, int]] = []  # (seconds after start, tape cursor)
    first_rows: list[float] = []
    started = 0.0

    def killer(proc: subprocess.Popen, fake: FakeBinance) -> Optional[str]:
        nonlocal started
        if not kills and not first_rows:
            if questdb.http.query("SELECT count() n FROM ticks")[0]["n"] == 0:
                return None
            first_rows.append(time.monotonic())
            started = first_rows[0]
        if len(kills) < len(delays) and time.monotonic() - started >= delays[len(kills)]:
            proc.kill()
            kills.append((round(delays[len(kills)], 2), fake.cursor))
            return "killed"
        return None

    with FakeBinance(frames, speed=SPEED) as fake:
        config = write_config(tmp_path / "live.toml", fake)
        for _ in range(len(delays) + 1):
            started = time.monotonic()
            code, how = run_live(questdb, config, fake, ("-r", str(rec), *RECOVERY_ARGS), log,
                                 killer)
            if how != "killed":
                break
            assert code == -9
        assert code == 0, tail(log)
    print(f"\nkills (seconds after start, tape index of {len(frames)}): {kills}")
    assert len(kills) == 5 and kills[-1][1] < len(frames) * 9 // 10  # all mid-tape
    questdb.http.wait_applied()
    assert_same_tables(snapshot(questdb.http), baseline, "killed 5 times")


def test_questdb_down_20s_mid_run_loses_and_duplicates_nothing(frames, baseline, tmp_path):
    srv = QuestDBServer(root=tmp_path / "qdb").start()
    try:
        rec = tmp_path / "recovery"
        init_recovery(rec)
        log = tmp_path / "flow.log"
        outage: dict[str, float] = {}
        quarter = len(frames) // 4

        def outage_hook(proc: subprocess.Popen, fake: FakeBinance) -> Optional[str]:
            if not outage and fake.cursor >= quarter:
                outage["down"] = time.monotonic()
                srv.stop()  # SIGTERM, waits for exit; the data directory stays
                time.sleep(20)  # the outage itself (not a synchronisation)
                outage["cursor"] = fake.cursor
                srv.start()  # same root and ports
                outage["up"] = time.monotonic()
            return None

        with FakeBinance(frames, speed=SPEED) as fake:
            config = write_config(tmp_path / "live.toml", fake)
            code, _ = run_live(srv, config, fake, ("-r", str(rec), *RECOVERY_ARGS), log,
                               outage_hook)
        assert code == 0, tail(log)
        assert outage["cursor"] > quarter  # the tape went on streaming while QuestDB was down
        assert "retrying" in log.read_text()  # the sink did see the outage
        srv.http.wait_applied()
        assert_same_tables(snapshot(srv.http), baseline, "QuestDB down 20 s")
    finally:
        srv.stop()



def test_soak_replay_with_garbage_kill_and_questdb_restart(questdb, tmp_path):
    """bench/soak.py, small: 60k ticks of the repeated tape (2.5 copies) with garbage lines,
    paced (speed 100, ~15 s) so that the faults land mid-run: QuestDB stopped 2 s and
    restarted, then the flow SIGKILLed and resumed. Exact counts, contiguous bars, and the
    rows of an uninterrupted, unpaced run."""
    from bench.soak import Faults, soak

    srv = QuestDBServer(root=tmp_path / "qdb").start()
    try:
        faults = Faults(kill_at=30_000, restart_at=15_000, outage=2.0, marks=())
        tape, run, counts = soak(60_000, tmp_path, faults, 7_000, srv=srv, speed=100)
        faulty = snapshot(srv.http)
    finally:
        srv.stop()
    print(f"\nsoak: {counts}, QuestDB stopped at {run.restarts}, killed at {run.kills} ticks")
    assert len(run.kills) == len(run.restarts) == 1  # both faults happened mid-run
    assert tape.malformed == 8 and counts["ticks"] == 60_000
    assert counts["pair_analytics"] > 1_400 and counts["alerts"] > 0
    config = tmp_path / "soak.toml"
    config.write_text(config.read_text().replace("speed = 100", "speed = 0"))
    drop_tables(questdb.http)
    run_flow(questdb, config)
    assert_same_tables(snapshot(questdb.http), faulty, "soak with faults, paced")
