"""Live mode on a slow feed: how busy is the worker between bars? (issue 4)

Starts a real QuestDB and the fake exchange (loopback) replaying the real window-A tape at a
fraction of real time, runs the whole flow (`python -m bytewax.run flows.pairs`, live Binance
source) against them for a fixed wall time, and prints the flow process's CPU share of one
core and what it wrote. Prints figures; asserts nothing.

    python -m bench.idle_live [--seconds 30] [--speed 0.1]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import cpu_seconds
from connectors.questdb_server import QuestDBServer
from tests.fakes.exchange import FakeBinance

ROOT = Path(__file__).resolve().parent.parent
CONFIG = """
symbols = ["BTCUSDT", "ETHUSDT"]
timeframes = ["1s", "1m", "5m"]
pairs = [{{ y = "BTCUSDT", x = "ETHUSDT" }}]
[source]
kind = "binance"
ws_url = "{ws}"
rest_url = "{rest}"
[bars]
lateness = "500ms"
[analytics]
window = 30
z_window = 30
corr_window = 30
adf_window = 60
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--speed", type=float, default=0.1, help="fraction of real time")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, QuestDBServer() as qdb:
        fake = FakeBinance(speed=args.speed).start()
        try:
            cfg = Path(tmp) / "live.toml"
            cfg.write_text(CONFIG.format(ws=fake.ws_url, rest=fake.rest_url))
            env = dict(
                os.environ,
                PAIRSTREAM_CONFIG=str(cfg),
                QDB_CLIENT_CONF=qdb.conf,
                PAIRSTREAM_LOG="WARNING",
            )
            flow = subprocess.Popen(
                [sys.executable, "-m", "bytewax.run", "flows.pairs"],
                cwd=ROOT,
                env=env,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(5)  # start-up (imports, connect): not part of the measurement
            c0, t0 = cpu_seconds(flow.pid), time.monotonic()
            time.sleep(args.seconds)
            c1, t1 = cpu_seconds(flow.pid), time.monotonic()
            flow.terminate()
            flow.wait(30)
        finally:
            fake.stop()
        qdb.http.wait_applied()
        ticks = qdb.http.query("SELECT count() n FROM ticks")[0]["n"]
        bars = qdb.http.query("SELECT count() n FROM bars WHERE tf = '1s'")[0]["n"]
    share = (c1 - c0) / (t1 - t0)
    print(
        f"live flow, fake exchange at {args.speed}x real time ({ticks} ticks, {bars} 1s bars "
        f"written): {share:.1%} of one core over {t1 - t0:.0f}s wall ({c1 - c0:.2f}s CPU)"
    )


if __name__ == "__main__":
    main()
