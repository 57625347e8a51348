"""Live mode on a slow feed: how busy is the worker between bars? (issue 4)

Starts a real QuestDB and the fake exchange (loopback) replaying the real window-A tape at a
fraction of real time, runs the whole flow (`python -m bytewax.run flows.pairs`, live Binance
source) against them for a fixed wall time, and prints the flow process's CPU share of one
core and what it wrote. Prints figures; asserts nothing.

    python -m bench.idle_live [--seconds 30] [--speed 0.1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.common import cpu_seconds, live_config_file, start_flow, stop_flow
from connectors.questdb_server import QuestDBServer
from tests.fakes.exchange import FakeBinance

ANALYTICS = """[analytics]
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
            cfg = live_config_file(
                Path(tmp) / "live.toml",
                ["BTCUSDT", "ETHUSDT"],
                [("BTCUSDT", "ETHUSDT")],
                fake.ws_url,
                fake.rest_url,
                qdb.conf,
                extra=ANALYTICS,
            )
            flow = start_flow(cfg, Path(tmp) / "flow.log", PAIRSTREAM_LOG="WARNING")
            time.sleep(5)  # start-up (imports, connect): not part of the measurement
            c0, t0 = cpu_seconds(flow.pid), time.monotonic()
            time.sleep(args.seconds)
            c1, t1 = cpu_seconds(flow.pid), time.monotonic()
            stop_flow(flow, timeout=30)
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
