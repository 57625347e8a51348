"""Bar-end → visible-in-QuestDB latency, live, against the fake exchange in real time.

Prints figures, never pass/fail. ``python -m bench.latency [--seconds 90]``

The fake exchange (``tests/fakes``) serves ``--seconds`` of window A (from minute 3) at speed 1 with
trade times moved to now; the flow (``python -m bytewax.run flows.pairs``, live
``BinanceSource``, aggTrade stream, lateness 500 ms) runs in a child process against it and a
QuestDB started here. This process polls QuestDB by SQL every ``--poll`` ms and records when each
1s bar and each 1s pair_analytics row is first visible. Latency = first seen − bar end, with bar
end = bar ts + 1 s mapped to the wall clock through the fake's send clock (the fake starts its
tape at the flow's first connection; see :func:`bench.common.event_to_wall_offset_ms`), so the
recorded network delay of each trade is kept and the flow's start-up time is not counted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np

from bench.common import (
    event_to_wall_offset_ms,
    live_config_file,
    live_frames,
    machine,
    questdb,
    start_flow,
    stop_flow,
    wait_connected,
)

QUERIES = {
    "bars": "SELECT symbol k, ts FROM bars WHERE tf = '1s' AND ts >= '{since}'",
    "pair_analytics": "SELECT pair k, ts FROM pair_analytics WHERE tf = '1s' AND ts >= '{since}'",
}


def _us(ts: str) -> int:
    return int(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1e6)


def poll(srv, until: float, every: float, seen: dict) -> int:
    """Record the first-seen wall time of every new row until ``until``; number of polls."""
    http = srv.http
    since = {name: "1970-01-01T00:00:00.000000Z" for name in QUERIES}
    n = 0
    while time.time() < until:
        t_next = time.time() + every
        for name, sql in QUERIES.items():
            try:
                rows = http.query(sql.format(since=since[name]))
            except Exception:  # noqa: BLE001 - table not created yet
                continue
            now = time.time()
            for r in rows:
                key = (name, r["k"], r["ts"])
                if key not in seen:
                    seen[key] = now
                if r["ts"] > since[name]:
                    since[name] = r["ts"]
        n += 1
        time.sleep(max(0.0, t_next - time.time()))
    return n


def wal_probe(srv, n: int = 40) -> list[float]:
    """QuestDB's own share: ms from a flushed one-row write (HTTP answered) to visible by SQL."""
    from datetime import timezone

    from questdb import Sender

    http = srv.http
    http.exec("CREATE TABLE IF NOT EXISTS latency_probe (ts TIMESTAMP, i LONG) "
              "timestamp(ts) PARTITION BY DAY WAL")  # fmt: skip
    out = []
    with Sender.from_conf(srv.conf) as sender:
        for i in range(n):
            sender.row("latency_probe", columns={"i": i}, at=datetime.now(timezone.utc))
            sender.flush()
            t0 = time.time()
            while not http.query(f"SELECT i FROM latency_probe WHERE i = {i}"):
                time.sleep(0.005)
            out.append((time.time() - t0) * 1000)
            time.sleep(0.1)
    return out


def pct(v: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(v), q)) if v else float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=90.0, help="length of the live run")
    ap.add_argument("--poll", type=float, default=20.0, help="SQL poll period, ms")
    ap.add_argument("--lateness", default="500ms")
    ap.add_argument("--flush-interval", default="250ms", help="[questdb] flush_interval")
    ap.add_argument("--warmup", type=float, default=5.0, help="seconds of bars not counted")
    args = ap.parse_args(argv)
    from tests.fakes.exchange import FakeBinance

    print(f"machine: {machine()}")
    tmp = Path(tempfile.mkdtemp(prefix="pairstream-latency-"))
    start_ms = int(time.time() * 1000)
    frames, _shift, symbols = live_frames(args.seconds + 10, start_ms)
    offset = event_to_wall_offset_ms(frames)
    seen: dict = {}
    with questdb() as srv, FakeBinance(frames, speed=1.0) as fake:
        cfg = live_config_file(
            tmp / "latency.toml", symbols, [("BTCUSDT", "ETHUSDT")], fake.ws_url, fake.rest_url,
            srv.conf, args.lateness, args.flush_interval,
        )  # fmt: skip
        proc = start_flow(cfg, tmp / "flow.log")
        try:
            t0 = wait_connected(fake)
            polls = poll(srv, t0 + args.seconds, args.poll / 1000, seen)
        finally:
            stop_flow(proc)
        sent = fake.stats.frames
        probe = wal_probe(srv)
    lat: dict[str, list[float]] = {name: [] for name in QUERIES}
    for (name, _k, ts), first in seen.items():
        end_ms = _us(ts) / 1000 + 1000  # bar end, event time (1s bars)
        end_wall = t0 + (end_ms - offset) / 1000
        if end_wall < t0 + args.warmup:
            continue
        lat[name].append((first - end_wall) * 1000)
    late_ms = float(args.lateness.rstrip("ms")) if args.lateness.endswith("ms") else 500.0
    print(
        f"live run: {args.seconds:.0f} s of window A at speed 1, {sent:,} aggTrade frames, "
        f"lateness {args.lateness}, flush interval {args.flush_interval}, "
        f"{polls:,} SQL polls ({args.poll:.0f} ms period)"
    )
    for name, v in lat.items():
        print(
            f"  {name:15s} 1s rows {len(v):4d}: p50 {pct(v, 50):6.0f} ms  p99 {pct(v, 99):6.0f} ms"
            f"  max {max(v, default=float('nan')):6.0f} ms  (bar end -> visible by SQL)"
        )
    print(
        f"  QuestDB alone, flushed write -> visible by SQL ({len(probe)} one-row probes after "
        f"the run): p50 {pct(probe, 50):.0f} ms  p99 {pct(probe, 99):.0f} ms"
    )
    print(f"  target p99 <= lateness + 250 ms = {late_ms + 250:.0f} ms")
    print(f"  flow log: {tmp / 'flow.log'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
