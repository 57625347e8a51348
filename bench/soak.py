"""Soak: millions of real ticks through the whole flow, with faults; nothing lost or duplicated.

The tape is window A (data/sample, 24,356 real BTCUSDT+ETHUSDT futures trades, as recorded
WebSocket frames) repeated: copy k is shifted by k times the window's span rounded up to whole
5 minutes (bars of every timeframe line up with the original ones) and its trade ids are offset
by k times the symbol's id span, so every copy continues the previous one and (symbol, id) stays
unique. Garbage lines are mixed in. The flow (`python -m bytewax.run flows.pairs -r DIR -s 5
-b 0`) replays it into a QuestDB of its own while the soak injects faults: a SIGKILL of the flow
then a resume from the recovery directory, and a QuestDB stop/restart (same data, same ports).

Checked at the end (a failed check raises): ticks = the tape's ticks exactly once; per symbol
and timeframe the bars are contiguous from the first tick's interval to the last one's, each
(ts, symbol, tf) once; pair_analytics and signals one row per aligned interval. Printed: the
flow's RSS (VmRSS and peak VmHWM from /proc) when the ticks table passes 1M and 2M rows, times,
counts.

    python -m bench.soak [--ticks 2000000] [--kill-at 600000] [--restart-at 1300000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import orjson

from bench.common import repeated_frames
from connectors.questdb_server import QuestDBServer
from flows.cli import init_recovery

ROOT = Path(__file__).resolve().parent.parent
TF_SECONDS = {"1s": 1, "1m": 60, "5m": 300}
GARBAGE = (
    b"1721347022707 {not json",
    b'1721347022707 {"stream":"btcusdt@trade","data":{"e":"trade","s":"BTCUSDT","t":"x"}}',
    b"not even a frame line",
    b'1721347022707 {"stream":"ethusdt@trade","data":{"e":"trade","s":"ETHUSDT","t":1,'
    b'"p":"NaN","q":"1","T":1721347022707,"m":true}}',
)

CONFIG = """\
symbols    = ["BTCUSDT", "ETHUSDT"]
timeframes = ["1s", "1m", "5m"]
pairs      = [{{ y = "BTCUSDT", x = "ETHUSDT" }}]

[source]
kind  = "replay"
paths = ["{tape}"]
speed = {speed}

[bars]
lateness = "500ms"

[analytics]
window = 60
z_window = 60
corr_window = 60
adf_window = 120
adf_every = 10

[[alerts]]
id = "z-1s"
pair = "BTCUSDT/ETHUSDT"
tf = "1s"
when = "abs(zscore) > 2"
clear = "abs(zscore) < 1"
cooldown = "1m"
"""


@dataclass
class Tape:
    """What a generated tape holds: the expected content of the tables."""

    path: Path
    ticks: int
    malformed: int
    per_symbol: dict[str, int] = field(default_factory=dict)
    first_ms: dict[str, int] = field(default_factory=dict)
    last_ms: dict[str, int] = field(default_factory=dict)


def write_tape(path: Path, n_ticks: int, malformed_every: int = 0) -> Tape:
    """Write ``n_ticks`` trades of the repeated window A as a frame file, plus a garbage line
    after every ``malformed_every`` trades (0: none)."""
    tape = Tape(path, n_ticks, 0)
    with open(path, "wb") as out:
        for done, (ns, f) in enumerate(repeated_frames(n_ticks), 1):
            d = f["data"]
            s = d["s"]
            out.write(b"%d %s\n" % (ns, orjson.dumps(f)))
            tape.per_symbol[s] = tape.per_symbol.get(s, 0) + 1
            tape.first_ms.setdefault(s, d["T"])
            tape.last_ms[s] = d["T"]
            if malformed_every and done % malformed_every == 0:
                out.write(GARBAGE[tape.malformed % len(GARBAGE)] + b"\n")
                tape.malformed += 1
    return tape


def expected_bars(tape: Tape, symbol: str, tf: str) -> tuple[int, int]:
    """(first, last) bar start in epoch seconds: from the first tick's interval to the last's
    (at end of input every open bar is flushed)."""
    n = TF_SECONDS[tf]
    first, last = tape.first_ms[symbol] // 1000, tape.last_ms[symbol] // 1000
    return first - first % n, last - last % n


def check(http, tape: Tape, pairs: tuple[tuple[str, str], ...] = (("BTCUSDT", "ETHUSDT"),)
          ) -> dict[str, int]:
    """Assert the tables hold exactly the tape's rows; return the row counts."""
    q = http.query
    n = q("SELECT count() n FROM ticks")[0]["n"]
    distinct = q("SELECT count() n FROM (SELECT DISTINCT symbol, trade_id FROM ticks)")[0]["n"]
    assert n == distinct == tape.ticks, f"ticks: {n} rows, {distinct} distinct, want {tape.ticks}"
    for r in q("SELECT symbol, count() n FROM ticks"):
        assert r["n"] == tape.per_symbol[r["symbol"]], r
    counts = {"ticks": n}
    spans: dict[tuple[str, str], tuple[int, int]] = {}
    rows = q("SELECT symbol, tf, count() n, count_distinct(ts) d, "
             "cast(min(ts) AS LONG) lo, cast(max(ts) AS LONG) hi FROM bars")
    assert len(rows) == len(tape.per_symbol) * len(TF_SECONDS), rows
    for r in rows:
        lo, hi = expected_bars(tape, r["symbol"], r["tf"])
        want = (hi - lo) // TF_SECONDS[r["tf"]] + 1
        got = (r["n"], r["d"], r["lo"] // 10**6, r["hi"] // 10**6)
        assert got == (want, want, lo, hi), f"bars {r['symbol']} {r['tf']}: {got} want {want}"
        spans[r["symbol"], r["tf"]] = (lo, hi)
        counts["bars"] = counts.get("bars", 0) + r["n"]
    for table in ("pair_analytics", "signals"):
        rows = q(f"SELECT pair, tf, count() n, count_distinct(ts) d FROM {table}")
        for r in rows:
            y, x = r["pair"].split("/")
            lo = max(spans[y, r["tf"]][0], spans[x, r["tf"]][0])
            hi = min(spans[y, r["tf"]][1], spans[x, r["tf"]][1])
            want = (hi - lo) // TF_SECONDS[r["tf"]] + 1
            assert r["n"] == r["d"] == want, f"{table} {r['pair']} {r['tf']}: {r} want {want}"
            counts[table] = counts.get(table, 0) + r["n"]
        assert len(rows) == len(pairs) * len(TF_SECONDS), (table, rows)
    counts["alerts"] = q("SELECT count() n FROM alerts")[0]["n"]
    return counts


def proc_status(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak) of ``pid`` in MiB; empty once the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        key = line.split(":", 1)[0]
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(line.split()[1]) / 1024
    return out


def count_ticks(srv: QuestDBServer) -> Optional[int]:
    try:
        return srv.http.query("SELECT count() n FROM ticks")[0]["n"]
    except Exception:  # noqa: BLE001 - QuestDB down or the table not there yet
        return None


@dataclass
class Faults:
    kill_at: Optional[int] = None  # SIGKILL the flow once this many ticks are in QuestDB
    restart_at: Optional[int] = None  # stop QuestDB once this many ticks are in ...
    outage: float = 10.0  # ... for this many seconds, then start it again
    marks: tuple[int, ...] = (1_000_000, 2_000_000)  # RSS sampled as the ticks table passes


@dataclass
class Run:
    seconds: float = 0.0
    kills: list[int] = field(default_factory=list)  # ticks in QuestDB at each kill
    restarts: list[int] = field(default_factory=list)  # ... at each QuestDB stop
    rss: dict[int, dict] = field(default_factory=dict)  # mark -> {VmRSS, VmHWM, pid, ...}
    last_sample: dict = field(default_factory=dict)


def run_flow(srv: QuestDBServer, config: Path, workdir: Path, faults: Faults,
             args: tuple[str, ...] = (), timeout: float = 3600.0) -> Run:
    """Run the flow with recovery until it exits 0, injecting ``faults``; sample its memory."""
    rec = workdir / "recovery"
    init_recovery(rec)
    log = workdir / "flow.log"
    env = dict(os.environ, PAIRSTREAM_CONFIG=str(config), QDB_CLIENT_CONF=srv.conf)
    cmd = [sys.executable, "-m", "bytewax.run", "flows.pairs", "-r", str(rec), "-s", "5",
           "-b", "0", *args]
    run = Run()
    t0 = time.monotonic()
    pending_kill, pending_restart = faults.kill_at, faults.restart_at
    while True:
        with open(log, "a") as out:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out,
                                    stderr=subprocess.STDOUT)
        stop_sampling = threading.Event()

        def sample(pid: int = proc.pid, stop: threading.Event = stop_sampling) -> None:
            while not stop.wait(0.2):
                st = proc_status(pid)
                if st:
                    run.last_sample = {**st, "pid": pid}

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        killed = False
        started = time.monotonic()
        try:
            while proc.poll() is None:
                if time.monotonic() - t0 > timeout:
                    raise TimeoutError(f"soak still running after {timeout:.0f}s; see {log}")
                n = count_ticks(srv)
                # faults only hit a flow that is past its start-up (one fault at a time: a
                # flow started while QuestDB is down refuses to start, by design)
                settled = time.monotonic() - started >= 3.0
                if n is not None:
                    for m in faults.marks:
                        if n >= m and m not in run.rss and run.last_sample:
                            run.rss[m] = {**run.last_sample, "ticks": n}
                    if settled and pending_kill is not None and n >= pending_kill:
                        proc.kill()
                        proc.wait()
                        run.kills.append(n)
                        pending_kill, killed = None, True
                        break
                    if settled and pending_restart is not None and n >= pending_restart:
                        srv.stop()
                        time.sleep(faults.outage)  # the outage itself
                        srv.start()
                        run.restarts.append(n)
                        pending_restart = None
                time.sleep(0.5)
        finally:
            stop_sampling.set()
            sampler.join()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if killed:
            continue
        if proc.returncode != 0:
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"flow exited {proc.returncode}:\n{tail}")
        break
    run.seconds = time.monotonic() - t0
    srv.http.wait_applied()
    for m in faults.marks:  # passed after the flow's last sample (WAL apply lag): at exit
        if m not in run.rss and (count_ticks(srv) or 0) >= m:
            run.rss[m] = {**run.last_sample, "ticks": "at exit"}
    return run


def soak(n_ticks: int, workdir: Path, faults: Faults, malformed_every: int = 100_000,
         srv: Optional[QuestDBServer] = None, speed: float = 0.0
         ) -> tuple[Tape, Run, dict[str, int]]:
    """Generate the tape, run the flow with ``faults`` into ``srv`` (or a new QuestDB).

    ``speed`` paces the replay (0: as fast as possible), e.g. so that faults land mid-run.
    """
    t = time.monotonic()
    tape = write_tape(workdir / "soak-BTCUSDT+ETHUSDT-frames.txt", n_ticks, malformed_every)
    print(f"tape: {tape.ticks:,} ticks + {tape.malformed} garbage lines "
          f"({time.monotonic() - t:.1f}s to write)", flush=True)
    config = workdir / "soak.toml"
    config.write_text(CONFIG.format(tape=tape.path, speed=speed))
    own = srv is None
    srv = srv or QuestDBServer(root=workdir / "questdb").start()
    try:
        run = run_flow(srv, config, workdir, faults)
        counts = check(srv.http, tape)
    finally:
        if own:
            srv.stop()
    return tape, run, counts


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n")[0])
    ap.add_argument("--ticks", type=int, default=2_000_000)
    ap.add_argument("--malformed-every", type=int, default=100_000)
    ap.add_argument("--kill-at", type=int, default=600_000, help="ticks in QuestDB (0: never)")
    ap.add_argument("--restart-at", type=int, default=1_300_000, help="ticks (0: never)")
    ap.add_argument("--outage", type=float, default=10.0, help="QuestDB down, seconds")
    ap.add_argument("--dir", help="work directory (default: a temporary one, kept)")
    args = ap.parse_args(argv)
    workdir = Path(args.dir or tempfile.mkdtemp(prefix="pairstream-soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    faults = Faults(args.kill_at or None, args.restart_at or None, args.outage)
    tape, run, counts = soak(args.ticks, workdir, faults, args.malformed_every)
    print(f"flow: {run.seconds:.0f}s wall ({tape.ticks / run.seconds:,.0f} ticks/s overall), "
          f"killed at {run.kills} ticks, QuestDB stopped {args.outage:g}s at {run.restarts}")
    for m, s in sorted(run.rss.items()):
        print(f"RSS at {m:,} ticks (table had {s['ticks']}): VmRSS {s['VmRSS']:.0f} MiB, "
              f"peak VmHWM {s['VmHWM']:.0f} MiB (pid {s['pid']})")
    print("checks passed: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    print(f"work directory: {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
