"""``pairstream backtest``: arguments, bar loading, the table, CSV and the ``backtests`` rows.

Bars come from QuestDB (table ``bars``, both legs of one pair at one timeframe, optionally a
time range) or from two Binance kline CSV files (``--klines Y.csv X.csv``, read by the replay
connector's own kline parser). The maths is :mod:`pairstream.backtest`; this module is the I/O.
Every user-caused problem raises :class:`~pairstream.backtest.BacktestError` (one line).
"""

from __future__ import annotations

import argparse
import codecs
import csv
import os
import re
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import astuple, fields
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Optional

from connectors.export import parse_time
from connectors.funding_files import funding_book
from connectors.questdb_http import QuestDBError, QuestDBHttp
from connectors.replay import ReplayError
from connectors.replay import read_klines as _read_klines
from flows.startup import load_config
from pairstream.backtest import (
    PARAM_KEYS,
    BacktestError,
    BacktestResult,
    align,
    backtest,
    expand,
    fmt_value,
    parse_grid,
    parse_value,
)
from pairstream.config import Config, ConfigError, tf_seconds
from pairstream.records import Bar, PairBar

UTC = timezone.utc
_PAIR = re.compile(r"^([A-Z0-9]{2,30})/([A-Z0-9]{2,30})$")
_TF = re.compile(r"^\d{1,4}[smhd]$")
DEFAULT_COLUMNS = ("entry", "exit", "stop", "window", "z_window")


def add_args(p: argparse.ArgumentParser) -> None:
    """Options of ``pairstream backtest``; every [analytics]/[signals] key is an option."""
    p.add_argument("--pair", help="pair id, e.g. BTCUSDT/ETHUSDT (default: the first configured)")
    p.add_argument("--tf", help="timeframe, e.g. 1m (default: 1m, or the timeframe of --klines)")
    p.add_argument("--from", dest="start", help="first bar (inclusive), ISO time, UTC by default")
    p.add_argument("--to", dest="end", help="end (exclusive), ISO time")
    p.add_argument(
        "--klines", nargs=2, metavar=("Y_CSV", "X_CSV"),
        help="read the legs from Binance kline CSV files instead of QuestDB",
    )  # fmt: skip
    p.add_argument(
        "--funding", nargs="+", action="extend", default=[], metavar="CSV",
        help="funding-rate files of the legs (REST fundingTime,fundingRate,markPrice dumps or "
        "data.binance.vision fundingRate CSV): funding is booked in the PnL",
    )  # fmt: skip
    params = p.add_argument_group("parameters (default: the configuration file)")
    for key in PARAM_KEYS:
        params.add_argument(f"--{key.replace('_', '-')}", dest=f"p_{key}", metavar="V")
    p.add_argument(
        "--grid", nargs="+", action="extend", default=[], metavar="KEY=SPEC",
        help="parameter grid: key=a:b:step (inclusive) or key=v1,v2,...; cartesian product",
    )  # fmt: skip
    p.add_argument("-o", "--out", help="CSV file (default: a descriptive name in --dir)")
    p.add_argument("--dir", default=".", help="directory for the default CSV name")
    p.add_argument("--no-store", action="store_true", help="do not write the backtests table")
    p.add_argument(
        "-w", "--workers", type=int, default=os.cpu_count() or 1,
        help="processes for distinct analytics settings (default: CPU count)",
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# loading bars


def read_klines(path: str, symbol: str) -> list[Bar]:
    """Bars of one Binance kline CSV (:func:`connectors.replay.read_klines`), one-line errors."""
    try:
        return _read_klines(path, symbol)
    except ReplayError as e:
        raise BacktestError(f"--klines: {e}") from None


def _lines(chunks: Iterator[bytes]) -> Iterator[str]:
    """Text lines of a streamed byte response (``/exp`` CSV), one chunk in memory at a time."""
    rest = ""
    for text in codecs.iterdecode(chunks, "utf-8"):
        rest += text
        *whole, rest = rest.split("\n")
        yield from whole
    if rest:
        yield rest


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def load_bars(
    http: QuestDBHttp,
    symbols: Sequence[str],
    tf: str,
    start: Optional[datetime],
    end: Optional[datetime],
    what: str = "",
) -> list[Bar]:
    """The stored bars of ``symbols`` at ``tf`` in ``[start, end)``, streamed from ``/exp``.

    Symbols and ``tf`` are checked by the callers (patterns), never pasted as typed.
    """
    legs = f"symbol IN ({', '.join(repr(s) for s in symbols)}) AND tf = '{tf}'"
    try:
        stats = http.query(f"SELECT symbol, count() n FROM bars WHERE {legs}")
    except QuestDBError as e:
        if "does not exist" in str(e):
            raise BacktestError(
                f"QuestDB at {http.base_url} has no bars table yet "
                "(run the flow or `pairstream replay` first, or use --klines)"
            ) from None
        raise
    have = {r["symbol"] for r in stats if r["n"]}
    missing = [s for s in symbols if s not in have]
    if missing:
        raise BacktestError(
            f"{what}no {tf} bars of {' and '.join(missing)} in QuestDB table bars"
        )
    where = legs
    if start is not None:
        where += f" AND ts >= '{_iso(start)}'"
    if end is not None:
        where += f" AND ts < '{_iso(end)}'"
    names = [f.name for f in fields(Bar)]
    rows = csv.reader(_lines(http.export_csv(f"SELECT {', '.join(names)} FROM bars WHERE {where}")))
    header = next(rows, None)
    if header is None:
        return []
    out: list[Bar] = []
    for r in rows:
        if not r:
            continue
        v = dict(zip(header, r))
        out.append(
            Bar(
                symbol=v["symbol"],
                tf=v["tf"],
                ts=_ts(v["ts"]),
                open=float(v["open"]),
                high=float(v["high"]),
                low=float(v["low"]),
                close=float(v["close"]),
                volume=float(v["volume"]),
                quote_volume=float(v["quote_volume"]),
                trades=int(v["trades"]),
                taker_buy_volume=float(v["taker_buy_volume"]),
                vwap=float(v["vwap"]),
                filled=v["filled"] == "true",
            )
        )
    return out


# ---------------------------------------------------------------------------------------------
# output


def _stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H-%M")


def default_name(pair: str, tf: str, start: datetime, end: datetime) -> str:
    """``backtest_BTCUSDT-ETHUSDT_1m_2024-07-01T00-00_2024-07-08T00-00.csv``."""
    return f"backtest_{pair.replace('/', '-')}_{tf}_{_stamp(start)}_{_stamp(end)}.csv"


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, datetime):
        return _iso(v)
    if isinstance(v, float):
        return repr(v)
    return str(v)


def write_csv(path: Path, results: Sequence[BacktestResult]) -> None:
    """Every column of the ``backtests`` rows (full precision), written atomically."""
    tmp = Path(str(path) + ".part")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow([f.name for f in fields(BacktestResult)])
        for r in results:
            w.writerow([_cell(v) for v in astuple(r)])
    tmp.replace(path)


def _pct(v: Optional[float]) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def table(results: Sequence[BacktestResult], keys: Sequence[str], funding: bool = False) -> str:
    """An aligned text table, one row per parameter set in run order (``funding``: with the
    total funding column, for runs given funding files)."""
    head = ["#", *keys, "trades", "hit%", "pnl", "funding", "return%", "sharpe", "maxDD%"]
    rows = [
        [
            str(i),
            *(fmt_value(getattr(r, k)) for k in keys),
            str(r.trades),
            _pct(r.hit_rate),
            f"{r.pnl:.2f}",
            f"{r.funding:.2f}",
            _pct(r.total_return),
            "-" if r.sharpe is None else f"{r.sharpe:.2f}",
            _pct(r.max_drawdown),
        ]
        for i, r in enumerate(results, 1)
    ]
    if not funding:
        at = head.index("funding")
        head, rows = head[:at] + head[at + 1 :], [r[:at] + r[at + 1 :] for r in rows]
    widths = [max(len(c) for c in col) for col in zip(head, *rows)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(line, widths)) for line in (head, *rows)]
    return "\n".join(lines)


def store(conf: str, results: Sequence[BacktestResult]) -> None:
    """Write the rows through the flow's own QuestDB sink partition (official client, HTTP)."""
    from connectors.questdb_sink import write_table
    from connectors.schema import BACKTESTS

    try:
        write_table(conf, BACKTESTS, results)
    except QuestDBError as e:
        raise BacktestError(str(e)) from None


# ---------------------------------------------------------------------------------------------
# the command


def _pair_and_tf(cfg: Config, pair: Optional[str], tf: Optional[str]) -> tuple[str, str, str]:
    pair = pair or cfg.pair_ids[0]
    m = _PAIR.match(pair)
    if not m:
        raise BacktestError(f"--pair: expected a pair like BTCUSDT/ETHUSDT, got {pair!r}")
    if pair not in cfg.pair_ids:
        where = cfg.path or "the configuration"
        raise BacktestError(
            f"--pair: unknown pair {pair!r} (configured in {where}: {', '.join(cfg.pair_ids)})"
        )
    if tf is not None:
        try:
            if not _TF.match(tf):
                raise ConfigError("")
            tf_seconds(tf)
        except ConfigError:
            raise BacktestError(f"--tf: expected a timeframe like 1m, got {tf!r}") from None
    return pair, m.group(1), m.group(2)


def cmd_backtest(args: argparse.Namespace) -> int:
    cfg = load_config()
    pair, y, x = _pair_and_tf(cfg, args.pair, args.tf)
    start = parse_time(args.start, "from") if args.start else None
    end = parse_time(args.end, "to") if args.end else None
    if start and end and start >= end:
        raise BacktestError("--from must be before --to")
    overrides = {
        k: parse_value(getattr(args, f"p_{k}"))
        for k in PARAM_KEYS
        if getattr(args, f"p_{k}") is not None
    }
    grid = parse_grid(args.grid)
    if args.workers < 1:
        raise BacktestError(f"--workers: must be ≥ 1, got {args.workers}")

    http = QuestDBHttp.from_conf(cfg.questdb.conf, timeout=30)
    if not args.klines or not args.no_store:
        if not QuestDBHttp.from_conf(cfg.questdb.conf, timeout=5).ping():
            hint = "" if args.klines is None else "; --no-store runs --klines without it"
            raise BacktestError(
                f"QuestDB at {http.base_url} is unreachable "
                f"(check [questdb] conf or QDB_CLIENT_CONF{hint})"
            )

    if args.klines:
        raw = read_klines(args.klines[0], y) + read_klines(args.klines[1], x)
        file_tf = raw[0].tf
        if args.tf and args.tf != file_tf:
            raise BacktestError(f"--klines hold {file_tf} bars, not --tf {args.tf}")
        tf = file_tf
        raw = [b for b in raw if (not start or b.ts >= start) and (not end or b.ts < end)]
        source = "kline files"
        sets = expand(cfg.analytics_for(tf), cfg.signals, overrides, grid)
    else:
        tf = args.tf or ("1m" if "1m" in cfg.timeframes else cfg.timeframes[0])
        sets = expand(cfg.analytics_for(tf), cfg.signals, overrides, grid)
        raw = load_bars(http, (y, x), tf, start, end, f"--pair {y}/{x}: ")
        source = f"QuestDB {http.base_url}"
    bars: list[PairBar] = align(raw, y, x, tf)
    if not bars:
        span = f"[{_iso(start) if start else '…'}, {_iso(end) if end else '…'})"
        raise BacktestError(f"empty range: no {tf} bars of {pair} in {span} ({source})")

    book = funding_book(args.funding, (y, x)) if args.funding else None
    if book is not None and not len(book):
        raise BacktestError(f"--funding: the files hold no funding of {y} or {x}")
    t0 = time.monotonic()
    results = backtest(bars, sets, workers=args.workers, run_at=datetime.now(UTC), funding=book)
    elapsed = time.monotonic() - t0
    last_end = bars[-1].ts + timedelta(seconds=tf_seconds(tf))
    print(
        f"backtest {pair} {tf}: {len(bars):,} bars {_stamp(bars[0].ts)} .. {_stamp(last_end)} "
        f"from {source}; {len(sets)} parameter set(s) in {elapsed:.1f}s"
    )
    print(table(results, list(grid) or list(DEFAULT_COLUMNS), funding=book is not None))
    out = (
        Path(args.out)
        if args.out
        else Path(args.dir) / default_name(pair, tf, start or bars[0].ts, end or last_end)
    )
    write_csv(out, results)
    print(f"wrote {out}")
    if not args.no_store:
        store(cfg.questdb.conf, results)
        print(f"stored {len(results)} row(s) in QuestDB table backtests")
    sys.stdout.flush()
    return 0
