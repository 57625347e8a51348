"""Run a real QuestDB without Docker: the ``org.questdb:questdb`` jar from Maven Central.

Used by the test suite (temporary data directory, free loopback ports) and by ``make run`` /
``make demo`` (persistent ``var/questdb``). The jar is fetched once into ``.cache/questdb``;
later runs download nothing. The server is stopped with SIGTERM and waited for.

``python -m connectors.questdb_server fetch`` fetches the jar;
``python -m connectors.questdb_server serve [--root DIR] [--http PORT]`` runs it in the
foreground until interrupted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from connectors.questdb_http import QuestDBHttp

VERSION = "9.3.4"  # newest 9.3.x on Maven Central; 9.4+ needs Java 25
ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("PAIRSTREAM_CACHE", ROOT / ".cache")) / "questdb"


class LauncherError(RuntimeError):
    """A missing tool or a server that would not start; the message is one line."""


def jar_path(version: str = VERSION) -> Path:
    return CACHE / f"questdb-{version}.jar"


def fetch_jar(version: str = VERSION) -> Path:
    """The QuestDB jar, fetched through Maven into the cache the first time only."""
    jar = jar_path(version)
    if jar.exists():
        return jar
    if not shutil.which("mvn"):
        raise LauncherError(
            "Maven (mvn) is needed once to fetch QuestDB: install it (e.g. apt-get install maven)"
        )
    CACHE.mkdir(parents=True, exist_ok=True)
    cmd = [
        "mvn",
        "-q",
        "-B",
        "dependency:copy",
        f"-Dartifact=org.questdb:questdb:{version}",
        f"-DoutputDirectory={CACHE}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=CACHE)
    if proc.returncode != 0 or not jar.exists():
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or ["no output"]
        raise LauncherError(f"could not fetch org.questdb:questdb:{version} with Maven: {tail[0]}")
    return jar


def _java() -> str:
    java = shutil.which("java")
    if not java:
        raise LauncherError(
            "Java 17+ is needed to run QuestDB: install it (apt-get install default-jre-headless)"
        )
    return java


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def quiet_server_env() -> dict[str, str]:
    """QDB_* settings for a QuestDB that shares a small machine with the flow.

    QuestDB's worker pools spin for 10,000 idle cycles before they sleep, ILP/TCP and the view
    and export pools run even when unused, and every WAL commit is logged at INFO. On the
    2-core development machine that cost more CPU than the ingest itself and starved the flow
    (bench/README.md). A sleeping network or WAL-apply worker polls every millisecond, so a
    write is still visible by SQL within milliseconds (the latency target); the pools the flow
    never uses (materialized views, view compiler, export) poll every 100 ms.
    """
    env = {
        "QDB_LOG_W_STDOUT_LEVEL": "ERROR",  # ERROR keeps CRITICAL/ADVISORY; INFO to diagnose
    }
    pools = ["SHARED", "WAL_APPLY", "LINE_TCP_IO", "LINE_TCP_WRITER", "MAT_VIEW_REFRESH",
             "VIEW_COMPILER", "EXPORT"]  # fmt: skip
    for pool in pools:
        env[f"QDB_{pool}_WORKER_SLEEP_THRESHOLD"] = "100"
    for pool in ("SHARED", "WAL_APPLY"):  # network, queries, WAL apply: the latency path
        env[f"QDB_{pool}_WORKER_SLEEP_TIMEOUT"] = "1"  # ms: a sleeping worker wakes quickly
    for pool in ("MAT_VIEW_REFRESH", "VIEW_COMPILER", "EXPORT"):  # unused by the flow
        env[f"QDB_{pool}_WORKER_SLEEP_TIMEOUT"] = "100"  # polling every 1 ms cost ~4% of a core
    if (os.cpu_count() or 1) <= 4:  # each pool defaults to max(2, cores) threads
        for pool in pools:
            env[f"QDB_{pool}_WORKER_COUNT"] = "1"
    return env


@dataclass
class QuestDBServer:
    """One QuestDB process on loopback. Ports default to free ones chosen at start."""

    root: Optional[Path] = None  # data directory; None → a temporary one, removed at stop
    http_port: int = 0
    pg_port: int = 0
    ilp_port: int = 0
    version: str = VERSION
    detached: bool = False  # keeps running after this Python process (make demo); see stop_pidfile
    proc: Optional[subprocess.Popen] = field(default=None, repr=False)
    _tmp: Optional[str] = field(default=None, repr=False)

    @property
    def http_addr(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def conf(self) -> str:
        """Client configuration string for ``Sender.from_conf`` and :class:`QuestDBHttp`."""
        return f"http::addr={self.http_addr};"

    @property
    def http(self) -> QuestDBHttp:
        return QuestDBHttp.from_conf(self.conf)

    def start(self, timeout: float = 90.0) -> QuestDBServer:
        jar = fetch_jar(self.version)
        java = _java()
        if self.root is None:
            self._tmp = tempfile.mkdtemp(prefix="pairstream-qdb-")
            self.root = Path(self._tmp)
        self.root = Path(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.http_port = self.http_port or free_port()
        self.pg_port = self.pg_port or free_port()
        self.ilp_port = self.ilp_port or free_port()
        env = dict(
            os.environ,
            QDB_HTTP_BIND_TO=f"127.0.0.1:{self.http_port}",
            QDB_PG_NET_BIND_TO=f"127.0.0.1:{self.pg_port}",
            QDB_LINE_TCP_NET_BIND_TO=f"127.0.0.1:{self.ilp_port}",
            QDB_LINE_UDP_ENABLED="false",
            QDB_HTTP_MIN_ENABLED="false",
            QDB_TELEMETRY_ENABLED="false",
            QDB_METRICS_ENABLED="false",
        )
        for key, value in quiet_server_env().items():
            env.setdefault(key, value)  # the caller's own QDB_* settings win
        cmd = [
            java,
            "-Xms256m",
            "-Xmx2g",
            "--add-exports",
            "java.base/jdk.internal.math=io.questdb",
            "-p",
            str(jar),
            "-m",
            "io.questdb/io.questdb.ServerMain",
            "-d",
            str(self.root),
        ]
        log = open(self.root / "questdb.out", "ab")
        self.proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # Its own session: a terminal's Ctrl-C goes to the flow, which writes what it
            # holds into this server before the server is stopped (or kept, when detached).
            start_new_session=True,
        )
        if self.detached:
            (self.root / "questdb.pid").write_text(str(self.proc.pid))
        log.close()
        deadline = time.monotonic() + timeout
        http = self.http
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = (self.root / "questdb.out").read_text(errors="replace").strip()
                last = tail.splitlines()[-1] if tail else "no output"
                self.proc = None
                raise LauncherError(f"QuestDB exited at start: {last}")
            if http.ping():
                return self
            time.sleep(0.1)
        self.stop()
        raise LauncherError(f"QuestDB did not answer /ping on {self.http_addr} in {timeout:.0f}s")

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM, wait for exit (SIGKILL after ``timeout``), remove a temporary data dir."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def kill(self) -> None:
        """SIGKILL without cleanup (crash tests)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def __enter__(self) -> QuestDBServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def stop_pidfile(root: Path, timeout: float = 60.0) -> bool:
    """Stop a detached server by the pid it recorded in its data directory."""
    pidfile = Path(root) / "questdb.pid"
    if not pidfile.exists():
        return False
    pid = int(pidfile.read_text().strip())
    pidfile.unlink()
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    return True


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m connectors.questdb_server")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("fetch", help="fetch the pinned QuestDB jar into the cache")
    sv = sub.add_parser("serve", help="run QuestDB in the foreground until interrupted")
    sv.add_argument("--root", default=str(ROOT / "var" / "questdb"))
    sv.add_argument("--http", type=int, default=9000)
    sv.add_argument("--pg", type=int, default=8812)
    sv.add_argument("--ilp", type=int, default=9009)
    st = sub.add_parser("stop", help="stop a QuestDB left running by `pairstream demo`")
    st.add_argument("--root", default=str(ROOT / "var" / "questdb"))
    args = ap.parse_args(argv)
    try:
        if args.cmd == "fetch":
            print(fetch_jar())
            return 0
        if args.cmd == "stop":
            print("stopped" if stop_pidfile(Path(args.root)) else "no QuestDB was running")
            return 0
        srv = QuestDBServer(Path(args.root), args.http, args.pg, args.ilp)
        srv.start()
        print(f"QuestDB {srv.version} on http://{srv.http_addr} (data in {srv.root}); Ctrl-C stops")
        stop = False

        def _stop(*_):
            nonlocal stop
            stop = True

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        while not stop and srv.proc is not None and srv.proc.poll() is None:
            time.sleep(0.2)
        srv.stop()
        return 0
    except LauncherError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
