"""Bytewax sink writing typed records into QuestDB with the official client over HTTP.

One partition per table (``ticks``, ``bars`` ...), so multi-worker runs spread tables across
workers and each table has a single writer. Records are buffered and flushed by a background
thread on size and on a timer, even when the stream is quiet. The partition keeps its own copy
of every row until QuestDB confirms it (the client clears its buffer on a failed flush).

What happens when a flush fails depends on who is at fault:

* QuestDB unreachable, a timeout, HTTP 5xx: the rows stay in a bounded buffer and the flush is
  retried with capped backoff; when the buffer is full ``write_batch`` waits (back-pressure).
* HTTP 4xx (QuestDB refuses rows, e.g. a value of the wrong type for a column) or a row the
  client itself refuses: the batch is split to isolate the refused rows (QuestDB names the
  first bad line of a request; without it, halves), the others are written, the refused ones
  go to the dead-letter file (:mod:`connectors.dead_letter`) and are counted as the
  ``feed_health`` metric ``rejected_rows``; one warning line names the file. Never retried.
* Anything else (bad credentials, TLS, a bug): the flow stops with one line
  (:mod:`connectors.shutdown`), or the error is raised on the worker where that is not set up.

``snapshot`` (called by Bytewax at the end of each epoch, before the epoch's recovery snapshot is
committed) and ``close`` flush synchronously: an epoch never counts as written before its rows
are in QuestDB, and DEDUP keys make the rows re-sent after a resume harmless.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections import deque
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import bytewax.operators as op
import numpy as np
import orjson
from bytewax.dataflow import Stream, operator
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition
from questdb import QuestDBError as ClientError
from questdb import Sender

from connectors import dead_letter as dead_letter_file
from connectors import shutdown
from connectors.questdb_http import QuestDBError, QuestDBHttp
from connectors.schema import BY_NAME, BY_RECORD, FEED_HEALTH, TABLES, Table, table_for
from connectors.schema_check import SchemaMismatch, check_tables
from pairstream.records import Health, TickBatch, expand_ticks

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("pairstream.questdb")


def ensure_tables(conf: str, tables: Iterable[Table] = TABLES) -> None:
    """Create missing tables, check existing ones against the schema (safe fixes are made and
    logged, see :mod:`connectors.schema_check`). Raises QuestDBError with a one-line message."""
    check_tables(QuestDBHttp.from_conf(conf), tables)


def write_table(conf: str, table: Table, rows: Iterable[Any]) -> None:
    """Write ``rows`` of one table once, through the flow's own sink partition (commands such as
    ``backtest`` and ``scan``); a failure is one QuestDBError line naming the table."""
    ensure_tables(conf, [table])
    part = QuestDBSink(conf).build_part(table.name, table.name, None)
    try:
        part.write_batch(list(rows))
        part.close()
    except (ClientError, QuestDBError, OSError) as e:
        raise QuestDBError(f"writing table {table.name}: {' '.join(str(e).split())}") from None


def drop_tables(http: QuestDBHttp, tables: Iterable[Table] = TABLES) -> None:
    """Drop the tables if they exist: tests and benchmarks that start from empty tables."""
    for t in tables:
        http.exec(f"DROP TABLE IF EXISTS {t.name}")


def check_reachable(conf: str) -> None:
    """Raise QuestDBError naming the address when QuestDB does not answer."""
    http = QuestDBHttp.from_conf(conf, timeout=5.0)
    if not http.ping():
        raise QuestDBError(
            f"QuestDB at {http.base_url} is unreachable "
            "(check [questdb] conf or QDB_CLIENT_CONF)"
        )


# The oldest-row time that makes a flush due at once, whatever the interval (a drain): not 0,
# as the monotonic clock may be younger than an hour-long interval.
_DUE_NOW = float("-inf")


class _Unwritten(Exception):
    """A retryable failure part-way through a flush: ``rows`` are still to be written."""

    def __init__(self, rows: list, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.rows = rows
        self.cause = cause


class _TablePartition(StatefulSinkPartition[Any, None]):
    def __init__(
        self,
        conf: str,
        table: Table,
        flush_rows: int,
        flush_interval: float,
        buffer_rows: int,
        max_backoff: float,
        dead_letter_path: Path,
    ) -> None:
        self._conf = conf
        self._table = table
        self._flush_rows = flush_rows
        self._interval = flush_interval
        self._cap = max(buffer_rows, flush_rows)
        self._max_backoff = max_backoff
        self._dead_letter = dead_letter_path
        self._pending: deque = deque()  # records and TickBatches, in arrival order
        self._pending_rows = 0  # rows in _pending (a TickBatch counts its ticks)
        self._oldest = 0.0  # monotonic time the oldest pending row arrived, or _DUE_NOW
        self._cond = threading.Condition()
        self._flushing = 0  # rows taken by the writer thread and not yet confirmed
        self._closing = False
        self._stopping = False  # the process is ending: take no more rows
        self._error: Optional[BaseException] = None
        self._sender: Optional[Sender] = None
        self._created = False
        self._health_created = False
        self.rows_written = 0
        self.rows_rejected = 0
        self._thread = threading.Thread(
            target=self._run, name=f"questdb-{table.name}", daemon=True
        )
        self._thread.start()
        shutdown.register(self)

    # -- called by Bytewax on the worker thread ----------------------------------------------

    def write_batch(self, values: list[Any]) -> None:
        with self._cond:
            while self._error is None and (
                self._stopping or self._pending_rows + self._flushing >= self._cap
            ):
                self._cond.wait(0.5)  # back-pressure: the flow waits for QuestDB
            err = self._error
            if err is None:
                self._append(values)
        if err is not None:  # outside the lock: the stop must still reach this partition
            shutdown.fail_or_raise(str(err), err)

    def _append(self, values: list[Any]) -> None:
        was_empty = not self._pending
        if was_empty:
            self._oldest = time.monotonic()
        pending = self._pending
        for v in values:
            if type(v) is list:  # a batch of records routed as one item (to_questdb)
                pending.extend(v)
                self._pending_rows += sum(map(_rows, v))
            else:
                pending.append(v)
                self._pending_rows += _rows(v)
        if was_empty or self._pending_rows >= self._flush_rows:
            self._cond.notify_all()  # the writer (re)arms its timer or flushes now

    def snapshot(self) -> None:
        self._drain()
        return None

    def close(self) -> None:
        self._drain()
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join()
        shutdown.unregister(self)
        self._close_sender()

    # -- called by connectors.shutdown when the process ends ---------------------------------

    def stop_and_flush(self, deadline: float) -> int:
        """Take no more rows, write the held ones until ``deadline``; rows left unwritten."""
        with self._cond:
            self._stopping = True
            self._oldest = _DUE_NOW
            self._cond.notify_all()
            while (self._pending or self._flushing) and self._error is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, 0.5))
            return self._pending_rows + self._flushing

    # -- internals ---------------------------------------------------------------------------

    def _drain(self) -> None:
        """Wait until every row handed to this partition is in QuestDB (or dead-lettered)."""
        with self._cond:
            self._oldest = _DUE_NOW
            self._cond.notify_all()
            while (self._pending or self._flushing) and self._error is None:
                self._cond.wait(0.5)
            err = self._error
        if err is not None:
            shutdown.fail_or_raise(str(err), err)

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as e:  # noqa: BLE001 - a dead writer must never be silent
            self._fail(e, [])

    def _next_batch(self) -> Optional[tuple[list, int]]:
        """Wait until a flush is due; (items, rows) taken from the buffer, None when closed."""
        with self._cond:
            while True:
                due = self._pending and (
                    self._pending_rows >= self._flush_rows
                    or time.monotonic() - self._oldest >= self._interval
                )
                if due or (self._closing and not self._pending):
                    break
                timeout = None
                if self._pending:
                    timeout = max(0.0, self._oldest + self._interval - time.monotonic())
                self._cond.wait(timeout)
            if not self._pending:
                return None  # closing and drained
            batch, rows = _take(self._pending, 50_000)
            self._pending_rows -= rows
            self._flushing = rows
            if self._pending and self._oldest != _DUE_NOW:  # a drain takes them all
                self._oldest = time.monotonic()
            return batch, rows

    def _loop(self) -> None:
        backoff = 0.1
        while True:
            taken = self._next_batch()
            if taken is None:
                return
            batch, rows = taken
            try:
                written = self._flush(batch)
            except _Unwritten as u:
                log.warning(
                    "questdb: table %s: flush of %d rows failed (%s); retrying in %.1fs",
                    self._table.name,
                    sum(map(_rows, u.rows)),
                    _one_line(u.cause),
                    backoff,
                )
                self._close_sender()
                self._requeue(u.rows)
                time.sleep(backoff * (0.5 + random.random() / 2))
                backoff = min(backoff * 2, self._max_backoff)
                continue
            except Exception as e:  # noqa: BLE001 - bad credentials, TLS, a bug: stop the flow
                self._fail(e, batch)
                return
            backoff = 0.1
            with self._cond:
                self._flushing = 0
                self.rows_written += written
                self._cond.notify_all()

    def _requeue(self, items: list) -> None:
        """Put unwritten items back at the front of the buffer (in order)."""
        with self._cond:
            self._pending.extendleft(reversed(items))
            self._pending_rows += sum(map(_rows, items))
            self._flushing = 0
            self._cond.notify_all()

    def _fail(self, e: BaseException, batch: list) -> None:
        """A failure retrying cannot mend: stop the flow with one line, else raise on the worker."""
        message = f"questdb: table {self._table.name}: {_one_line(e)}"
        with self._cond:
            self._error = QuestDBError(message) if not isinstance(e, QuestDBError) else e
            self._pending.extendleft(reversed(batch))
            self._pending_rows += sum(map(_rows, batch))
            self._flushing = 0
            self._cond.notify_all()
        if not shutdown.fail(message):
            log.error("%s", message)

    def _close_sender(self) -> None:
        if self._sender is not None:
            try:
                self._sender.close()
            except Exception:  # noqa: BLE001 - a broken sender is replaced anyway
                pass
            self._sender = None

    # -- writing -----------------------------------------------------------------------------

    def _flush(self, batch: list) -> int:
        """Write ``batch``; rows QuestDB refuses are isolated. Returns rows written.

        Raises _Unwritten (with what is left) for a retryable failure, anything else for a
        failure that must stop the flow.
        """
        try:
            refused, written = self._send(batch)
        except Exception as e:  # noqa: BLE001 - classified below
            kind = _classify(e)
            if kind == _RETRY:
                raise _Unwritten(batch, e) from e
            if kind == _FATAL:
                raise
            return self._isolate(expand_ticks(batch), e)
        self._reject(refused, sum(map(_rows, batch)))
        return written

    def _isolate(self, rows: list, first: BaseException) -> int:
        """Split refused ``rows`` until every refused row stands alone; write the others.

        A refused request is written to QuestDB's WAL not at all, so each part is sent again.
        QuestDB names the first line it refused: the lines before it are sent as one part, that
        row alone (a row refused on its own is dead-lettered), the rest in halves; without a
        line number, halves. Parts are sent in order, so later rows still win on equal keys.
        """
        todo: deque[list] = deque(_halves(rows))
        refused: list[tuple[Any, str]] = []
        written = 0
        while todo:
            part = todo.popleft()
            try:
                bad, n = self._send(part)
                refused += bad
                written += n
                continue
            except Exception as e:  # noqa: BLE001 - classified below
                kind = _classify(e)
                if kind != _REJECT:
                    self._reject(refused, len(rows))
                    self.rows_written += written
                    left = [r for p in (part, *todo) for r in p]
                    if kind == _RETRY:
                        raise _Unwritten(left, e) from e
                    raise
                err = e
            if len(part) == 1:
                refused.append((part[0], _reason(err)))
                continue
            line = _server_error(err)[1]
            if line is not None and 1 <= line <= len(part):
                parts = [part[: line - 1], [part[line - 1]], *_halves(part[line:])]
            else:
                parts = _halves(part)
            todo.extendleft(reversed([p for p in parts if p]))
        self._reject(refused, len(rows), first)
        return written

    def _reject(
        self, refused: list[tuple[Any, str]], of: int, first: Optional[BaseException] = None
    ) -> None:
        """Dead-letter and count refused rows; one warning line says where they are."""
        if not refused:
            return
        name = self._table.name
        dead_letter_file.write(self._dead_letter, name, refused)
        self.rows_rejected += len(refused)
        log.warning(
            "questdb: table %s: QuestDB refused %d of %d rows (%s); not retried, written to %s "
            "(feed_health metric rejected_rows)",
            name,
            len(refused),
            of,
            refused[0][1],
            self._dead_letter,
        )
        self._count_rejected(len(refused))

    def _count_rejected(self, n: int) -> None:
        """One ``feed_health`` row ``(<table>, rejected_rows, n)``, written at once."""
        try:
            if not self._health_created:
                ensure_tables(self._conf, [FEED_HEALTH])
                self._health_created = True
            rec = Health(self._table.name, "rejected_rows", datetime.now(timezone.utc), float(n))
            sender = self._connected()
            buf = sender.new_buffer()
            symbols, columns = FEED_HEALTH.row(rec)
            buf.row(FEED_HEALTH.name, symbols=symbols, columns=columns, at=rec.ts)
            sender.flush(buf, clear=False)
        except Exception as e:  # noqa: BLE001 - the dead-letter file and the log hold the count
            log.warning("questdb: could not count %d rejected rows in feed_health: %s", n,
                        _one_line(e))

    def _send(self, batch: list) -> tuple[list[tuple[Any, str]], int]:
        """One request with ``batch``; ((row, reason) the client refused, rows sent)."""
        if not self._created:
            ensure_tables(self._conf, [self._table])
            self._created = True
        sender = self._connected()
        buf = sender.new_buffer()
        name = self._table.name
        row = self._table.row
        columnar = []
        refused: list[tuple[Any, str]] = []
        for rec in batch:
            if type(rec) is TickBatch:
                columnar.append(rec)
                continue
            try:
                symbols, columns = row(rec)
                buf.row(name, symbols=symbols, columns=columns, at=rec.ts)
            except (ClientError, TypeError, ValueError, OverflowError, AttributeError) as e:
                refused.append((rec, f"client: {_one_line(e)}"))
        if columnar:
            buf.dataframe(tick_frame(columnar), table_name=name, symbols=["symbol"], at="ts")
        sent = sum(map(_rows, batch)) - len(refused)
        if sent:
            sender.flush(buf, clear=False)
        return refused, sent

    def _connected(self) -> Sender:
        if self._sender is None:
            self._sender = Sender.from_conf(self._conf, auto_flush=False)
            self._sender.establish()
        return self._sender


def _halves(rows: list) -> list[list]:
    mid = len(rows) // 2
    return [rows[:mid], rows[mid:]] if mid else [rows]


def _rows(v: Any) -> int:
    return len(v) if type(v) is TickBatch else 1


def _take(pending: deque, limit: int) -> tuple[list, int]:
    """Pop items from the left until ``limit`` rows (at least one item); (items, rows)."""
    out = []
    rows = 0
    while pending and rows < limit:
        v = pending.popleft()
        out.append(v)
        rows += _rows(v)
    return out, rows


def tick_frame(batches: list[TickBatch]) -> pd.DataFrame:
    """TickBatches → one DataFrame in the ``ticks`` table's columns, for ``Buffer.dataframe``.

    One frame per flush (not per batch): the client's per-call cost is then spread over
    thousands of rows; the ILP it writes is byte for byte that of ``Buffer.row`` per Tick.
    pandas is imported here, not at start-up: only a columnar replay needs it (~0.25 s).
    """
    import pandas as pd

    names = sorted({b.symbol for b in batches})
    code = {s: i for i, s in enumerate(names)}
    cat = np.concatenate
    return pd.DataFrame(
        {
            "symbol": pd.Categorical.from_codes(
                cat([np.full(len(b), code[b.symbol], dtype=np.int32) for b in batches]),
                categories=names,
            ),
            "price": cat([b.price for b in batches]),
            "qty": cat([b.qty for b in batches]),
            "trade_id": cat([b.trade_id for b in batches]),
            "first_id": cat([b.first_id for b in batches]),
            "last_id": cat([b.last_id for b in batches]),
            "buyer_maker": cat([b.buyer_maker for b in batches]),
            "ts": cat([b.ts_us for b in batches]).astype("datetime64[us]"),
        },
        copy=False,
    )


def _one_line(e: object) -> str:
    return " ".join(str(e).split())[:300]


_RETRY, _REJECT, _FATAL = "retry", "reject", "fatal"
# Client error codes for a row the client will not encode (the row is refused, not retried)
# and for a setup that retrying cannot mend (the flow stops).
_CLIENT_DATA = {"InvalidUtf8", "InvalidName", "InvalidTimestamp", "ArrayError", "DecimalError",
                "BadDataFrame"}
# (ProtocolVersionError is not among them: establish() reports an unreachable server that way.)
_CLIENT_FATAL = {"InvalidApiCall", "ConfigError", "AuthError", "TlsError", "HttpNotSupported"}
# QuestDB's ILP/HTTP error codes (LineHttpProcessorState.Status): "invalid" is HTTP 400 (a line
# it cannot parse or a value it cannot store), "request too large" 413 (a line over the
# receive buffer), "not supported" 400/415 (gzip, precision: the client setup), "internal
# error" 500 (retried; the client has already retried it for its retry_timeout).
_REFUSED = {"invalid", "request too large"}
_JSON = re.compile(r"\{.*\}", re.S)


def _server_error(e: BaseException) -> tuple[Optional[str], Optional[int], str]:
    """(QuestDB's error code, first refused line (1-based), message) of a failed flush."""
    text = str(e)
    m = _JSON.search(text)
    if m:
        try:
            body = orjson.loads(m.group(0))
            line = body.get("line")
            return body.get("code"), line if isinstance(line, int) else None, str(
                body.get("message", text)
            )
        except (orjson.JSONDecodeError, AttributeError):
            pass
    code = re.search(r"code: ([^,\]]+)", text)  # the client's own rendering of the same body
    line = re.search(r"line: (\d+)", text)
    return (
        code.group(1).strip() if code else None,
        int(line.group(1)) if line else None,
        text,
    )


def _reason(e: BaseException) -> str:
    """What QuestDB said about a row, without the request-level preamble."""
    msg = _server_error(e)[2]
    msg = re.sub(r"^.*?error in line \d+: ", "", msg, flags=re.S)
    return _one_line(msg)


def _classify(e: BaseException) -> str:
    """Retry (QuestDB away, 5xx, timeouts), reject (QuestDB or the client refuses rows), fatal."""
    if isinstance(e, (SchemaMismatch, dead_letter_file.DeadLetterError)):
        return _FATAL
    if isinstance(e, ClientError):
        name = getattr(e.code, "name", str(e.code))
        if name in _CLIENT_DATA:
            return _REJECT
        if name in _CLIENT_FATAL:
            return _FATAL
        code = _server_error(e)[0]
        if code in _REFUSED:
            return _REJECT
        return _FATAL if code == "not supported" else _RETRY
    if isinstance(e, (QuestDBError, OSError)):
        return _RETRY
    return _FATAL


class QuestDBSink(FixedPartitionedSink[Any, None]):
    """Write records (Tick or TickBatch, Bar, Analytics, Signal, AlertEvent, Health) to tables.

    Items are ``(table_name, record)``; :func:`to_questdb` does the keying. Tables are created at
    start (``CREATE TABLE IF NOT EXISTS`` from :mod:`connectors.schema`).

    ``flush_interval`` batches the high-volume tables (``ticks``, ``feed_health``); every other
    table (one row per bar: bars, pair_analytics, signals, alerts) is flushed as soon as the
    writer is free (``derived_flush_interval``, default 0), so a closed bar is visible in
    QuestDB within milliseconds, not a timer period later.

    Rows QuestDB refuses go to ``dead_letter`` (default ``var/dead_letter.jsonl``).
    """

    HIGH_VOLUME = frozenset({"ticks", "feed_health"})

    def __init__(
        self,
        conf: str,
        *,
        flush_rows: int = 50_000,
        flush_interval: float = 0.25,
        derived_flush_interval: float = 0.0,
        buffer_rows: int = 1_000_000,
        max_backoff: float = 5.0,
        dead_letter: Optional[str | Path] = None,
    ) -> None:
        self.conf = conf
        self.dead_letter = Path(dead_letter) if dead_letter else dead_letter_file.DEFAULT_PATH
        self.flush_rows = flush_rows
        self.flush_interval = flush_interval
        self.derived_flush_interval = derived_flush_interval
        self.buffer_rows = buffer_rows
        self.max_backoff = max_backoff

    def list_parts(self) -> list[str]:
        return [t.name for t in TABLES]

    def part_fn(self, item_key: str) -> int:
        return _PART_INDEX[item_key]

    def build_part(
        self, step_id: str, for_part: str, resume_state: Optional[None]
    ) -> _TablePartition:
        return _TablePartition(
            self.conf,
            BY_NAME[for_part],
            self.flush_rows,
            self.flush_interval if for_part in self.HIGH_VOLUME else self.derived_flush_interval,
            self.buffer_rows,
            self.max_backoff,
            self.dead_letter,
        )


# Bytewax indexes part_fn into the *sorted* global list of partitions.
_PART_INDEX = {name: i for i, name in enumerate(sorted(t.name for t in TABLES))}


def _by_table(batch: list[Any]) -> list[tuple[str, list[Any]]]:
    """One ``(table, [records])`` item per table in a batch, records in arrival order.

    Routing whole lists instead of single records makes the per-record cost of the sink step
    (Bytewax routing, ``part_fn``) a per-batch cost; the partition writes the same rows.
    """
    groups: dict[type, list[Any]] = {}
    for rec in batch:
        cls = type(rec)
        g = groups.get(cls)
        if g is None:
            table_for(rec)  # raises TypeError for a record no table stores
            g = groups[cls] = []
        g.append(rec)
    return [(BY_RECORD[cls].name, recs) for cls, recs in groups.items()]


@operator
def to_questdb(step_id: str, up: Stream[Any], sink: QuestDBSink) -> None:
    """Write every record of ``up`` to the QuestDB table its type maps to."""
    op.output("write", op.flat_map_batch("table", up, _by_table), sink)
