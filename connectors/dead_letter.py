"""The dead-letter file: rows QuestDB (or its client) refused, kept instead of retried forever.

One JSON line per row: ``{"table", "reason", "at", "row"}``, ``row`` being the record's fields
(timestamps ISO 8601 UTC), so a refused row can be inspected, fixed and written again by hand.
Appended, never rewritten; several partitions (threads) share one file through one lock, and
each batch of refused rows is a single ``write``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from connectors.questdb_server import ROOT

DEFAULT_PATH = ROOT / "var" / "dead_letter.jsonl"
_OPTS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE | orjson.OPT_UTC_Z
_lock = threading.Lock()


class DeadLetterError(OSError):
    """The dead-letter file cannot be written (the message names it)."""


def write(path: str | os.PathLike, table: str, rows: Iterable[tuple[Any, str]]) -> int:
    """Append ``(record, reason)`` rows refused for ``table``; returns how many were written."""
    at = datetime.now(timezone.utc)
    lines = [
        orjson.dumps({"table": table, "reason": reason, "at": at, "row": rec}, default=str,
                     option=_OPTS)
        for rec, reason in rows
    ]
    if not lines:
        return 0
    p = Path(path)
    try:
        with _lock:
            p.parent.mkdir(parents=True, exist_ok=True)
            with open(p, "ab") as fh:
                fh.write(b"".join(lines))
    except OSError as e:
        raise DeadLetterError(f"cannot write the dead-letter file {p}: {e.strerror or e}") from e
    return len(lines)


def read(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Every entry of a dead-letter file (tests, and whoever repairs the rows)."""
    with open(path, "rb") as fh:
        return [orjson.loads(line) for line in fh if line.strip()]
