"""CPU share of the flow process with 20 symbols and 10 pairs, live, from the fake exchange.

Prints figures, never pass/fail. ``python -m bench.scale [--seconds 60]``

The fake exchange (``tests/fakes``) serves 20 symbols at speed 1: window A's BTCUSDT and
ETHUSDT tapes, each copied 10 times under new names (``BTC00USDT``, ``ETH00USDT``, ...; trade
times moved to now, ids unchanged per symbol), so every symbol trades at the real recorded rate
of BTC or ETH futures (the two busiest USD-M contracts: a pessimistic load for 20 symbols).
The flow (``python -m bytewax.run flows.pairs``, live ``BinanceSource``, 1s/1m/5m bars, pairs
``BTCkkUSDT/ETHkkUSDT``, analytics, signals, alerts) runs in a child process into a QuestDB
started here. The figure: the child's CPU time (user + sys, all threads: worker, WebSocket
client, QuestDB writers) over wall time, after a warm-up, in % of one core.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from bench.common import (
    cpu_seconds,
    live_config_file,
    live_frames,
    machine,
    peak_rss_mb,
    questdb,
    start_flow,
    stop_flow,
    table_counts,
    wait_connected,
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="measured live time")
    ap.add_argument("--warmup", type=float, default=10.0, help="seconds before measuring")
    ap.add_argument("--copies", type=int, default=10, help="copies of the BTC/ETH pair")
    ap.add_argument(
        "--stream", default="aggTrade", choices=("aggTrade", "trade"),
        help="trade: every raw fill (~7x the aggTrade frames of this tape)",
    )  # fmt: skip
    args = ap.parse_args(argv)
    from tests.fakes.exchange import FakeBinance

    print(f"machine: {machine()}")
    import os

    tmp = Path(tempfile.mkdtemp(prefix="pairstream-scale-"))
    total = args.warmup + args.seconds
    frames, _shift, symbols = live_frames(total + 10, int(time.time() * 1000), args.copies)
    pairs = [(f"BTC{k:02d}USDT", f"ETH{k:02d}USDT") for k in range(args.copies)]
    with questdb() as srv, FakeBinance(frames, speed=1.0) as fake:
        cfg = live_config_file(
            tmp / "scale.toml", symbols, pairs, fake.ws_url, fake.rest_url, srv.conf,
            stream=args.stream,
        )  # fmt: skip
        proc = start_flow(cfg, tmp / "flow.log")
        try:
            wait_connected(fake)
            time.sleep(args.warmup)
            c0, f0, t0 = cpu_seconds(proc.pid), fake.stats.frames, time.monotonic()
            l0 = os.getloadavg()[0]
            time.sleep(args.seconds)
            c1, f1, t1 = cpu_seconds(proc.pid), fake.stats.frames, time.monotonic()
            hwm = peak_rss_mb(proc.pid)
        finally:
            stop_flow(proc)
        srv.http.wait_applied(timeout=120)
        counts = table_counts(srv)
    share = (c1 - c0) / (t1 - t0)
    rate = (f1 - f0) / (t1 - t0)
    print(
        f"live: {len(symbols)} symbols, {len(pairs)} pairs, {rate:,.0f} {args.stream} frames/s "
        f"from the fake over {t1 - t0:.0f} s (after {args.warmup:.0f} s warm-up)"
    )
    print(
        f"  flow process CPU {c1 - c0:.1f} s over {t1 - t0:.1f} s wall = {share * 100:.1f}% "
        f"of one core  (target < 50%); peak RSS {hwm:.0f} MiB; load average {l0:.1f} -> "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    print(f"  rows written: {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
