"""The mark price stream live: ``marks`` rows, and bars that close without a later trade.

The fake exchange streams the last 12 s of window A's trades (accelerated) and, beside them,
``<symbol>@markPrice@1s`` every second of its exchange clock, on after the tape ends. The
final minute's 1m bar [00:05, 00:06) has no trade after 00:05:02: only the marks' event time
can close it. It must be visible in QuestDB by the time the fake's clock reaches its end +
lateness + 2 s; every mark served up to then is one row of ``marks`` (one per symbol and
second, nothing else).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone

from connectors.questdb_sink import drop_tables
from tests.conftest import REPO
from tests.fakes.exchange import FakeBinance
from tests.fakes.tape import load_frames

SPEED = 2.0
LATENESS_S = 0.5
START_MS = int(datetime(2024, 7, 19, 0, 4, 50, tzinfo=timezone.utc).timestamp() * 1000)
BAR_MS = int(datetime(2024, 7, 19, 0, 5, tzinfo=timezone.utc).timestamp() * 1000)
END_MS = BAR_MS + 60_000

CONFIG = """\
symbols    = ["BTCUSDT", "ETHUSDT"]
timeframes = ["1s", "1m"]
pairs      = [{{ y = "BTCUSDT", x = "ETHUSDT" }}]

[source]
kind     = "binance"
ws_url   = "{ws_url}"
rest_url = "{rest_url}"

[bars]
lateness = "500ms"

[analytics]
window = 5
z_window = 5
corr_window = 5
adf_window = 10
"""


def _wall_at(fake: FakeBinance, e_ms: float) -> float:
    """Monotonic time at which the fake's exchange clock reads ``e_ms``."""
    assert fake._clock0 is not None
    return fake._clock0 + (e_ms - fake._e0) / 1000 / SPEED


def test_last_bar_closes_on_marks_and_marks_are_stored(questdb, tmp_path):
    frames = [f for f in load_frames() if f.trade.T >= START_MS]
    assert frames[-1].trade.T < BAR_MS + 3_000  # the tape ends early in the final minute
    drop_tables(questdb.http)
    with FakeBinance(frames, speed=SPEED) as fake:
        cfg = tmp_path / "live.toml"
        cfg.write_text(CONFIG.format(ws_url=fake.ws_url, rest_url=fake.rest_url))
        env = dict(os.environ, PAIRSTREAM_CONFIG=str(cfg), QDB_CLIENT_CONF=questdb.conf)
        log = tmp_path / "flow.log"
        with open(log, "w") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "bytewax.run", "flows.pairs"],
                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            sql = (
                "SELECT count() n FROM bars WHERE tf = '1m' "
                f"AND ts = cast({BAR_MS * 1000} as timestamp)"
            )
            seen = None
            deadline = time.monotonic() + 200
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    if questdb.http.query(sql)[0]["n"] == 2:
                        seen = time.monotonic()
                        break
                except Exception:  # noqa: BLE001 - the table does not exist yet
                    pass
                time.sleep(0.02)
            assert proc.poll() is None, log.read_text()[-3000:]
            assert seen is not None, "the final minute's bar never closed"
            closes_at = _wall_at(fake, END_MS + LATENESS_S * 1000)
            limit = _wall_at(fake, END_MS + (LATENESS_S + 2.0) * 1000)
            print(f"\nfinal 1m bar visible {(seen - closes_at) * SPEED:.2f} s (exchange time) "
                  f"after its end + lateness")
            assert seen <= limit, f"{(seen - closes_at) * SPEED:.2f} s late (exchange time)"
            assert seen >= closes_at - 0.5 / SPEED  # closed on exchange time, not before
            served = set(fake.stats.marks)
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    questdb.http.wait_applied()
    rows = questdb.http.query("SELECT symbol, ts, mark FROM marks")
    got = {(r["symbol"], _ms(r["ts"])) for r in rows}
    assert len(got) == len(rows)  # one row per symbol and second
    assert all(ms % 1000 == 0 for _, ms in got)
    before_close = {m for m in served if m[1] <= END_MS}
    assert len(before_close) >= 2 * 60  # both symbols, every second of the final minute
    assert before_close <= got, sorted(before_close - got)[:5]
    assert got <= served, sorted(got - served)[:5]
    for sym in ("BTCUSDT", "ETHUSDT"):
        secs = sorted(ms for s, ms in got if s == sym)
        assert all(b - a == 1000 for a, b in zip(secs, secs[1:]))  # every second, once


def _ms(ts: str) -> int:
    t = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    return int(round(t.timestamp() * 1000))
