"""Shared bench helpers: the repeated real tape, configs, a QuestDB on free ports, RSS/CPU.

The tape is window A (data/sample, 24,356 real BTCUSDT+ETHUSDT futures trades) repeated: each
copy shifted by the window's span rounded up to whole 5 minutes (so bars of every timeframe
line up with the original ones) and its trade ids offset per symbol, so (symbol, trade_id)
stays unique and every copy is a valid continuation of the previous one.
"""

from __future__ import annotations

import gzip
import os
import resource
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional

import orjson

from connectors.questdb_server import QuestDBServer
from pairstream.config import Config, parse

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample"
WINDOW_A = "2024-07-18T23-57_2024-07-19T00-05"
MERGED = SAMPLE / f"futures-um-ws-trade-frames-BTCUSDT+ETHUSDT-merged-{WINDOW_A}.txt.gz"
STEP_MS = 5 * 60 * 1000  # copies are shifted by whole 5 minutes

ALERTS = [
    {
        "id": "z-extreme",
        "pair": "BTCUSDT/ETHUSDT",
        "tf": "1m",
        "when": "abs(zscore) > 2",
        "clear": "abs(zscore) < 1.5",
        "cooldown": "5m",
        "severity": "warning",
    },
    {
        "id": "z-1s",
        "pair": "BTCUSDT/ETHUSDT",
        "tf": "1s",
        "when": "abs(zscore) > 2",
        "clear": "abs(zscore) < 1.5",
        "cooldown": "1m",
        "severity": "info",
    },
]


def load_window_a() -> list[tuple[int, dict]]:
    """(recv_ns, combined-stream frame dict) of window A, in receive order."""
    out = []
    with gzip.open(MERGED, "rb") as fh:
        for line in fh:
            ns, _, raw = line.rstrip(b"\n").partition(b" ")
            out.append((int(ns), orjson.loads(raw)))
    return out


def tape_shift_ms(frames: list[tuple[int, dict]]) -> int:
    """The span of the tape's trade times, rounded up to whole 5 minutes."""
    ts = [f["data"]["T"] for _, f in frames]
    span = max(ts) - min(ts) + 1
    return -(-span // STEP_MS) * STEP_MS


def repeated_frames(
    n: int, frames: Optional[list[tuple[int, dict]]] = None
) -> Iterator[tuple[int, dict]]:
    """The first ``n`` frames of window A repeated with shifted times and offset ids."""
    frames = frames or load_window_a()
    shift = tape_shift_ms(frames)
    ids: dict[str, list[int]] = {}
    for _, f in frames:
        ids.setdefault(f["data"]["s"], []).append(f["data"]["t"])
    id_step = {s: max(v) - min(v) + 1 for s, v in ids.items()}
    k = done = 0
    while done < n:
        dt_ms = k * shift
        for ns, f in frames:
            if done >= n:
                return
            d = dict(f["data"])
            d["T"] += dt_ms
            d["E"] += dt_ms
            d["t"] += k * id_step[d["s"]]
            yield ns + dt_ms * 1_000_000, {"stream": f["stream"], "data": d}
            done += 1
        k += 1


def write_frame_file(n: int, path: Optional[Path] = None) -> Path:
    """Write ``n`` ticks of the repeated tape as an uncompressed frame file (cached by size)."""
    path = path or Path(tempfile.gettempdir()) / f"pairstream-bench-tape-{n}.txt"
    if path.exists() and path.stat().st_size > 0:
        return path
    tmp = path.with_suffix(".part")
    with open(tmp, "wb") as fh:
        for ns, f in repeated_frames(n):
            fh.write(b"%d %s\n" % (ns, orjson.dumps(f)))
    tmp.rename(path)
    return path


def replay_config(paths: list[str], conf: str, lateness: str = "500ms", **questdb: Any) -> Config:
    """The demo configuration (two symbols, one pair, 1s/1m/5m, alerts) replaying ``paths``."""
    return parse(
        {
            "symbols": ["BTCUSDT", "ETHUSDT"],
            "timeframes": ["1s", "1m", "5m"],
            "pairs": [{"y": "BTCUSDT", "x": "ETHUSDT"}],
            "source": {"kind": "replay", "paths": paths, "speed": 0},
            "questdb": {"conf": conf, **questdb},
            "bars": {"lateness": lateness},
            "alerts": ALERTS,
        }
    )


@contextmanager
def questdb() -> Iterator[QuestDBServer]:
    """A QuestDB on free loopback ports with a temporary data directory, stopped at exit."""
    srv = QuestDBServer().start()
    try:
        yield srv
    finally:
        srv.stop()


def table_counts(srv: QuestDBServer) -> dict[str, int]:
    from connectors.schema import TABLES

    out = {}
    for t in TABLES:
        try:
            out[t.name] = srv.http.query(f"SELECT count() n FROM {t.name}")[0]["n"]
        except Exception:  # noqa: BLE001 - a table the run never created
            out[t.name] = 0
    return out


def peak_rss_mb(pid: Optional[int] = None) -> float:
    """Peak resident set size (VmHWM) of ``pid`` (default: this process), in MiB."""
    status = Path(f"/proc/{pid or 'self'}/status").read_text()
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb(pid: Optional[int] = None) -> float:
    status = Path(f"/proc/{pid or 'self'}/status").read_text()
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine() -> str:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    utc = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return f"{os.cpu_count()} cores ({cpu}), {utc}"


# -- live runs against the fake exchange -------------------------------------------------------


def live_frames(
    seconds: float, start_ms: int, copies: int = 1, skip: float = 180.0
) -> tuple[list[Any], int, list[str]]:
    """``seconds`` of window A from ``skip`` s in as fake-exchange frames, trades moved to start_ms.

    The default skip starts at minute 3, where the recorded rate is 50-95 trades/s (the first
    three minutes are quiet, ~15 trades/s).

    ``copies`` > 1 synthesises more symbols from the real two by renaming (``BTCUSDT`` →
    ``BTC01USDT`` ...); every copy trades at the recorded rate. Returns (frames, the shift in ms
    applied to trade times, symbols). Times are moved by whole seconds so the fake's aggTrade
    rule (never across a second) groups the same fills.
    """
    from tests.fakes.tape import Frame, RawTrade, load_frames

    base = load_frames()
    r0 = base[0].recv_ns
    base = [f for f in base if skip * 1e9 <= f.recv_ns - r0 <= (skip + seconds) * 1e9]
    shift = (start_ms - base[0].trade.T) // 1000 * 1000
    out: list[Frame] = []
    symbols: list[str] = []
    for k in range(copies):
        for f in base:
            t = f.trade
            sym = t.symbol if copies == 1 else f"{t.symbol[:3]}{k:02d}{t.symbol[3:]}"
            if sym not in symbols:
                symbols.append(sym)
            nt = RawTrade(sym, t.id, t.price, t.qty, t.T + shift, t.m, t.E + shift)
            d = {
                "e": "trade", "E": nt.E, "T": nt.T, "s": sym, "t": nt.id, "p": nt.price,
                "q": nt.qty, "X": "MARKET", "m": nt.m,
            }  # fmt: skip
            raw = orjson.dumps({"stream": f"{sym.lower()}@trade", "data": d})
            out.append(Frame(f.recv_ns + k, nt, raw))  # +k: a stable, strictly merged order
    out.sort(key=lambda f: f.recv_ns)
    return out, shift, symbols


def event_to_wall_offset_ms(frames: list[Any]) -> float:
    """Median of ``T − (recv − recv₀)`` in ms: maps a trade time to the fake's send clock.

    The fake sends frame i at ``t₀ + (recv_i − recv₀)``, t₀ being its first client connection,
    so a trade time T is "now" on the wall clock at ``t₀ + (T − offset)``.
    """
    r0 = frames[0].recv_ns
    d = sorted(f.trade.T - (f.recv_ns - r0) / 1e6 for f in frames)
    return d[len(d) // 2]


def live_config_file(
    path: Path,
    symbols: list[str],
    pairs: list[tuple[str, str]],
    ws_url: str,
    rest_url: str,
    conf: str,
    lateness: str = "500ms",
    flush_interval: str = "250ms",
    stream: str = "aggTrade",
    extra: str = "",
) -> Path:
    """A TOML config for the live source against the fake exchange (``extra``: more TOML)."""
    sym = ", ".join(f'"{s}"' for s in symbols)
    prs = ", ".join(f'{{ y = "{y}", x = "{x}" }}' for y, x in pairs)
    path.write_text(
        f"""symbols = [{sym}]
timeframes = ["1s", "1m", "5m"]
pairs = [{prs}]

[source]
kind = "binance"
stream = "{stream}"
ws_url = "{ws_url}"
rest_url = "{rest_url}"

[questdb]
conf = "{conf}"
flush_interval = "{flush_interval}"

[bars]
lateness = "{lateness}"
{extra}"""
    )
    return path


def start_flow(config: Path, log: Path, **env_vars: str) -> Any:
    """``python -m bytewax.run flows.pairs`` on ``config`` in a child process (stderr → log)."""
    import subprocess
    import sys

    env = dict(os.environ, PAIRSTREAM_CONFIG=str(config), **env_vars)
    env.pop("QDB_CLIENT_CONF", None)
    return subprocess.Popen(
        [sys.executable, "-m", "bytewax.run", "flows.pairs"],
        cwd=ROOT,
        env=env,
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,
    )


def stop_flow(proc: Any, timeout: float = 20.0) -> None:
    """SIGINT (Bytewax stops at the next epoch), then SIGKILL if it does not exit."""
    import signal
    import subprocess

    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_connected(fake: Any, timeout: float = 120.0) -> float:
    """Block until the flow's first WebSocket connection; its wall time (``time.time()``)."""
    deadline = time.monotonic() + timeout
    while fake.stats.connections == 0:
        if time.monotonic() > deadline:
            raise RuntimeError("the flow never connected to the fake exchange")
        time.sleep(0.001)
    return time.time()
