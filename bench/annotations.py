"""Wall time of the 7-day kline replay with Grafana annotations off, on (stand-in answering) and
on with the stand-in stalled (connections accepted, never answered): the flow must not notice.

    python -m bench.annotations [--runs 5]

Runs alternate between the three modes (so load drifts hit all alike) into one QuestDB (tables
dropped before each run); prints each mode's median wall time and its ratio to "off" in the same
process, and the sink's summary line. Figures, never pass/fail.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import ROOT, machine, questdb
from connectors.questdb_sink import drop_tables
from tests.fakes.grafana import FakeGrafana

KLINES = ROOT / "data" / "klines" / "futures-um-klines-1m-*-2024-07-01_2024-07-07.csv"


def config(directory: Path, annotations: bool) -> Path:
    text = (ROOT / "config" / "week.toml").read_text()
    text = re.sub(r"^paths = \[.*\]$", f'paths = ["{KLINES}"]', text, flags=re.M)
    path = directory / f"week-{'on' if annotations else 'off'}.toml"
    path.write_text(text + f"\n[grafana]\nannotations = {str(annotations).lower()}\n")
    return path


def run(srv, cfg: Path, grafana_url: str) -> tuple[float, str]:
    drop_tables(srv.http)
    env = dict(os.environ, PAIRSTREAM_CONFIG=str(cfg), QDB_CLIENT_CONF=srv.conf,
               GRAFANA_URL=grafana_url, GRAFANA_TOKEN="glsa_admin")  # fmt: skip
    t = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "bytewax.run", "flows.pairs"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    wall = time.monotonic() - t
    if proc.returncode:
        raise SystemExit(proc.stderr[-2000:])
    summary = re.findall(r"grafana annotations: .*", proc.stderr)
    return wall, summary[-1] if summary else "-"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory() as d, questdb() as srv:
        off, on = config(Path(d), False), config(Path(d), True)
        walls: dict[str, list[float]] = {"off": [], "on": [], "on, stalled": []}
        last: dict[str, str] = {}
        with FakeGrafana() as healthy, FakeGrafana() as stalled:
            stalled.faults.stall = True
            run(srv, off, healthy.url)  # warm-up: numba cache, QuestDB's JIT
            for _ in range(args.runs):
                for mode, cfg, url in (("off", off, healthy.url), ("on", on, healthy.url),
                                       ("on, stalled", on, stalled.url)):  # fmt: skip
                    wall, last[mode] = run(srv, cfg, url)
                    walls[mode].append(wall)
            rows = srv.http.query("SELECT count() n FROM alerts")[0]["n"]
            print(f"alerts rows per run: {rows}; annotations posted in total: "
                  f"{len(healthy.annotations)}")  # fmt: skip
        base = statistics.median(walls["off"])
        for mode, ws in walls.items():
            med = statistics.median(ws)
            runs = " ".join(f"{w:.2f}" for w in ws)
            print(f"{mode:<12} median {med:6.2f} s  ratio {med / base:5.2f}  runs [{runs}]  "
                  f"{last.get(mode, '') if mode != 'off' else ''}")


if __name__ == "__main__":
    main()
