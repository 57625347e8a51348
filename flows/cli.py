"""The ``pairstream`` command: run the flow (with a local QuestDB when none is running).

``pairstream run``  — the main job with the configured source (live Binance by default).
``pairstream demo`` — the same over the bundled real sample, then how to query the result.
Other subcommands (export, replay, backtest) register themselves in :data:`COMMANDS`.
Extra arguments after ``--`` go to ``python -m bytewax.run`` (e.g. ``-- -w 2``).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

from connectors.questdb_http import QuestDBHttp, parse_conf
from connectors.questdb_server import ROOT, QuestDBServer
from flows.backtest_cli import add_args as bt_args
from flows.backtest_cli import cmd_backtest
from flows.scan_cli import add_args as scan_args
from flows.scan_cli import cmd_scan
from flows.startup import (
    check_source,
    checked,
    fail,
    load_config,
    setup_logging,
    tune_gc,
    warm_kernels,
)
from pairstream.config import Config

DEMO_CONFIG = ROOT / "config" / "demo.toml"
LOCAL_DATA = ROOT / "var" / "questdb"


@contextmanager
def questdb_for(cfg: Config, keep: bool = False) -> Iterator[Optional[QuestDBServer]]:
    """Yield while QuestDB answers at the configured address, starting a local one if needed.

    Only a loopback address is started locally (data kept in ``var/questdb``); a remote one
    that does not answer is an error naming the address. ``keep`` leaves a started server
    running afterwards (stopped by ``make stop``).
    """
    http = QuestDBHttp.from_conf(cfg.questdb.conf, timeout=5)
    if http.ping():
        yield None
        return
    _, params = parse_conf(cfg.questdb.conf)
    host, _, port = params.get("addr", "127.0.0.1:9000").rpartition(":")
    if host not in ("127.0.0.1", "localhost"):
        fail(f"QuestDB at {http.base_url} is unreachable (check [questdb] conf or QDB_CLIENT_CONF)")
    print(f"pairstream: starting a local QuestDB on {host}:{port} (data in {LOCAL_DATA})")
    srv = checked(lambda: QuestDBServer(LOCAL_DATA, http_port=int(port), detached=keep).start())
    try:
        yield srv
    finally:
        if keep:
            print(f"pairstream: QuestDB keeps running (pid {srv.proc.pid}); `make stop` stops it")
        else:
            srv.stop()


def run_flow(config_path: Optional[Path], bytewax_args: list[str]) -> int:
    """Run ``python -m bytewax.run flows.pairs`` as a child; Ctrl-C stops it cleanly.

    SIGINT/SIGTERM are passed on to the child, which writes what its sink holds, prints the one
    line (``pairstream: stopped``) and exits 130 or 0; this process adds nothing and returns
    that code (a child killed by a signal N returns 128 + N, as a shell would).
    """
    env = dict(os.environ)
    if config_path is not None:
        env["PAIRSTREAM_CONFIG"] = str(config_path)
    cmd = [sys.executable, "-m", "bytewax.run", "flows.pairs", *bytewax_args]
    child = subprocess.Popen(cmd, env=env, cwd=ROOT)

    def forward(signum, _frame):
        child.send_signal(signum)

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = child.wait()
        return 128 - code if code < 0 else code
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def init_recovery(directory: Path, partitions: int = 1) -> bool:
    """Create Bytewax recovery partitions in ``directory`` unless they exist; True if created.

    Bytewax refuses to run with ``-r DIR`` on an empty directory; this is the project's own
    ``python -m bytewax.recovery DIR N``, safe to call on every start.
    """
    from bytewax.recovery import init_db_dir

    directory.mkdir(parents=True, exist_ok=True)
    if any(directory.glob("part-*.sqlite3")):
        return False
    init_db_dir(directory, partitions)
    return True


def cmd_init_recovery(args: argparse.Namespace) -> int:
    made = init_recovery(Path(args.dir), args.partitions)
    print(f"{'created' if made else 'kept existing'} recovery partitions in {args.dir}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    path = Path(args.config) if args.config else None
    cfg = load_config(path)
    checked(lambda: check_source(cfg))  # before a local QuestDB is started: seconds, not more
    extra = list(args.bytewax)
    if args.recovery:
        init_recovery(Path(args.recovery))
        extra = ["-r", args.recovery, "-s", str(args.snapshot_every), "-b", "30", *extra]
    with questdb_for(cfg):
        return run_flow(path, extra)


def cmd_demo(args: argparse.Namespace) -> int:
    cfg = load_config(DEMO_CONFIG)
    with questdb_for(cfg, keep=not args.stop):
        code = run_flow(DEMO_CONFIG, args.bytewax)
        if code != 0:
            return code
        http = QuestDBHttp.from_conf(cfg.questdb.conf)
        http.wait_applied()
        rows = http.query("SELECT symbol, count() ticks, min(ts) first, max(ts) last FROM ticks")
        print("\npairstream demo: the bundled sample is in QuestDB")
        for r in rows:
            print(f"  {r['symbol']:<10} {r['ticks']:>7} ticks  {r['first']} .. {r['last']}")
        for table in ("bars", "pair_analytics", "signals", "alerts"):
            try:
                n = http.query(f"SELECT count() n FROM {table}")[0]["n"]
                print(f"  {table:<15} {n:>7} rows")
            except Exception:  # noqa: BLE001 - a table not written by this flow version
                pass
        print(
            "\nQuery it with SQL, for example:\n"
            f"  curl -G {http.base_url}/exec --data-urlencode "
            "\"query=SELECT * FROM bars WHERE tf='1m' ORDER BY ts LIMIT 10\"\n"
            "  psql -h 127.0.0.1 -p 8812 -U admin -d qdb   (password: quest)\n"
            f"  or open {http.base_url} in a browser (QuestDB web console)."
        )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from connectors.export import ExportSpec, export, parse_time

    cfg = load_config()
    spec = ExportSpec(
        what=args.what,
        instrument=args.symbol or args.pair,
        tf=args.tf,
        start=parse_time(args.start, "from") if args.start else None,
        end=parse_time(args.end, "to") if args.end else None,
    )
    http = QuestDBHttp.from_conf(cfg.questdb.conf)
    out = export(http, spec, Path(args.out) if args.out else None, Path(args.dir))
    if str(out) != "-":
        print(f"pairstream: wrote {out}", file=sys.stderr)
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    import threading
    import time
    from dataclasses import replace

    from bytewax.run import cli_main

    from connectors import replay as rp
    from connectors import shutdown
    from connectors.questdb_sink import ensure_tables
    from flows.pairs import build

    cfg = load_config()
    paths = tuple(str(Path(p).resolve()) for p in args.paths)
    rp.expand_paths(paths)  # one-line error for a missing file before anything starts
    source = replace(
        cfg.source, kind="replay", paths=paths, speed=args.speed, rebase_to_now=args.rebase
    )
    cfg = replace(cfg, source=source)
    total = rp.count_records(paths)
    with questdb_for(cfg):
        ensure_tables(cfg.questdb.conf)
        warm_kernels()
        flow = build(cfg)
        done = threading.Event()
        start = time.monotonic()

        tty = sys.stderr.isatty()

        def line() -> str:
            n = rp.PROGRESS["records"]
            pct = 100 * n // max(total, 1)
            rate = n / max(time.monotonic() - start, 1e-9)
            bar = "#" * (pct // 4) + "." * (25 - pct // 4)
            return f"[{bar}] {pct:3d}% {n:,}/{total:,} records {rate:,.0f}/s"

        def report() -> None:
            last = -10
            while not done.wait(0.5):
                pct = 100 * rp.PROGRESS["records"] // max(total, 1)
                if tty:
                    print("\r" + line(), end="", file=sys.stderr, flush=True)
                elif pct >= last + 10:  # a log, not a terminal: one line per 10%
                    print(line(), file=sys.stderr, flush=True)
                    last = pct

        shutdown.install()  # Ctrl-C: the sink writes what it holds, then one line
        reporter = threading.Thread(target=report, daemon=True)
        reporter.start()
        try:
            cli_main(flow, workers_per_process=args.workers)
        finally:
            done.set()
            reporter.join()
        elapsed = time.monotonic() - start
        n = rp.PROGRESS["records"]
        print(("\r" if tty else "") + line(), file=sys.stderr, flush=True)  # the final state
        http = QuestDBHttp.from_conf(cfg.questdb.conf)
        http.wait_applied()
        print(f"pairstream replay: {n:,} records from {len(paths)} file(s) in {elapsed:.1f}s "
              f"({n / max(elapsed, 1e-9):,.0f}/s)")
        for table in ("ticks", "bars", "pair_analytics", "signals", "alerts"):
            rows = http.query(f"SELECT count() n, min(ts) lo, max(ts) hi FROM {table}")[0]
            print(f"  {table:<15} {rows['n']:>9,} rows  {rows['lo']} .. {rows['hi']}")
    return 0


def cmd_grafana(args: argparse.Namespace) -> int:
    """``grafana sync``: what grafana/ provisions from files, into a running Grafana."""
    from connectors import grafana as gf

    cfg = load_config()
    g = cfg.grafana
    url = args.url or g.url
    if not url:
        fail("no Grafana URL: pass --url or set GRAFANA_URL (or [grafana] url)")
    qdb_host = parse_conf(cfg.questdb.conf)[1].get("addr", "127.0.0.1:9000").rpartition(":")[0]
    opts = gf.SyncOptions(
        questdb_server=args.questdb_server or g.questdb_server or qdb_host,
        questdb_port=args.questdb_port or g.questdb_port,
        folder=args.folder or g.folder,
        policy=not args.no_policy,
    )
    api = gf.connect(url, gf.credential_from_env(), g.timeout_s)
    version = gf.check(api)
    changes = gf.plan(api, opts)
    todo = [c for c in changes if c.apply is not None]
    verb = {"create": "would create", "update": "would update"} if args.dry_run else {}
    print(f"pairstream grafana sync: {gf.base_url(api)} (Grafana {version})")
    for c in changes:
        action = verb.get(c.action, c.action + ("d" if c.action.endswith("e") else "ed"))
        if c.action in ("unchanged", "skipped"):
            action = c.action
        print(f"  {c.kind:<14} {c.name:<32} {action}{': ' + c.detail if c.detail else ''}")
    if args.dry_run:
        print(f"dry run: {len(todo)} change(s) not written")
        return 0
    gf.apply(api, changes)
    if todo:
        print(f"synced: {len(todo)} change(s) written, {len(changes) - len(todo)} unchanged")
    else:
        print("nothing to change: Grafana already matches grafana/")
    return 0


def _grafana_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True)
    s = sub.add_parser("sync", help="create or update datasource, folder, dashboards, alerting")
    s.add_argument("--url", help="Grafana's URL (default: $GRAFANA_URL or [grafana] url)")
    s.add_argument("--folder", help="uid of an existing folder to use (default: pairstream's own)")
    s.add_argument("--dry-run", action="store_true", help="print what would change, write nothing")
    s.add_argument("--questdb-server", help="QuestDB's host as Grafana reaches it")
    s.add_argument("--questdb-port", type=int, help="QuestDB's PostgreSQL port (default 8812)")
    s.add_argument(
        "--no-policy", action="store_true", help="leave the notification policies alone"
    )


def _replay_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", help="dump or frame files (trades, aggTrades, klines)")
    p.add_argument("--speed", type=float, default=0.0, help="0 = fastest, 1 = real time")
    p.add_argument("--rebase", action="store_true", help="shift times so the tape starts now")
    p.add_argument("-w", "--workers", type=int, default=1, help="Bytewax worker threads")


def _export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("what", choices=["ticks", "bars", "analytics", "signals", "alerts"])
    p.add_argument("--symbol", help="ticks/bars: one symbol, e.g. BTCUSDT")
    p.add_argument("--pair", help="analytics/signals/alerts: one pair, e.g. BTCUSDT/ETHUSDT")
    p.add_argument("--tf", help="timeframe, e.g. 1m")
    p.add_argument("--from", dest="start", help="start (inclusive), ISO time, UTC by default")
    p.add_argument("--to", dest="end", help="end (exclusive), ISO time")
    p.add_argument("-o", "--out", help="output file ('-' for stdout; default: a descriptive name)")
    p.add_argument("--dir", default=".", help="directory for the default file name")


COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable]] = {
    "export": ("export stored rows to CSV (streamed from QuestDB)", _export_args, cmd_export),
    "replay": ("run the flow over dump files into QuestDB", _replay_args, cmd_replay),
    "backtest": ("backtest signal parameters (a grid) over stored bars", bt_args, cmd_backtest),
    "scan": ("rank every ordered pair of a universe (cointegration, half-life)", scan_args,
             cmd_scan),
    "grafana": ("sync dashboards and alerting into a running Grafana", _grafana_args, cmd_grafana),
}


def main(argv: Optional[list[str]] = None) -> int:
    setup_logging()
    tune_gc()
    argv = list(sys.argv[1:] if argv is None else argv)
    bytewax_args: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, bytewax_args = argv[:i], argv[i + 1 :]
    ap = argparse.ArgumentParser(prog="pairstream", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("run", help="run the main job (live by default)")
    p.add_argument(
        "--config", help="configuration file (default: $PAIRSTREAM_CONFIG or pairstream.toml)"
    )
    p.add_argument("--recovery", help="recovery directory (created if new): survive restarts")
    p.add_argument("--snapshot-every", type=int, default=5, help="seconds between snapshots")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("init-recovery", help="create Bytewax recovery partitions in DIR")
    p.add_argument("dir")
    p.add_argument("--partitions", type=int, default=1)
    p.set_defaults(func=cmd_init_recovery)
    p = sub.add_parser("demo", help="replay the bundled real sample into QuestDB")
    p.add_argument(
        "--stop", action="store_true", help="stop a QuestDB the demo started when it ends"
    )
    p.set_defaults(func=cmd_demo)
    for name, (help_text, add_args, func) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        add_args(p)
        p.set_defaults(func=func)
    args = ap.parse_args(argv)
    args.bytewax = bytewax_args
    return checked(lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
