"""A small client for QuestDB's HTTP SQL endpoints (``/exec``, ``/exp``), built from the same
client configuration string as the ingestion ``Sender`` so users configure one address.

Used for DDL at start, by tests and by ``pairstream export``; ingestion itself goes through
the official ``questdb`` client (see :mod:`connectors.questdb_sink`).
"""

from __future__ import annotations

import base64
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Optional

import orjson


class QuestDBError(RuntimeError):
    """QuestDB answered with an error, or could not be reached (message is one line)."""


def parse_conf(conf: str) -> tuple[str, dict[str, str]]:
    """``"http::addr=h:p;username=u;"`` → (``"http"``, {"addr": "h:p", "username": "u"})."""
    if "::" not in conf:
        raise ValueError(f"not a QuestDB client configuration string: {conf!r}")
    proto, rest = conf.split("::", 1)
    params: dict[str, str] = {}
    for part in rest.split(";"):
        if part.strip():
            k, _, v = part.partition("=")
            params[k.strip()] = v.strip()
    return proto.strip(), params


@dataclass(frozen=True)
class QuestDBHttp:
    """SQL over HTTP to one QuestDB server."""

    base_url: str  # e.g. http://127.0.0.1:9000
    auth_header: Optional[str] = None
    verify_tls: bool = True
    timeout: float = 30.0

    @classmethod
    def from_conf(cls, conf: str, timeout: float = 30.0) -> QuestDBHttp:
        proto, p = parse_conf(conf)
        scheme = "https" if proto in ("https", "tcps") else "http"
        addr = p.get("addr", "127.0.0.1:9000")
        if proto in ("tcp", "tcps"):  # ILP/TCP port given: SQL still goes over HTTP
            host = addr.rsplit(":", 1)[0]
            addr = f"{host}:{p.get('http_port', '9000')}"
        auth = None
        if "token" in p and proto in ("http", "https"):
            auth = f"Bearer {p['token']}"
        elif "username" in p:
            raw = f"{p['username']}:{p.get('password', '')}".encode()
            auth = "Basic " + base64.b64encode(raw).decode()
        verify = p.get("tls_verify", "on") != "unsafe_off"
        return cls(f"{scheme}://{addr}", auth, verify, timeout)

    def _open(self, path: str, params: dict[str, str]):
        url = f"{self.base_url}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        req = urllib.request.Request(url)
        if self.auth_header:
            req.add_header("Authorization", self.auth_header)
        ctx = None
        if self.base_url.startswith("https") and not self.verify_tls:
            ctx = ssl._create_unverified_context()  # only when the user set tls_verify=unsafe_off
        try:
            return urllib.request.urlopen(req, timeout=self.timeout, context=ctx)
        except urllib.error.HTTPError as e:
            body = e.read()[:2000]
            try:
                msg = orjson.loads(body).get("error", body.decode(errors="replace"))
            except orjson.JSONDecodeError:
                msg = body.decode(errors="replace")
            raise QuestDBError(f"QuestDB at {self.base_url}: {msg}".replace("\n", " ")) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise QuestDBError(f"QuestDB at {self.base_url} is unreachable ({reason})") from None

    def exec(self, sql: str) -> dict[str, Any]:
        """Run one statement; returns QuestDB's JSON answer (``columns``, ``dataset``, ...)."""
        with self._open("/exec", {"query": sql}) as resp:
            out = orjson.loads(resp.read())
        if "error" in out:
            raise QuestDBError(f"QuestDB at {self.base_url}: {out['error']}")
        return out

    def query(self, sql: str) -> list[dict[str, Any]]:
        """Rows of a SELECT as dicts keyed by column name."""
        out = self.exec(sql)
        names = [c["name"] for c in out.get("columns", [])]
        return [dict(zip(names, row)) for row in out.get("dataset", [])]

    def export_csv(self, sql: str, chunk: int = 1 << 16) -> Iterator[bytes]:
        """Stream ``/exp`` CSV for a query in chunks, never holding the whole result."""
        with self._open("/exp", {"query": sql}) as resp:
            while True:
                block = resp.read(chunk)
                if not block:
                    return
                yield block

    def ping(self) -> bool:
        """True when the server answers ``/ping``."""
        try:
            with self._open("/ping", {}):
                return True
        except QuestDBError:
            return False

    def wait_applied(self, tables: Optional[list[str]] = None, timeout: float = 60.0) -> None:
        """Block until QuestDB has applied every committed WAL transaction of ``tables``.

        QuestDB applies WAL asynchronously; a reader that must see what was written (tests,
        export right after a replay) waits on the server's own bookkeeping (``wal_tables()``:
        ``writerTxn == sequencerTxn``) instead of sleeping a guessed time.
        """
        import time

        deadline = time.monotonic() + timeout
        pending: list[str] = []
        while True:
            rows = self.query("SELECT name, suspended, writerTxn, sequencerTxn FROM wal_tables()")
            pending = []
            for r in rows:
                if tables is not None and r["name"] not in tables:
                    continue
                if r["suspended"]:
                    raise QuestDBError(f"QuestDB suspended WAL apply of table {r['name']}")
                if r["writerTxn"] < r["sequencerTxn"]:
                    pending.append(r["name"])
            if not pending:
                return
            if time.monotonic() > deadline:
                raise QuestDBError(f"WAL of {pending} not applied after {timeout:.0f}s")
            time.sleep(0.02)
