"""Bytewax sink writing typed records into QuestDB with the official client over HTTP.

One partition per table (``ticks``, ``bars`` ...), so multi-worker runs spread tables across
workers and each table has a single writer. Records are buffered and flushed by a background
thread on size and on a timer, even when the stream is quiet. While QuestDB is unreachable rows
stay in a bounded buffer and the flush is retried with capped backoff; when the buffer is full
``write_batch`` waits (back-pressure), so nothing is ever dropped. ``snapshot`` (called by
Bytewax at the end of each epoch, before the epoch's recovery snapshot is committed) and
``close`` flush synchronously: an epoch never counts as written before its rows are in QuestDB,
and DEDUP keys make the rows re-sent after a resume harmless.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Optional

import bytewax.operators as op
import numpy as np
from bytewax.dataflow import Stream, operator
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition
from questdb import QuestDBError as ClientError
from questdb import Sender

from connectors.questdb_http import QuestDBError, QuestDBHttp
from connectors.schema import BY_NAME, BY_RECORD, TABLES, Table, table_for
from pairstream.records import TickBatch

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("pairstream.questdb")


def ensure_tables(conf: str, tables: Iterable[Table] = TABLES) -> None:
    """Create the tables if missing (idempotent). Raises QuestDBError with a one-line message."""
    http = QuestDBHttp.from_conf(conf)
    for t in tables:
        http.exec(t.ddl())


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


class _TablePartition(StatefulSinkPartition[Any, None]):
    def __init__(
        self,
        conf: str,
        table: Table,
        flush_rows: int,
        flush_interval: float,
        buffer_rows: int,
        max_backoff: float,
    ) -> None:
        self._conf = conf
        self._table = table
        self._flush_rows = flush_rows
        self._interval = flush_interval
        self._cap = max(buffer_rows, flush_rows)
        self._max_backoff = max_backoff
        self._pending: deque = deque()  # records and TickBatches, in arrival order
        self._pending_rows = 0  # rows in _pending (a TickBatch counts its ticks)
        self._oldest = 0.0  # monotonic time the oldest pending row arrived
        self._cond = threading.Condition()
        self._flushing = 0  # rows taken by the writer thread and not yet confirmed
        self._closing = False
        self._error: Optional[BaseException] = None
        self._sender: Optional[Sender] = None
        self._created = False
        self.rows_written = 0
        self._thread = threading.Thread(
            target=self._run, name=f"questdb-{table.name}", daemon=True
        )
        self._thread.start()

    # -- called by Bytewax on the worker thread ----------------------------------------------

    def write_batch(self, values: list[Any]) -> None:
        with self._cond:
            self._raise_if_failed()
            while self._pending_rows + self._flushing >= self._cap:
                self._cond.wait(0.5)  # back-pressure: the flow waits for QuestDB
                self._raise_if_failed()
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
        if self._sender is not None:
            self._sender.close()
            self._sender = None

    # -- internals ---------------------------------------------------------------------------

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def _drain(self) -> None:
        """Wait until every row handed to this partition is in QuestDB."""
        with self._cond:
            self._oldest = 0.0  # due now
            self._cond.notify_all()
            while self._pending or self._flushing:
                self._raise_if_failed()
                self._cond.wait(0.5)

    def _run(self) -> None:
        backoff = 0.1
        while True:
            with self._cond:
                while True:
                    due = self._pending and (
                        self._pending_rows >= self._flush_rows
                        or time.monotonic() - self._oldest >= self._interval
                    )
                    if due or (self._closing and not self._pending):
                        break
                    timeout = self._interval if self._pending else None
                    if self._pending:
                        timeout = max(0.0, self._oldest + self._interval - time.monotonic())
                    self._cond.wait(timeout)
                if not self._pending:
                    return  # closing and drained
                batch, rows = _take(self._pending, 50_000)
                self._pending_rows -= rows
                self._flushing = rows
                if self._pending:
                    self._oldest = time.monotonic()
            try:
                self._write(batch)
                backoff = 0.1
            except Exception as e:  # noqa: BLE001 - every failure is retried, never dropped
                if not _retryable(e):
                    with self._cond:
                        self._error = e
                        self._pending.extendleft(reversed(batch))
                        self._pending_rows += rows
                        self._flushing = 0
                        self._cond.notify_all()
                    log.error("questdb: table %s: %s", self._table.name, _one_line(e))
                    return
                log.warning(
                    "questdb: table %s: flush of %d rows failed (%s); retrying in %.1fs",
                    self._table.name,
                    rows,
                    _one_line(e),
                    backoff,
                )
                self._close_sender()
                with self._cond:
                    self._pending.extendleft(reversed(batch))
                    self._pending_rows += rows
                    self._flushing = 0
                    self._cond.notify_all()
                time.sleep(backoff * (0.5 + random.random() / 2))
                backoff = min(backoff * 2, self._max_backoff)
                continue
            with self._cond:
                self._flushing = 0
                self.rows_written += rows
                self._cond.notify_all()

    def _close_sender(self) -> None:
        if self._sender is not None:
            try:
                self._sender.close()
            except Exception:  # noqa: BLE001 - a broken sender is replaced anyway
                pass
            self._sender = None

    def _write(self, batch: list) -> None:
        if not self._created:
            ensure_tables(self._conf, [self._table])
            self._created = True
        if self._sender is None:
            self._sender = Sender.from_conf(self._conf, auto_flush=False)
            self._sender.establish()
        buf = self._sender.new_buffer()
        name = self._table.name
        row = self._table.row
        columnar = []
        for rec in batch:
            if type(rec) is TickBatch:
                columnar.append(rec)
                continue
            symbols, columns = row(rec)
            buf.row(name, symbols=symbols, columns=columns, at=rec.ts)
        if columnar:
            buf.dataframe(tick_frame(columnar), table_name=name, symbols=["symbol"], at="ts")
        self._sender.flush(buf, clear=False)


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


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:300]


_FATAL = {
    "InvalidApiCall",
    "InvalidUtf8",
    "InvalidName",
    "InvalidTimestamp",
    "ConfigError",
    "AuthError",
    "TlsError",
}


def _retryable(e: BaseException) -> bool:
    """Connection problems and server hiccups are retried; bad data or config stops the flow."""
    if isinstance(e, ClientError):
        return getattr(e.code, "name", str(e.code)) not in _FATAL
    return isinstance(e, (QuestDBError, OSError))


class QuestDBSink(FixedPartitionedSink[Any, None]):
    """Write records (Tick or TickBatch, Bar, Analytics, Signal, AlertEvent, Health) to tables.

    Items are ``(table_name, record)``; :func:`to_questdb` does the keying. Tables are created at
    start (``CREATE TABLE IF NOT EXISTS`` from :mod:`connectors.schema`).

    ``flush_interval`` batches the high-volume tables (``ticks``, ``feed_health``); every other
    table (one row per bar: bars, pair_analytics, signals, alerts) is flushed as soon as the
    writer is free (``derived_flush_interval``, default 0), so a closed bar is visible in
    QuestDB within milliseconds, not a timer period later.
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
    ) -> None:
        self.conf = conf
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
