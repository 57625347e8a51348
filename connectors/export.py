"""Export stored rows to CSV, streamed from QuestDB's ``/exp`` endpoint.

The CSV is copied chunk by chunk from the HTTP response to the file, so a million-row export
uses the memory of one chunk. Every user value that reaches SQL is validated first (symbols,
pair ids, timeframes, ISO timestamps): nothing the user types is pasted into a query as is.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO, Optional

from connectors.questdb_http import QuestDBError, QuestDBHttp

UTC = timezone.utc

# what → (table, instrument column, has timeframe)
WHAT = {
    "ticks": ("ticks", "symbol", False),
    "bars": ("bars", "symbol", True),
    "analytics": ("pair_analytics", "pair", True),
    "signals": ("signals", "pair", True),
    "alerts": ("alerts", "pair", True),
}
_SYMBOL = re.compile(r"^[A-Z0-9]{2,30}$")
_PAIR = re.compile(r"^[A-Z0-9]{2,30}/[A-Z0-9]{2,30}$")
_TF = re.compile(r"^\d{1,4}[smhd]$")


class ExportError(ValueError):
    """Bad arguments or nothing to export; the message is one line."""


def parse_time(text: str, name: str) -> datetime:
    """``2024-07-01``, ``2024-07-01T12:30``, ``...Z`` or with offset → aware UTC datetime."""
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        msg = f"--{name}: expected an ISO time like 2024-07-01T00:00, got {text!r}"
        raise ExportError(msg) from None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class ExportSpec:
    what: str
    instrument: Optional[str] = None  # symbol (ticks, bars) or pair id (analytics, signals, alerts)
    tf: Optional[str] = None
    start: Optional[datetime] = None
    end: Optional[datetime] = None

    def check(self) -> None:
        if self.what not in WHAT:
            raise ExportError(f"what: expected one of {', '.join(WHAT)}, got {self.what!r}")
        _, col, has_tf = WHAT[self.what]
        if self.instrument is not None:
            ok = (_SYMBOL if col == "symbol" else _PAIR).match(self.instrument)
            if not ok:
                kind = "a symbol like BTCUSDT" if col == "symbol" else "a pair like BTCUSDT/ETHUSDT"
                raise ExportError(f"--{col}: expected {kind}, got {self.instrument!r}")
        if self.tf is not None:
            if not has_tf:
                raise ExportError(f"--tf: {self.what} have no timeframe")
            if not _TF.match(self.tf):
                raise ExportError(f"--tf: expected a timeframe like 1m, got {self.tf!r}")
        if self.start and self.end and self.start >= self.end:
            raise ExportError("--from must be before --to")

    def where(self) -> str:
        table, col, _ = WHAT[self.what]
        conds = []
        if self.instrument:
            conds.append(f"{col} = '{self.instrument}'")
        if self.tf:
            conds.append(f"tf = '{self.tf}'")
        if self.start:
            conds.append(f"ts >= '{_iso(self.start)}'")
        if self.end:
            conds.append(f"ts < '{_iso(self.end)}'")
        return (" WHERE " + " AND ".join(conds)) if conds else ""

    def query(self) -> str:
        return f"SELECT * FROM {WHAT[self.what][0]}{self.where()} ORDER BY ts"


def _stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H-%M")


def default_name(spec: ExportSpec, first: datetime, last: datetime) -> str:
    """``analytics_BTCUSDT-ETHUSDT_1m_2024-07-01T00-00_2024-07-08T00-00.csv``."""
    parts = [spec.what]
    parts.append(spec.instrument.replace("/", "-") if spec.instrument else "all")
    if spec.tf:
        parts.append(spec.tf)
    parts += [_stamp(spec.start or first), _stamp(spec.end or last)]
    return "_".join(parts) + ".csv"


def _parse_qdb_ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def plan(http: QuestDBHttp, spec: ExportSpec) -> tuple[int, datetime, datetime]:
    """Row count and time span of an export; errors for an unknown instrument or empty range."""
    spec.check()
    table, col, _ = WHAT[spec.what]
    if spec.instrument:
        known = [r[col] for r in http.query(f"SELECT DISTINCT {col} FROM {table}")]
        if spec.instrument not in known:
            raise ExportError(
                f"--{col}: unknown {col} {spec.instrument!r} in {table} "
                f"(known: {', '.join(sorted(known)) or 'none'})"
            )
    row = http.query(f"SELECT count() n, min(ts) lo, max(ts) hi FROM {table}{spec.where()}")[0]
    if not row["n"]:
        raise ExportError(f"no {spec.what} rows match{spec.where().replace(' WHERE', ':')}")
    return row["n"], _parse_qdb_ts(row["lo"]), _parse_qdb_ts(row["hi"])


def export(http: QuestDBHttp, spec: ExportSpec, out: Optional[Path], directory: Path) -> Path:
    """Write the CSV (``out``, ``-`` for stdout, or the default name in ``directory``)."""
    try:
        _, first, last = plan(http, spec)
    except QuestDBError as e:
        raise ExportError(str(e)) from None
    target = out if out is not None else directory / default_name(spec, first, last)
    chunks: Iterator[bytes] = http.export_csv(spec.query())
    if str(target) == "-":
        _copy(chunks, sys.stdout.buffer)
        return target
    tmp = Path(str(target) + ".part")
    with open(tmp, "wb") as fh:
        _copy(chunks, fh)
    tmp.replace(target)
    return target


def _copy(chunks: Iterator[bytes], fh: BinaryIO) -> None:
    for block in chunks:
        fh.write(block)
