"""Replay source: frame files and CSV dumps give the same ticks; pacing, rebasing, resume."""

from __future__ import annotations

import csv
import glob
import gzip
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, run_main

from connectors.replay import ReplayError, ReplaySource, _frame_blocks
from pairstream.records import Bar, Progress, Tick, expand_ticks
from tests.conftest import SAMPLE

SYMS = ["BTCUSDT", "ETHUSDT"]
MERGED = str(SAMPLE / "futures-um-ws-trade-frames-BTCUSDT+ETHUSDT-merged-*.txt.gz")
PER_SYMBOL_FRAMES = [
    str(SAMPLE / f"futures-um-ws-trade-frames-{s}-2024-07-18T23-57_2024-07-19T00-05.txt.gz")
    for s in SYMS
]
TRADE_CSVS = [
    str(SAMPLE / f"futures-um-trades-{s}-2024-07-18T23-57_2024-07-19T00-05.csv") for s in SYMS
]
UTC = timezone.utc


def replay(paths, **kw) -> list:
    flow = Dataflow("replay_test")
    out: list = []
    op.output("out", op.input("in", flow, ReplaySource(paths, SYMS, **kw)), TestingSink(out))
    run_main(flow)
    return expand_ticks(out)


def by_symbol(records) -> dict[str, list[Tick]]:
    out: dict[str, list[Tick]] = {}
    for r in records:
        if isinstance(r, Tick):
            out.setdefault(r.symbol, []).append(r)
    return out


def test_frames_and_csvs_of_window_a_give_identical_tick_sequences():
    merged = by_symbol(replay([MERGED]))
    frames = by_symbol(replay(PER_SYMBOL_FRAMES))
    csvs = by_symbol(replay(TRADE_CSVS))
    assert {s: len(v) for s, v in csvs.items()} == {"BTCUSDT": 10_701, "ETHUSDT": 13_655}
    assert merged == frames == csvs
    # and they are exactly the CSV rows, in file order
    for sym, ticks in csvs.items():
        with open(TRADE_CSVS[SYMS.index(sym)]) as fh:
            rows = list(csv.DictReader(fh))
        assert [t.trade_id for t in ticks] == [int(r["id"]) for r in rows]
        assert [t.price for t in ticks] == [float(r["price"]) for r in rows]
        assert [t.qty for t in ticks] == [float(r["qty"]) for r in rows]
        assert [int(t.ts.timestamp() * 1000 + 0.5) for t in ticks] == [int(r["time"]) for r in rows]
        assert [t.buyer_maker for t in ticks] == [r["is_buyer_maker"] == "true" for r in rows]


def _headerless_dump(tmp_path: Path, kind: str) -> Path:
    """Write window A BTC trades the way data.binance.vision ships them (no header)."""
    with open(TRADE_CSVS[0]) as fh:
        rows = list(csv.DictReader(fh))
    path = tmp_path / f"BTCUSDT-{kind}-2024-07-18.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        for i, r in enumerate(rows):
            if kind == "trades":
                quote = f"{float(r['price']) * float(r['qty']):.6f}"
                w.writerow([r["id"], r["price"], r["qty"], quote, r["time"], r["is_buyer_maker"]])
            else:  # aggTrades: one agg per raw trade, ids from 1
                agg = [i + 1, r["price"], r["qty"], r["id"], r["id"], r["time"]]
                w.writerow([*agg, r["is_buyer_maker"]])
    return path


@pytest.mark.parametrize("kind", ["trades", "aggTrades"])
def test_headerless_dumps(tmp_path: Path, kind: str):
    ticks = by_symbol(replay([str(_headerless_dump(tmp_path, kind))]))["BTCUSDT"]
    ref = by_symbol(replay([TRADE_CSVS[0]]))["BTCUSDT"]
    assert len(ticks) == len(ref) == 10_701
    assert [(t.ts, t.price, t.qty, t.buyer_maker, t.first_id) for t in ticks] == [
        (t.ts, t.price, t.qty, t.buyer_maker, t.trade_id) for t in ref
    ]
    if kind == "aggTrades":
        assert [t.trade_id for t in ticks] == list(range(1, 10_702))


def test_malformed_lines_are_counted_and_skipped(tmp_path: Path, caplog):
    src = Path(PER_SYMBOL_FRAMES[0])
    with gzip.open(src, "rt") as fh:
        lines = fh.read().splitlines()
    bad = tmp_path / "BTCUSDT-frames.txt"
    garbage = ['1 {"stream":"x","data":{"e":"trade","p":"NaN"}}', "2 not json", "3 {}", "4 []"]
    bad.write_text("\n".join(lines[:100] + garbage + lines[100:]) + "\n")
    with caplog.at_level("WARNING", logger="pairstream.replay"):
        ticks = by_symbol(replay([str(bad)]))["BTCUSDT"]
    assert ticks == by_symbol(replay([PER_SYMBOL_FRAMES[0]]))["BTCUSDT"]
    assert len(ticks) == 10_701
    assert "4 malformed lines skipped" in caplog.text
    assert "line 101 skipped" in caplog.text and "line 104 skipped" in caplog.text


def test_kline_dumps_become_bars():
    path = str(SAMPLE / "futures-um-klines-1m-BTCUSDT-2024-07-18T23-50_2024-07-19T00-09.csv")
    bars = replay([path])
    with open(path) as fh:
        rows = list(csv.DictReader(fh))
    assert all(isinstance(b, Bar) and b.tf == "1m" for b in bars)
    assert [(b.open, b.high, b.low, b.close, b.volume, b.quote_volume, b.trades) for b in bars] == [
        (
            float(r["open"]),
            float(r["high"]),
            float(r["low"]),
            float(r["close"]),
            float(r["volume"]),
            float(r["quote_volume"]),
            int(r["count"]),
        )
        for r in rows
    ]
    assert bars[0].ts == datetime(2024, 7, 18, 23, 50, tzinfo=UTC)


class FakeClock:
    """A clock the test moves; the source reads it, nothing sleeps."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def drain(part, clock: FakeClock | None = None, step=timedelta(seconds=1)):
    out = []
    while True:
        try:
            out.append(part.next_batch())
        except StopIteration:
            return out
        if clock is not None:
            clock.now += step


def test_paced_replay_follows_the_clock_and_reports_progress():
    start = datetime(2030, 1, 1, tzinfo=UTC)
    clock = FakeClock(start)
    src = ReplaySource([TRADE_CSVS[0]], SYMS, speed=10, clock=clock)
    (name,) = src.list_parts()
    part = src.build_part("in", name, None)
    batches = drain(part, clock)  # each batch = 1 s of wall time = 10 s of tape
    t0 = datetime(2024, 7, 18, 23, 57, 2, 956000, tzinfo=UTC)
    for i, batch in enumerate(batches):
        ticks = [r for r in batch if isinstance(r, Tick)]
        progress = [r for r in batch if isinstance(r, Progress)]
        assert all(t.ts <= t0 + timedelta(seconds=10 * i) for t in ticks)
        clock_ts = t0 + timedelta(seconds=10 * i)
        if i + 1 == len(batches):  # end of input: never past the last tick (deterministic end)
            clock_ts = min(clock_ts, ticks[-1].ts)
        assert progress == [Progress("BTCUSDT", clock_ts)]
        if i + 1 < len(batches):
            assert part.next_awake() is None or part.next_awake() > start
    assert sum(isinstance(r, Tick) for b in batches for r in b) == 10_701
    assert 48 <= len(batches) <= 50  # 480 s of tape at 10x


@pytest.mark.parametrize("path", [TRADE_CSVS[0], PER_SYMBOL_FRAMES[0]])
def test_rebase_to_now_shifts_by_whole_minutes(path):
    now = datetime(2030, 5, 6, 7, 8, 9, tzinfo=UTC)
    ticks = by_symbol(replay([path], rebase_to_now=True, clock=lambda: now))["BTCUSDT"]
    ref = by_symbol(replay([path]))["BTCUSDT"]
    shift = ticks[0].ts - ref[0].ts
    assert shift % timedelta(minutes=1) == timedelta(0)
    assert timedelta(0) <= now - ticks[0].ts < timedelta(minutes=1)
    assert [t.ts - shift for t in ticks] == [t.ts for t in ref]


def test_resume_from_snapshot_continues_where_it_stopped():
    src = ReplaySource([MERGED], SYMS, block_bytes=100_000)
    (name,) = src.list_parts()
    part = src.build_part("in", name, None)
    first = part.next_batch() + part.next_batch() + part.next_batch()
    snap = part.snapshot()
    assert snap == (0, len(expand_ticks(first)))  # every line a trade: lines read = ticks
    rest = drain(src.build_part("in", name, snap))
    full = [r for b in drain(src.build_part("in", name, None)) for r in b]
    resumed = by_symbol(expand_ticks(first + [r for b in rest for r in b]))
    assert resumed == by_symbol(expand_ticks(full))  # each symbol's ticks, in order, once
    assert sum(map(len, resumed.values())) == 24_356


def test_missing_file_is_one_clear_error():
    with pytest.raises(ReplayError, match=r"source.paths: no file matches '.*nope\*\.csv'"):
        ReplaySource(["/nonexistent/nope*.csv"], SYMS)


def _read_ahead_threads() -> int:
    return sum(t.name == "replay-read-ahead" and t.is_alive() for t in threading.enumerate())


def test_gzip_read_ahead_raises_a_truncated_file_and_leaves_no_thread(tmp_path: Path):
    # blocks are inflated ahead in a thread; a broken file must still stop the replay, loudly
    data = gzip.compress(gzip.decompress(Path(glob.glob(MERGED)[0]).read_bytes()) * 4)
    bad = tmp_path / "truncated-frames.txt.gz"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(Exception) as caught:  # noqa: B017 - Bytewax wraps it; the cause counts
        replay([str(bad)], block_bytes=64 * 1024)
    causes, e = [], caught.value
    while e is not None:
        causes.append(e)
        e = e.__cause__
    assert any(isinstance(c, EOFError) and "end-of-stream" in str(c) for c in causes), causes
    whole = tmp_path / "whole-frames.txt.gz"
    whole.write_bytes(data)
    assert len(replay([str(whole)], block_bytes=64 * 1024)) == 4 * 24_356
    for t in threading.enumerate():  # the helper thread ends with its file
        if t.name == "replay-read-ahead":
            t.join(timeout=10)
    assert _read_ahead_threads() == 0


@pytest.mark.parametrize("gz", [False, True])
def test_frame_blocks_are_the_files_whole_lines_in_order(tmp_path: Path, gz: bool):
    lines = [b"%d %s\n" % (i, b"x" * (i * 37 % 300)) for i in range(400)]
    data = b"".join(lines) + b"last line, no newline"
    path = tmp_path / ("frames.txt.gz" if gz else "frames.txt")
    path.write_bytes(gzip.compress(data) if gz else data)
    for size in (1, 50, 333, 4096, 1 << 20):  # lines longer and shorter than a block
        blocks = list(_frame_blocks(str(path), 0, size))
        assert all(type(b) is bytes and b for b in blocks)
        assert all(b.endswith(b"\n") for b in blocks[:-1])
        assert b"".join(blocks) == data
    assert b"".join(_frame_blocks(str(path), 10, 333)) == data.split(b"\n", 10)[10]
