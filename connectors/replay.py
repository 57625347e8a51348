"""Replay recorded Binance data through the flow, as fast as possible or paced.

Reads data.binance.vision dumps (``trades``, ``aggTrades`` and ``klines`` CSV, with or without
header) and recorded WebSocket frame files (lines ``<recv_ts_ns> <json>``, optionally gzipped).
Trades become :class:`~pairstream.records.Tick`; kline rows become :class:`~pairstream.records.Bar`
directly (offline OHLC mode). Funding-rate files (:mod:`connectors.funding_files`) are not
streamed: they form the source's :attr:`ReplaySource.funding` book, read once at build time,
so every bar's funding is known before the bar arrives whatever the partitions' interleaving.
Files naming the same symbols form one partition and are read in
name order, so each symbol's ticks stay in time order; the snapshot is the position reached, so
a recovered flow resumes where it stopped.
"""

from __future__ import annotations

import csv
import glob
import gzip
import io
import logging
import os
import queue
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from itertools import islice
from typing import Any, Optional

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from connectors.frames import MalformedFrame, csv_trade_to_tick, ms_to_dt, parse_frame
from connectors.funding_files import funding_book, is_funding_file
from connectors.trade_block import TradeColumns, trade_columns
from pairstream.funding import FundingBook
from pairstream.records import Bar, Progress, Tick, TickBatch

log = logging.getLogger("pairstream.replay")
UTC = timezone.utc

TRADES_COLS = ["id", "price", "qty", "quote_qty", "time", "is_buyer_maker"]
AGG_COLS = [
    "agg_trade_id",
    "price",
    "quantity",
    "first_trade_id",
    "last_trade_id",
    "transact_time",
    "is_buyer_maker",
]
KLINE_COLS = [
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "count",
    "taker_buy_volume",
    "taker_buy_quote_volume",
    "ignore",
]


# Records handed to the flow by every replay partition of this process (progress reporting).
PROGRESS = {"records": 0}


class ReplayError(ValueError):
    """A replay input that cannot be used (missing file, unknown format); one-line message."""


def tf_label(seconds: int) -> str:
    """60 → ``"1m"``, 300 → ``"5m"``, 1 → ``"1s"``, 3600 → ``"1h"``."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def expand_paths(patterns: Sequence[str]) -> list[str]:
    """Files named by ``patterns`` (globs allowed), sorted; an unmatched pattern is an error."""
    out: list[str] = []
    for pat in patterns:
        hits = sorted(glob.glob(pat)) if any(c in pat for c in "*?[") else [pat]
        hits = [h for h in hits if os.path.isfile(h)]
        if not hits:
            raise ReplayError(f"source.paths: no file matches {pat!r}")
        out.extend(h for h in hits if h not in out)
    return out


def symbols_in_name(path: str, known: Sequence[str]) -> tuple[str, ...]:
    """The configured symbols a file name mentions (``BTCUSDT-trades-2024-07-01.csv``)."""
    name = os.path.basename(path).upper()
    found = [s for s in known if re.search(rf"(?<![A-Z0-9]){s}(?![A-Z0-9])", name)]
    return tuple(sorted(found))


def _open_text(path: str) -> io.TextIOBase:
    if path.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def _is_frame_file(path: str) -> bool:
    with _open_text(path) as fh:
        first = fh.readline()
    return bool(re.match(r"^\d+ \{", first))


def _kline_bar(symbol: str, row: dict[str, str]) -> Bar:
    try:
        open_ms = int(row["open_time"])
        close_ms = int(row["close_time"])
        if open_ms > 10**14:  # newer dumps use microseconds
            open_ms //= 1000
            close_ms //= 1000
        secs = (close_ms + 1 - open_ms) // 1000
        volume = float(row["volume"])
        quote = float(row["quote_volume"])
        close = float(row["close"])
        count = int(row["count"])
        return Bar(
            symbol=symbol,
            tf=tf_label(secs),
            ts=ms_to_dt(open_ms),
            open=float(row["open"]),
            high=float(row["high"]),
            low=float(row["low"]),
            close=close,
            volume=volume,
            quote_volume=quote,
            trades=count,
            taker_buy_volume=float(row["taker_buy_volume"]),
            vwap=quote / volume if volume else close,
            filled=count == 0,
        )
    except (KeyError, ValueError, TypeError) as e:
        raise MalformedFrame(f"bad kline row ({e})") from None


@dataclass(frozen=True)
class FileSpec:
    """One input file: its path, what it holds, and (for CSV dumps) its symbol."""

    path: str
    kind: str  # "frames" | "trades" | "klines"
    symbol: Optional[str]  # CSV files: the one symbol they hold


def _frame_line(line: bytes | str) -> Optional[Tick] | MalformedFrame:
    """One recorded ``<recv_ns> <frame>`` line → Tick, None (not a trade), or what is wrong."""
    raw = line.partition(b" " if isinstance(line, bytes) else " ")[2]
    try:
        return parse_frame(raw)
    except MalformedFrame as e:
        return e


def read_file(spec: FileSpec, skip: int) -> Iterator[tuple[int, Any]]:
    """(line number, Tick | Bar | None | MalformedFrame) for every data line after ``skip``."""
    with _open_text(spec.path) as fh:
        if spec.kind == "frames":
            for n, line in enumerate(fh, 1):
                if n > skip:
                    yield n, _frame_line(line)
            return
        reader = csv.reader(fh)
        header: Optional[list[str]] = None
        for n, fields in enumerate(reader, 1):
            if n == 1 and fields and not fields[0].strip().lstrip("-").isdigit():
                header = [f.strip() for f in fields]
                continue
            if n <= skip or not fields:
                continue
            if header is None:
                header = {6: TRADES_COLS, 7: AGG_COLS, 12: KLINE_COLS}.get(len(fields))
                if header is None:
                    yield n, MalformedFrame(f"{len(fields)} columns: not a Binance dump")
                    header = None
                    continue
            row = dict(zip(header, fields))
            try:
                if spec.kind == "klines":
                    yield n, _kline_bar(spec.symbol or "", row)
                else:
                    yield n, csv_trade_to_tick(spec.symbol or "", row)
            except MalformedFrame as e:
                yield n, e


def read_klines(path: str, symbol: str) -> list[Bar]:
    """Bars of one Binance kline CSV (plain or .gz) of ``symbol``, through :func:`read_file`.

    Shared by ``pairstream backtest`` and ``pairstream scan``; a file that is missing, holds
    something else or mixes timeframes raises :class:`ReplayError` naming the file and line.
    """
    if not os.path.isfile(path):
        raise ReplayError(f"{path} does not exist")
    out: list[Bar] = []
    for n, rec in read_file(FileSpec(path, "klines", symbol), 0):
        if isinstance(rec, MalformedFrame):
            raise ReplayError(f"{path} line {n}: {rec} (not a Binance kline CSV?)")
        out.append(rec)
    if not out:
        raise ReplayError(f"{path} holds no kline rows")
    tfs = sorted({b.tf for b in out})
    if len(tfs) != 1:
        raise ReplayError(f"{path} mixes timeframes {', '.join(tfs)}")
    return out


def _frame_blocks(path: str, skip: int, size: int) -> Iterator[bytes]:
    """Runs of whole lines (about ``size`` bytes each) of a frame file, after ``skip`` lines.

    Every block ends with a newline, but the file's last line may lack one. Each block is
    one copy of what was read (the previous read's tail joined to this read's whole lines).
    """
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as fh:
        for _ in islice(fh, skip):
            pass
        rest = b""
        while chunk := fh.read(size):
            cut = chunk.rfind(b"\n") + 1
            if not cut:
                rest += chunk  # a line longer than the block: read on
                continue
            if rest or cut < len(chunk):
                yield b"".join((rest, memoryview(chunk)[:cut]))  # the one copy
            else:
                yield chunk
            rest = chunk[cut:]
        if rest:
            yield rest


def _read_ahead(blocks: Iterator[bytes], depth: int = 2) -> Iterator[bytes]:
    """``blocks``, produced by a helper thread up to ``depth`` blocks ahead.

    Inflating a gzip frame file (zlib, and its CRC) is ~10% of a full-speed replay's worker
    time, and zlib releases the GIL while it works: done ahead in a thread, it overlaps with
    the parsing and the bars instead of adding to them. Same blocks, same order; an error in
    the reader is raised here, at the block where it happened.
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for block in blocks:
                if not put(block):
                    return
            put(done)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            put(e)
        finally:
            getattr(blocks, "close", lambda: None)()

    threading.Thread(target=produce, name="replay-read-ahead", daemon=True).start()
    try:
        while (item := q.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


def _batches(cols: TradeColumns, wanted: frozenset[str], shift_us: int) -> list[TickBatch]:
    """Columns of raw trades grouped by symbol (ids: a = f = l) → one TickBatch per wanted
    symbol, in line order: each symbol's rows are one run, so its columns are slices."""
    assert cols.starts is not None  # trade_columns(..., by_symbol=True)
    ts_us = cols.ms * 1000 + shift_us
    out = []
    for code, name in enumerate(cols.symbols):
        if name not in wanted:
            continue
        sel = slice(int(cols.starts[code]), int(cols.starts[code + 1]))
        ids = cols.trade_id[sel]
        out.append(
            TickBatch(name, ts_us[sel], cols.price[sel], cols.qty[sel], ids, ids, ids,
                      cols.buyer_maker[sel])
        )  # fmt: skip
    return out


def _classify(path: str, symbols: Sequence[str]) -> FileSpec:
    if _is_frame_file(path):
        return FileSpec(path, "frames", None)
    found = symbols_in_name(path, symbols)
    if len(found) != 1:
        raise ReplayError(
            f"{path}: cannot tell which configured symbol ({', '.join(symbols)}) the file holds"
        )
    with _open_text(path) as fh:
        first = fh.readline()
    kind = "klines" if ("open_time" in first or first.count(",") == 11) else "trades"
    return FileSpec(path, kind, found[0])


class _ReplayPartition(StatefulSourcePartition[Any, tuple[int, int]]):
    def __init__(
        self,
        files: list[FileSpec],
        symbols: tuple[str, ...],
        wanted: Sequence[str],
        resume: Optional[tuple[int, int]],
        speed: float,
        shift: timedelta,
        batch_size: int,
        clock: Callable[[], datetime],
        start: Optional[datetime],
        block_bytes: int,
    ) -> None:
        self._files = files
        self._symbols = symbols
        self._wanted = frozenset(wanted)
        self._file_idx, self._line = resume or (0, 0)
        self._speed = speed
        self._shift = shift
        self._batch = batch_size
        self._clock = clock
        self._iter: Optional[Iterator[tuple[int, Any]]] = None
        self._pending: Optional[tuple[int, Any]] = None
        # Pacing anchor: the first event time of the whole replay, so partitions stay in step;
        # a resumed partition re-anchors on its next record instead of waiting out the past.
        self._t0_event: Optional[datetime] = None if resume else start
        self._t0_wall: Optional[datetime] = None
        self._awake: Optional[datetime] = None
        self._last_ts: Optional[datetime] = None  # time of the last record emitted
        self.malformed = 0
        # Unpaced frame files go in bulk: a block of lines → TickBatches (same ticks, same order)
        self._bulk = not speed and bool(files) and all(f.kind == "frames" for f in files)
        self._blocks: Optional[Iterator[bytes]] = None
        self._block_bytes = block_bytes
        self._shift_us = shift // timedelta(microseconds=1)

    def _next_record(self) -> Optional[tuple[int, Any]]:
        while self._file_idx < len(self._files):
            if self._iter is None:
                self._iter = read_file(self._files[self._file_idx], self._line)
            nxt = next(self._iter, None)
            if nxt is not None:
                return nxt
            self._file_idx += 1
            self._line = 0
            self._iter = None
        return None

    def _shifted(self, rec: Any) -> Any:
        if not self._shift:
            return rec
        return _replace_ts(rec, rec.ts + self._shift)

    def _skip_malformed(self, n: int, e: MalformedFrame) -> None:
        self.malformed += 1
        if self.malformed <= 10 or self.malformed % 1000 == 0:
            log.warning(
                "replay: %s line %d skipped: %s (%d so far)",
                self._files[self._file_idx].path,
                n,
                e,
                self.malformed,
            )

    def _next_bulk(self) -> list[Any]:
        """The next block of a frame file as TickBatches (per line only if the block is odd)."""
        while self._file_idx < len(self._files):
            if self._blocks is None:
                self._blocks = _read_ahead(
                    _frame_blocks(self._files[self._file_idx].path, self._line, self._block_bytes)
                )
            block = next(self._blocks, None)
            if block is None:
                self._file_idx += 1
                self._line = 0
                self._blocks = None
                continue
            first = self._line + 1
            cols = trade_columns(block, by_symbol=True)
            if cols is not None:
                self._line += len(cols.ms)
                out: list[Any] = _batches(cols, self._wanted, self._shift_us)
            else:
                lines = block.split(b"\n")
                if not lines[-1]:
                    lines.pop()
                self._line += len(lines)
                ticks: dict[str, list[Tick]] = {}
                for n, line in enumerate(lines, first):
                    t = _frame_line(line)
                    if isinstance(t, MalformedFrame):
                        self._skip_malformed(n, t)
                    elif t is not None and t.symbol in self._wanted:
                        ticks.setdefault(t.symbol, []).append(self._shifted(t))
                out = [TickBatch.from_ticks(v) for _, v in sorted(ticks.items())]
            if out:
                PROGRESS["records"] += sum(map(len, out))
                return out
        raise StopIteration()

    def next_batch(self) -> list[Any]:
        if self._bulk:
            return self._next_bulk()
        out: list[Any] = []
        now = self._clock() if self._speed else None
        if now is not None and self._t0_wall is None:
            self._t0_wall = now
        while len(out) < self._batch:
            nxt = self._pending or self._next_record()
            self._pending = None
            if nxt is None:
                if not out:
                    raise StopIteration()
                break
            n, rec = nxt
            if isinstance(rec, MalformedFrame):
                self._line = n
                self._skip_malformed(n, rec)
                continue
            if rec is None or rec.symbol not in self._wanted:
                self._line = n  # not a trade, or a symbol the config does not follow
                continue
            rec = self._shifted(rec)
            if now is not None:
                if self._t0_event is None:
                    self._t0_event = rec.ts
                due = self._t0_wall + (rec.ts - self._t0_event) / self._speed
                if due > now:
                    self._pending = (n, rec)  # not yet: keep it, sleep until due
                    self._awake = due
                    break
            self._line = n
            self._last_ts = rec.ts
            out.append(rec)
        PROGRESS["records"] += len(out)
        if now is not None and self._t0_event is not None:
            # Paced replay: the tape is complete up to the replay clock for our symbols. With
            # nothing pending (end of input, or a full batch) claim no more than the last
            # record: else the bars closed at the end would depend on how late the last batch
            # was polled, and two runs (or a run resumed after a crash) would differ.
            replay_now = self._t0_event + (now - self._t0_wall) * self._speed
            if self._pending is None and self._last_ts is not None:
                replay_now = min(replay_now, self._last_ts)
            out.extend(Progress(s, replay_now) for s in self._symbols)
        if self._pending is None:
            self._awake = None
        return out

    def next_awake(self) -> Optional[datetime]:
        return self._awake

    def snapshot(self) -> tuple[int, int]:
        if self._pending is not None:
            return (self._file_idx, self._pending[0] - 1)
        return (self._file_idx, self._line)

    def close(self) -> None:
        if self._blocks is not None:
            self._blocks.close()  # type: ignore[attr-defined]
        if self.malformed:
            log.warning("replay: %d malformed lines skipped in all", self.malformed)


def _replace_ts(rec: Any, ts: datetime) -> Any:
    from dataclasses import replace

    return replace(rec, ts=ts)


def count_records(paths: Sequence[str]) -> int:
    """Data lines in the files (a header line is not counted): the total for progress bars."""
    total = 0
    for p in expand_paths(paths):
        if is_funding_file(p):
            continue  # read up front, not streamed
        with _open_text(p) as fh:
            first = fh.readline()
            n = sum(1 for _ in fh) + (1 if first else 0)
        if first and not first.split(",")[0].strip().isdigit() and not first[:1].isdigit():
            n -= 1
        total += n
    return total


def _first_time(spec: FileSpec) -> Optional[datetime]:
    for _, rec in read_file(spec, 0):
        if isinstance(rec, (Tick, Bar)):
            return rec.ts
    return None


class ReplaySource(FixedPartitionedSource[Any, tuple[int, int]]):
    """Partitioned replay of dump and frame files.

    ``speed``: 0 = as fast as possible, 1 = real time, 10 = ten times real time (paced by event
    time). ``batch_size``: records per batch when paced or reading CSV; an unpaced frame file is
    read in blocks of about ``block_bytes`` (whole lines), each one batch of TickBatches.
    ``rebase_to_now``: shift every timestamp by whole minutes so the first tick lands at the
    current minute (bars then align with the original klines and look live in Grafana).
    Emits TickBatch (unpaced frame files), Tick (trade CSVs; paced frame files), Bar (kline
    files) and, when paced, Progress records.
    """

    def __init__(
        self,
        paths: Sequence[str],
        symbols: Sequence[str],
        *,
        speed: float = 0.0,
        rebase_to_now: bool = False,
        batch_size: int = 2000,
        block_bytes: int = 2 << 20,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        all_paths = expand_paths(paths)
        funding_paths = [p for p in all_paths if is_funding_file(p)]
        files = [_classify(p, symbols) for p in all_paths if p not in funding_paths]
        self.funding: FundingBook = funding_book(funding_paths, symbols)
        groups: dict[str, list[FileSpec]] = {}
        for f in files:
            syms = (f.symbol,) if f.symbol else symbols_in_name(f.path, symbols)
            key = "+".join(syms) or os.path.basename(f.path)
            groups.setdefault(f"{f.kind}:{key}", []).append(f)
        self._groups = groups
        self._symbols = tuple(symbols)
        self._speed = speed
        self._batch = batch_size
        self._block_bytes = block_bytes
        self._clock = clock
        self._start: Optional[datetime] = None
        self._shift = timedelta(0)
        if rebase_to_now or speed:
            firsts = [t for f in files if (t := _first_time(f)) is not None]
            self._start = min(firsts) if firsts else None
        if rebase_to_now and self._start is not None:
            now = clock()
            minutes = (now - self._start) // timedelta(minutes=1)
            self._shift = timedelta(minutes=minutes)
            self._start += self._shift

    @property
    def bar_timeframes(self) -> tuple[str, ...]:
        """Timeframes of the kline files in this replay (they emit bars directly)."""
        tfs = set()
        for files in self._groups.values():
            for f in files:
                if f.kind == "klines":
                    for _, rec in read_file(f, 0):
                        if isinstance(rec, Bar):
                            tfs.add(rec.tf)
                            break
        return tuple(sorted(tfs))

    def list_parts(self) -> list[str]:
        return sorted(self._groups)

    def build_part(
        self, step_id: str, for_part: str, resume_state: Optional[tuple[int, int]]
    ) -> _ReplayPartition:
        files = self._groups[for_part]
        syms = sorted(
            {s for f in files for s in ((f.symbol,) if f.symbol else ())}
            | {s for f in files if not f.symbol for s in symbols_in_name(f.path, self._symbols)}
        )
        return _ReplayPartition(
            files,
            tuple(syms),
            self._symbols,
            resume_state,
            self._speed,
            self._shift,
            self._batch,
            self._clock,
            self._start,
            self._block_bytes,
        )
