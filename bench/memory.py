"""Peak RSS of the flow process after 1M, 2M ... 5M ticks (whole flow, real QuestDB).

Prints figures, never pass/fail. ``python -m bench.memory [--ticks 5000000]``

One replay of the repeated window-A tape (:mod:`bench.common`) runs in a child process (so the
figure is the flow's alone, not this script's); a thread in it samples the replay's record
counter and reads ``VmHWM`` (peak RSS) from ``/proc/self/status`` as each million ticks has been
handed to the flow, and once more at the end (every row written).
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import threading
import time

from bench.common import machine, peak_rss_mb, questdb, replay_config, rss_mb, write_frame_file


def child(path: str, conf: str, step: int) -> None:
    """Run the flow; print one JSON line of samples."""
    from bytewax.testing import run_main

    from connectors.replay import PROGRESS
    from flows.pairs import build
    from flows.startup import tune_gc, warm_kernels

    logging.disable(logging.WARNING)
    samples: list[dict] = []
    done = threading.Event()

    def sampler() -> None:
        nxt = step
        while not done.is_set():
            n = PROGRESS["records"]
            if n >= nxt:
                samples.append({"ticks": n, "hwm": peak_rss_mb(), "rss": rss_mb()})
                nxt += step
            time.sleep(0.05)

    th = threading.Thread(target=sampler, daemon=True)
    t0 = time.perf_counter()
    th.start()
    tune_gc()  # as `python -m bytewax.run flows.pairs` and `pairstream` do at start
    warm_kernels()
    run_main(build(replay_config([path], conf)))
    done.set()
    th.join()
    samples.append(
        {"ticks": PROGRESS["records"], "hwm": peak_rss_mb(), "rss": rss_mb(), "end": True}
    )
    print(json.dumps({"samples": samples, "seconds": time.perf_counter() - t0}))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ticks", type=int, default=5_000_000)
    ap.add_argument("--step", type=int, default=1_000_000)
    ap.add_argument("--child", nargs=2, metavar=("PATH", "CONF"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child[0], args.child[1], args.step)
        return 0
    print(f"machine: {machine()}")
    path = write_frame_file(args.ticks)
    with questdb() as srv:
        out = subprocess.run(
            [sys.executable, "-m", "bench.memory", "--step", str(args.step),
             "--child", str(path), srv.conf],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        srv.http.wait_applied(timeout=600)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"flow: {args.ticks:,} ticks in {res['seconds']:.0f} s (child process, 1 worker)")
    first = None
    for s in res["samples"]:
        label = "end (all written)" if s.get("end") else f"after {s['ticks'] / 1e6:.1f}M ticks"
        first = first or s["hwm"]
        print(
            f"  {label:20s} peak RSS {s['hwm']:7.1f} MiB  (current {s['rss']:7.1f} MiB, "
            f"{(s['hwm'] / first - 1) * 100:+5.1f}% vs 1M)"
        )
    print("  target: peak RSS at 5M within 10% of that at 1M")
    return 0


if __name__ == "__main__":
    sys.exit(main())
