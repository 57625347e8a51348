"""Funding-rate files → :class:`~pairstream.records.Funding` events (replay and backtest).

Two formats, told apart by their header:

- the REST dump of ``GET /fapi/v1/fundingRate``: ``fundingTime,fundingRate,markPrice``
  (optionally with a ``symbol`` column), as in ``data/funding/``;
- data.binance.vision's monthly ``fundingRate`` CSV: ``calc_time,funding_interval_hours,
  last_funding_rate`` (no mark price: the signal machine then uses the leg's close).

Neither names its symbol in a row (a ``symbol`` column wins when present), so the file name
must name exactly one configured symbol, as for the other dumps.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import re
from collections.abc import Sequence
from typing import Optional

from connectors.frames import ms_to_dt
from pairstream.funding import FundingBook
from pairstream.records import Funding

REST_COLS = ("fundingTime", "fundingRate")  # markPrice optional
VISION_COLS = ("calc_time", "last_funding_rate")


class FundingFileError(ValueError):
    """A funding file that cannot be read; one-line message naming the file and line."""


def _open(path: str) -> io.TextIOBase:
    if path.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def _header(path: str) -> list[str]:
    with _open(path) as fh:
        return [c.strip() for c in fh.readline().strip().split(",")]


def is_funding_file(path: str) -> bool:
    """Whether the file's header is one of the two funding formats."""
    h = _header(path)
    return all(c in h for c in REST_COLS) or all(c in h for c in VISION_COLS)


def _symbol_of(path: str, symbols: Sequence[str]) -> Optional[str]:
    name = os.path.basename(path).upper()
    found = [s for s in symbols if re.search(rf"(?<![A-Z0-9]){s}(?![A-Z0-9])", name)]
    return found[0] if len(found) == 1 else None


def read_funding(path: str, symbols: Sequence[str]) -> list[Funding]:
    """The funding events of one file (plain or .gz), in file order.

    Events of symbols not in ``symbols`` are left out; a bad row is an error naming the line.
    """
    default = _symbol_of(path, symbols)
    out: list[Funding] = []
    with _open(path) as fh:
        reader = csv.reader(fh)
        header = [c.strip() for c in next(reader, [])]
        rest = all(c in header for c in REST_COLS)
        if not rest and not all(c in header for c in VISION_COLS):
            raise FundingFileError(f"{path}: not a funding-rate file (header {header})")
        t_col, r_col = REST_COLS if rest else VISION_COLS
        if "symbol" not in header and default is None:
            raise FundingFileError(
                f"{path}: cannot tell which configured symbol ({', '.join(symbols)}) it holds"
            )
        for n, fields in enumerate(reader, 2):
            if not fields:
                continue
            row = dict(zip(header, fields))
            try:
                sym = row.get("symbol", default) or default
                mark = row.get("markPrice", "").strip() if rest else ""
                e = Funding(
                    symbol=str(sym).upper(),
                    ts=ms_to_dt(int(row[t_col])),
                    rate=float(row[r_col]),
                    mark=float(mark) if mark else None,
                )
            except (KeyError, ValueError, TypeError) as err:
                raise FundingFileError(f"{path} line {n}: bad funding row ({err})") from None
            if e.symbol in symbols:
                out.append(e)
    return out


def funding_book(paths: Sequence[str], symbols: Sequence[str]) -> FundingBook:
    """Every event of the files in one book (a later file wins for the same symbol and time)."""
    book = FundingBook()
    for p in paths:
        if not os.path.isfile(p):
            raise FundingFileError(f"{p}: funding file does not exist")
        for e in read_funding(p, symbols):
            book.add(e)
    return book
