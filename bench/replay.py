"""Replay cost vs bare ingest, on one running QuestDB (``make bench-replay``).

(a) **whole job**: the wall time of ``python -m bytewax.run flows.pairs`` as a child process on a
    replay configuration over a ≥1M-tick gzip frame file (window A repeated): interpreter and
    imports, start-up checks, parsing, 1s/1m/5m bars, one pair's analytics, signals, alerts,
    every row written — until QuestDB has applied every WAL transaction.
(b) **bare ingest**: the official client writing the same ticks from ready-made columns (one
    DataFrame, as the sink builds it, through ``Sender.dataframe``) into a copy of the ``ticks``
    table (same DDL, same DEDUP keys), until applied.
(c) their ratio bare / whole (target ≥ 0.6).

The server is started once, then warmed by one untimed bare ingest and one untimed whole job
(its JVM compiles the ILP, WAL, dedup and out-of-order merge code of every table in the first
runs: a cold server spends 2-3 s more CPU on (a), on the flow's two cores); then ``--rounds``
rounds of (a) and (b) alternate, so both meet the same warm server, as a QuestDB that is
already running is. Figures are printed, never asserted: the machine
is shared and its spread is ±10-15%.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from bench.common import ALERTS, ROOT, cpu_seconds, machine, questdb, table_counts, write_frame_file
from connectors.questdb_sink import drop_tables
from connectors.schema import BY_NAME
from connectors.trade_block import trade_columns

COPIES = 42  # window A (24,356 ticks) 42 times: 1,022,952 ticks, the file
WINDOW_TICKS = 24_356
BARE = replace(BY_NAME["ticks"], name="ticks_bare")


def gzip_tape(n: int) -> Path:
    """The repeated tape as a gzip frame file (cached by size next to the plain one)."""
    plain = write_frame_file(n)
    path = plain.with_name(plain.name + ".gz")
    if not path.exists() or path.stat().st_size == 0:
        tmp = path.with_suffix(".part")
        with open(plain, "rb") as src, gzip.open(tmp, "wb", compresslevel=6) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        tmp.rename(path)
    return path


def config_file(path: Path, tape: Path, conf: str) -> Path:
    """The demo pipeline (two symbols, one pair, 1s/1m/5m, two alert rules) replaying ``tape``."""
    rules = "".join(
        "\n[[alerts]]\n" + "".join(f'{k} = "{v}"\n' for k, v in r.items()) for r in ALERTS
    )
    path.write_text(
        f"""symbols = ["BTCUSDT", "ETHUSDT"]
timeframes = ["1s", "1m", "5m"]
pairs = [{{ y = "BTCUSDT", x = "ETHUSDT" }}]

[source]
kind = "replay"
paths = ["{tape}"]
speed = 0

[questdb]
conf = "{conf}"

[bars]
lateness = "500ms"
{rules}"""
    )
    return path


def tick_columns(tape: Path) -> tuple[object, int]:
    """The tape's ticks as ready-made columns: one DataFrame in the ``ticks`` table's columns
    (the dtypes the sink's ``tick_frame`` uses), in the file's line order. Not timed."""
    import pandas as pd

    with gzip.open(tape, "rb") as fh:
        cols = trade_columns(fh.read())
    if cols is None:
        raise RuntimeError("the bench tape has a line the block parser does not take")
    df = pd.DataFrame(
        {
            "symbol": pd.Categorical.from_codes(cols.symbol_code, categories=list(cols.symbols)),
            "price": cols.price,
            "qty": cols.qty,
            "trade_id": cols.trade_id,
            "first_id": cols.trade_id,
            "last_id": cols.trade_id,
            "buyer_maker": cols.buyer_maker,
            "ts": (cols.ms * 1000).astype("datetime64[us]"),
        },
        copy=False,
    )
    return df, len(df)


def run_whole(tape: Path, conf: str, srv: object, workdir: Path) -> dict:
    """(a): the main job as a child process, timed from spawn to every row applied."""
    drop_tables(srv.http)
    cfg = config_file(workdir / "replay.toml", tape, conf)
    env = dict(os.environ, PAIRSTREAM_CONFIG=str(cfg), PAIRSTREAM_LOG="WARNING")
    env.pop("QDB_CLIENT_CONF", None)
    log = workdir / "flow.log"
    q0 = cpu_seconds(srv.proc.pid)
    c0 = os.times()
    t0 = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.run(
            [sys.executable, "-m", "bytewax.run", "flows.pairs"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    t_exit = time.perf_counter() - t0
    srv.http.wait_applied(timeout=600)
    wall = time.perf_counter() - t0
    c1 = os.times()
    if proc.returncode != 0:
        raise RuntimeError(f"flow exited {proc.returncode}: {log.read_text()[-2000:]}")
    return {
        "wall": wall,
        "exit": t_exit,
        "cpu": (c1.children_user - c0.children_user) + (c1.children_system - c0.children_system),
        "questdb_cpu": cpu_seconds(srv.proc.pid) - q0,
        "counts": table_counts(srv),
    }


def run_bare(df: object, conf: str, srv: object) -> dict:
    """(b): the official client, ready-made columns → ``ticks_bare``, until applied."""
    from questdb import Sender

    srv.http.exec(f"DROP TABLE IF EXISTS {BARE.name}")
    q0 = cpu_seconds(srv.proc.pid)
    r0 = time.process_time()
    t0 = time.perf_counter()
    srv.http.exec(BARE.ddl())
    with Sender.from_conf(conf) as sender:
        sender.dataframe(df, table_name=BARE.name, symbols=["symbol"], at="ts")
        sender.flush()
    srv.http.wait_applied([BARE.name], timeout=600)
    wall = time.perf_counter() - t0
    rows = srv.http.query(f"SELECT count() n FROM {BARE.name}")[0]["n"]
    return {
        "wall": wall,
        "cpu": time.process_time() - r0,
        "questdb_cpu": cpu_seconds(srv.proc.pid) - q0,
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ticks", type=int, default=COPIES * WINDOW_TICKS)
    ap.add_argument("--rounds", type=int, default=3, help="alternating (a)/(b) rounds")
    args = ap.parse_args(argv)

    tape = gzip_tape(args.ticks)
    # numba's kernel cache filled once per checkout (~10 s the first time), not in a timed run
    subprocess.run(
        [sys.executable, "-c", "from flows.startup import warm_kernels; warm_kernels()"],
        cwd=ROOT, check=True,
    )  # fmt: skip
    df, n = tick_columns(tape)
    print(f"machine: {machine()}")
    print(f"tape: {n:,} ticks, gzip frame file {tape} ({tape.stat().st_size / 2**20:.1f} MiB)")
    whole, bare = [], []
    with questdb() as srv, tempfile.TemporaryDirectory() as tmp:
        conf = srv.conf
        w = run_bare(df, conf, srv)
        print(f"warm-up (b), untimed: {w['wall']:.2f} s, QuestDB CPU {w['questdb_cpu']:.1f} s")
        w = run_whole(tape, conf, srv, Path(tmp))
        print(f"warm-up (a), untimed: {w['wall']:.2f} s, QuestDB CPU {w['questdb_cpu']:.1f} s")
        for k in range(args.rounds):
            a = run_whole(tape, conf, srv, Path(tmp))
            b = run_bare(df, conf, srv)
            whole.append(a["wall"])
            bare.append(b["wall"])
            print(
                f"round {k + 1}: (a) whole job {a['wall']:.2f} s (process exit {a['exit']:.2f} s, "
                f"its CPU {a['cpu']:.1f} s, QuestDB CPU {a['questdb_cpu']:.1f} s); "
                f"(b) bare ingest {b['wall']:.2f} s (client CPU {b['cpu']:.1f} s, QuestDB CPU "
                f"{b['questdb_cpu']:.1f} s); (c) bare/whole {b['wall'] / a['wall']:.2f}"
            )
            if a["counts"]["ticks"] != n or b["rows"] != n:
                print(f"  rows differ: whole {a['counts']}, bare {b['rows']}")
        print(f"  rows of (a): {a['counts']}")
    mw, mb = statistics.median(whole), statistics.median(bare)
    print(
        f"\nmedian of {args.rounds}: (a) whole job {mw:.2f} s -> {n / mw:,.0f} ticks/s; "
        f"(b) bare ingest {mb:.2f} s -> {n / mb:,.0f} ticks/s; (c) bare/whole {mb / mw:.2f} "
        f"(target >= 0.6)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
