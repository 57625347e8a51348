"""CPU of a flow whose Binance endpoint is unreachable (a refused loopback port).

The worker should sleep between polls (``next_awake``) and the feed thread between reconnect
attempts, so the process stays near idle however long the outage lasts. Prints figures; never
pass/fail.

    .venv/bin/python -m bench.bench_reconnect_idle [--seconds 10] [--poll 0.01 0.05]
"""

from __future__ import annotations

import argparse
import logging
import time

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, run_main

from connectors.binance import BinanceSource
from tests.fakes.exchange import refused_port


class _Count(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.n = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "reconnect attempt" in record.getMessage():
            self.n += 1


def measure(seconds: float, poll: float) -> tuple[float, float, int]:
    """(process CPU s, wall s, reconnect log lines) with the default backoff (0.5 s .. 30 s)."""
    counter = _Count()
    logging.getLogger("pairstream.binance").addHandler(counter)
    logging.getLogger("pairstream.binance").setLevel(logging.WARNING)
    url = f"ws://127.0.0.1:{refused_port()}/market/stream"
    deadline = time.monotonic() + seconds
    src = BinanceSource(["BTCUSDT", "ETHUSDT"], "aggTrade", url, "http://127.0.0.1:9",
                        poll_interval=poll, stop_when=lambda _: time.monotonic() > deadline)
    flow = Dataflow("bench_reconnect_idle")
    op.output("out", op.input("binance", flow, src), TestingSink([]))
    cpu0, t0 = time.process_time(), time.monotonic()
    run_main(flow)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
    logging.getLogger("pairstream.binance").removeHandler(counter)
    return cpu, wall, counter.n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--poll", type=float, nargs="+", default=[0.01, 0.05])
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    for poll in args.poll:
        cpu, wall, n = measure(args.seconds, poll)
        print(f"poll {poll * 1000:.0f} ms: CPU {cpu:.3f}s over {wall:.2f}s wall = "
              f"{100 * cpu / wall:.2f}% of one core; {n} reconnect attempts logged")


if __name__ == "__main__":
    main()
