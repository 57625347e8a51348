"""``pairstream scan``: every ordered pair of a universe, ranked, to a table, a CSV and QuestDB.

Closes come from Binance kline CSV files (``--klines``, one symbol per file, named by the file:
``ALGOUSDT-1m-2023-02.csv``, ``futures-um-klines-1m-ALGOUSDT-...csv``) or from the ``bars`` table
for ``[scan] symbols`` (else ``symbols``). The numerics are :mod:`pairstream.scan`; this module
is the I/O. A user-caused problem (a bad file, an unknown timeframe) ends in one line.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import astuple, fields
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Optional

import numpy as np

from connectors.export import parse_time
from connectors.questdb_http import QuestDBError, QuestDBHttp
from connectors.replay import ReplayError, read_klines
from flows.backtest_cli import load_bars
from flows.startup import load_config
from pairstream.backtest import BacktestError
from pairstream.config import MIN_SCAN_BARS, ConfigError, ScanError, tf_seconds
from pairstream.records import EPOCH, Bar, PairScan

UTC = timezone.utc
_QUOTES = "USDT|USDC|BUSD|FDUSD|USD|BTC|ETH|BNB"
_SYMBOL = re.compile(rf"(?<![A-Z0-9])([A-Z0-9]{{2,20}}(?:{_QUOTES}))(?![A-Z0-9])")
_TF = re.compile(r"^\d{1,4}[smhd]$")
_MS = timedelta(milliseconds=1)


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--klines", nargs="+", metavar="CSV", help="kline files (one symbol each)")
    p.add_argument("--tf", help="timeframe (default: the files' or 1m); coarser ones roll up")
    p.add_argument("--from", dest="start", help="first bar (inclusive), ISO time, UTC by default")
    p.add_argument("--to", dest="end", help="end (exclusive), ISO time")
    p.add_argument("--top", type=int, default=20, help="rows of the printed table (default 20)")
    p.add_argument("-o", "--out", help="CSV file (default: a descriptive name in --dir)")
    p.add_argument("--dir", default=".", help="directory for the default CSV name")
    p.add_argument("--store", action="store_true", help="also write the pair_scan table")
    p.add_argument(
        "-w", "--workers", type=int, default=os.cpu_count() or 1,
        help="processes the pairs are spread over (default: CPU count)",
    )  # fmt: skip


def symbol_of(path: str) -> str:
    """The one symbol a kline file's name names."""
    found = sorted(set(_SYMBOL.findall(os.path.basename(path).upper())))
    if len(found) != 1:
        what = "no symbol" if not found else f"several symbols ({', '.join(found)})"
        raise ScanError(f"--klines: {path}: {what} in the file name (e.g. ALGOUSDT-1m-2023-02.csv)")
    return found[0]


def closes(bars: Sequence[Bar], tf_ms: int) -> tuple[np.ndarray, np.ndarray]:
    """(bar starts in ms, closes) at ``tf``: a coarser bar's close is its last finer close."""
    ms = np.array([(b.ts - EPOCH) // _MS for b in bars], dtype=np.int64)
    c = np.array([b.close for b in bars], dtype=float)
    order = np.argsort(ms, kind="stable")
    ms, c = ms[order], c[order]
    start = ms - ms % tf_ms
    last = np.r_[start[1:] != start[:-1], True]  # the last finer bar of each coarser one
    return start[last], c[last]




def _stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H-%M")


def default_name(n_symbols: int, tf: str, start: datetime, end: datetime) -> str:
    """``scan_5-symbols_1m_2023-02-01T00-00_2023-02-15T00-00.csv``."""
    return f"scan_{n_symbols}-symbols_{tf}_{_stamp(start)}_{_stamp(end)}.csv"


def _cell(v: object) -> str:
    if v is None:
        return ""
    if isinstance(v, datetime):
        return v.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return repr(v) if isinstance(v, float) else str(v)


def write_csv(path: Path, rows: Sequence[PairScan]) -> None:
    """Every ``pair_scan`` column, ranked, full precision, written atomically."""
    tmp = Path(str(path) + ".part")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["rank", *(f.name for f in fields(PairScan))])
        for i, r in enumerate(rows, 1):
            w.writerow([i, *(_cell(v) for v in astuple(r))])
    tmp.replace(path)


def _num(v: Optional[float], fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def table(rows: Sequence[PairScan], top: int) -> str:
    """The first ``top`` ranked rows as an aligned text table."""
    head = ["#", "y", "x", "coint_p", "half_life", "trace", "crit95", "hurst", "corr", "beta", "n"]
    body = [
        [
            str(i), r.y, r.x, _num(r.coint_p, ".4f"), _num(r.half_life, ".1f"),
            _num(r.johansen_trace, ".2f"), f"{r.johansen_crit95:.2f}", _num(r.hurst, ".3f"),
            _num(r.corr, ".3f"), _num(r.beta, ".5g"), str(r.n),
        ]
        for i, r in enumerate(rows[:top], 1)
    ]  # fmt: skip
    widths = [max(len(c) for c in col) for col in zip(head, *body)]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(line, widths)) for line in (head, *body))


def store(conf: str, rows: Sequence[PairScan]) -> None:
    """Write the rows through the flow's own QuestDB sink partition (official client, HTTP)."""
    from connectors.questdb_sink import write_table
    from connectors.schema import PAIR_SCAN

    try:
        write_table(conf, PAIR_SCAN, rows)
    except QuestDBError as e:
        raise ScanError(str(e)) from None


class Progress:
    """``[#####....]  45% 9/20 pairs`` on stderr (one line per 10% when not a terminal)."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last = -10

    def __call__(self, done: int, total: int) -> None:
        pct = 100 * done // max(total, 1)
        bar = "#" * (pct // 4) + "." * (25 - pct // 4)
        line = f"[{bar}] {pct:3d}% {done}/{total} pairs"
        if self.tty:
            print("\r" + line, end="\n" if done == total else "", file=sys.stderr, flush=True)
        elif pct >= self.last + 10 or done == total:
            print(line, file=sys.stderr, flush=True)
            self.last = pct


def _tf(text: str) -> int:
    try:
        if not _TF.match(text):
            raise ConfigError("")
        return tf_seconds(text) * 1000
    except ConfigError:
        raise ScanError(f"--tf: expected a timeframe like 1m or 5m, got {text!r}") from None


def cmd_scan(args: argparse.Namespace) -> int:
    from pairstream.scan import scan_universe

    cfg = load_config()
    start = parse_time(args.start, "from") if args.start else None
    end = parse_time(args.end, "to") if args.end else None
    if start and end and start >= end:
        raise ScanError("--from must be before --to")
    if args.top < 0 or args.workers < 1:
        raise ScanError("--top must be ≥ 0 and --workers ≥ 1")
    http = QuestDBHttp.from_conf(cfg.questdb.conf, timeout=30)
    if (not args.klines or args.store) and not QuestDBHttp.from_conf(
        cfg.questdb.conf, timeout=5
    ).ping():
        raise ScanError(f"QuestDB at {http.base_url} is unreachable (check [questdb] conf)")

    by_symbol: dict[str, list[Bar]] = {}
    if args.klines:
        for path in args.klines:
            sym = symbol_of(path)
            if sym in by_symbol:
                raise ScanError(f"--klines: {sym} is given twice ({path})")
            try:
                by_symbol[sym] = read_klines(path, sym)
            except ReplayError as e:
                raise ScanError(f"--klines: {e}") from None
        file_tfs = sorted({b.tf for bars in by_symbol.values() for b in bars[:1]})
        if len(file_tfs) != 1:
            raise ScanError(f"--klines: the files hold different timeframes: {', '.join(file_tfs)}")
        tf = args.tf or file_tfs[0]
        if _tf(tf) % _tf(file_tfs[0]):
            raise ScanError(f"--tf {tf}: not a multiple of the files' {file_tfs[0]} bars")
        source = f"{len(args.klines)} kline file(s)"
    else:
        symbols = cfg.scan.symbols or cfg.symbols
        tf = args.tf or cfg.scan.tf
        _tf(tf)
        try:
            bars = load_bars(http, symbols, tf, start, end, "scan: ")
        except BacktestError as e:
            raise ScanError(str(e)) from None
        for b in bars:
            by_symbol.setdefault(b.symbol, []).append(b)
        source = f"QuestDB {http.base_url}"
    if len(by_symbol) < 2:
        raise ScanError("a scan needs at least two symbols")
    tf_ms = _tf(tf)
    lo = None if start is None else (start - EPOCH) // _MS
    hi = None if end is None else (end - EPOCH) // _MS
    series = {}
    for sym, bars in by_symbol.items():
        ms, c = closes(bars, tf_ms)
        keep = np.ones(ms.size, dtype=bool)
        if lo is not None:
            keep &= ms >= lo
        if hi is not None:
            keep &= ms < hi
        series[sym] = (ms[keep], c[keep])
    t0 = time.monotonic()
    rows = scan_universe(series, tf, tf_ms, workers=args.workers, on_done=Progress())
    elapsed = time.monotonic() - t0
    if not rows:
        need = f"{MIN_SCAN_BARS} aligned {tf} bars"
        raise ScanError(f"no pair has the {need} a scan needs ({source})")
    first = min(int(s[0][0]) for s in series.values() if s[0].size)
    t_first = EPOCH + first * _MS
    t_end = max(r.ts for r in rows)
    n_pairs = len(series) * (len(series) - 1)
    print(
        f"scan {len(series)} symbols, {n_pairs} ordered pairs, {tf} bars "
        f"{_stamp(t_first)} .. {_stamp(t_end)} from {source}: {len(rows)} scanned in {elapsed:.1f}s"
    )
    print(table(rows, args.top))
    out = (
        Path(args.out)
        if args.out
        else Path(args.dir) / default_name(len(series), tf, start or t_first, end or t_end)
    )
    write_csv(out, rows)
    print(f"wrote {out}")
    if args.store:
        store(cfg.questdb.conf, rows)
        print(f"stored {len(rows)} row(s) in QuestDB table pair_scan")
    sys.stdout.flush()
    return 0
