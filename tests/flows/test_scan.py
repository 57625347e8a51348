"""The live pair scan and ``pairstream scan``, end to end on the real 5-symbol universe.

The live check replays the 14 days of 1m klines through ``flows.pairs`` (``[scan]`` every 12 h
of bar time over the last 720 bars) into the session's real QuestDB and compares ``pair_scan``
with :func:`pairstream.scan.scan_one` over the same klines cut at each boundary: every boundary
present, every row equal (ILP and the JSON read-back carry doubles exactly; 1e-12 relative is
allowed). The numerics themselves are held to statsmodels in tests/pairstream/test_scan.py.
"""

from __future__ import annotations

import csv
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from connectors.questdb_sink import drop_tables
from connectors.replay import read_klines
from flows.cli import main
from flows.scan_cli import closes, symbol_of
from pairstream.records import EPOCH
from pairstream.scan import ScanSchedule, ordered_pairs, scan_one
from tests.conftest import REPO, run_flow

UNIVERSE = REPO / "data" / "universe"
FILES = sorted(UNIVERSE.glob("futures-um-klines-1m-*.csv"))
SYMBOLS = [symbol_of(str(f)) for f in FILES]
COLUMNS = ("beta", "alpha", "coint_p", "johansen_trace", "johansen_crit95", "half_life",
           "hurst", "corr")  # fmt: skip
UTC = timezone.utc


def universe_series() -> dict:
    return {s: closes(read_klines(str(f), s), 60_000) for f, s in zip(FILES, SYMBOLS)}


def write_config(path: Path, every: str = "12h", window: int = 720) -> Path:
    quoted = ", ".join(f'"{s}"' for s in SYMBOLS)
    path.write_text(
        f"""
symbols    = [{quoted}]
timeframes = ["1m"]
pairs      = [{{ y = "FILUSDT", x = "AVAXUSDT" }}]

[source]
kind  = "replay"
paths = [{", ".join(f'"{f}"' for f in FILES)}]

[scan]
symbols = [{quoted}]
tf      = "1m"
window  = {window}
every   = "{every}"
"""
    )
    return path


def close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= 1e-12 * max(abs(a), abs(b), 1e-300)


def test_live_scan_writes_every_boundary(questdb, tmp_path) -> None:
    drop_tables(questdb.http)
    run_flow(questdb, write_config(tmp_path / "scan.toml"), "-w", "2")
    got = questdb.http.query(
        "SELECT ts, y, x, tf, n, " + ", ".join(COLUMNS) + " FROM pair_scan ORDER BY ts, y, x"
    )
    series = universe_series()
    start = datetime(2023, 2, 1, 12, tzinfo=UTC)
    boundaries = [start + timedelta(hours=12 * i) for i in range(28)]  # .. 2023-02-15 00:00
    want = {}
    for b in boundaries:
        b_ms = (b - EPOCH) // timedelta(milliseconds=1)
        cut = {s: (t[t < b_ms], c[t < b_ms]) for s, (t, c) in series.items()}
        for y, x in ordered_pairs(SYMBOLS):
            want[(b, y, x)] = scan_one(cut, y, x, "1m", 60_000, 720)
    assert len(got) == len(want) == 28 * 20
    for row in got:
        ts = datetime.fromisoformat(row["ts"].replace("Z", "+00:00"))
        ref = want[(ts, row["y"], row["x"])]
        assert ref is not None and row["tf"] == "1m" and row["n"] == 720 == ref.n
        for c in COLUMNS:
            assert close(row[c], getattr(ref, c)), (ts, row["y"], row["x"], c, row[c])
    assert sum(r["coint_p"] < 0.05 for r in got) > 0  # some samples are cointegrated


def test_schedule_waits_for_every_symbol_and_forward_fills() -> None:
    tf = 60_000
    sch = ScanSchedule(["AUSDT", "BUSDT"], "1m", tf, 200, 300 * tf)
    jobs = []
    for i in range(600):
        jobs += sch.push("AUSDT", i * tf, 1.0 + i)
    assert jobs == []  # B has not reached any boundary: nothing may fire
    for i in range(0, 600):
        if i % 7 == 3:
            continue  # B skips intervals: forward-filled like the aligner
        jobs += sch.push("BUSDT", i * tf, 2.0 + i * i)
    assert [j.ts_ms for j in jobs] == [300 * tf] * 2 + [600 * tf] * 2  # two boundaries, 2 jobs
    job = [j for j in jobs if j.y == "AUSDT"][-1]
    a_t, _ = job.series["AUSDT"]
    assert a_t[-1] == 599 * tf and a_t.size <= 202  # pruned to the window and one before it
    rows = job.rows()
    assert [r.y for r in rows] == ["AUSDT"] and rows[0].n == 200
    assert rows[0].ts == EPOCH + timedelta(milliseconds=600 * tf)
    assert sch.push("AUSDT", 10 * tf, 5.0) == []  # an old bar is ignored


@pytest.fixture
def in_dir(tmp_path, monkeypatch, questdb) -> Path:
    monkeypatch.chdir(tmp_path)
    cfg = write_config(tmp_path / "cfg.toml")
    monkeypatch.setenv("PAIRSTREAM_CONFIG", str(cfg))
    monkeypatch.setenv("QDB_CLIENT_CONF", questdb.conf)
    return tmp_path


def test_cli_ranks_writes_csv_and_stores(in_dir, questdb, capsys) -> None:
    questdb.http.exec("DROP TABLE IF EXISTS pair_scan")
    code = main(["scan", "--klines", *map(str, FILES), "--top", "5", "--store", "-w", "2"])
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = out.splitlines()
    assert "5 symbols, 20 ordered pairs" in lines[0] and "20 scanned" in lines[0]
    assert lines[1].split()[:5] == ["#", "y", "x", "coint_p", "half_life"]
    assert len(lines) == 2 + 5 + 2 and "100% 20/20 pairs" in err
    name = "scan_5-symbols_1m_2023-02-01T00-00_2023-02-15T00-00.csv"
    assert lines[7] == f"wrote {name}"
    with open(in_dir / name, newline="") as fh:
        rows = list(csv.DictReader(fh))
    series = universe_series()
    want = {(y, x): scan_one(series, y, x, "1m", 60_000) for y, x in ordered_pairs(SYMBOLS)}
    assert [int(r["rank"]) for r in rows] == list(range(1, 21))
    ps = [float(r["coint_p"]) for r in rows]
    assert ps == sorted(ps)
    for r in rows:
        ref = want[(r["y"], r["x"])]
        assert r["ts"] == "2023-02-15T00:00:00.000000Z" and int(r["n"]) == 20_160
        for c in COLUMNS:
            v = float(r[c]) if r[c] else None
            assert close(v, getattr(ref, c)), (r["y"], r["x"], c)
    questdb.http.wait_applied()
    stored = questdb.http.query("SELECT y, x, coint_p FROM pair_scan ORDER BY coint_p")
    assert [(s["y"], s["x"]) for s in stored] == [(r["y"], r["x"]) for r in rows]


def test_cli_bad_inputs_are_one_line(in_dir, capsys, tmp_path) -> None:
    bad = tmp_path / "futures-um-klines-1m-XRPUSDT-2023-02.csv"
    bad.write_text("open_time,open,high,low,close,volume\n1,2,3\n")
    noname = tmp_path / "closes.csv"
    noname.write_text("x\n")
    cases = [
        ([str(FILES[0]), str(bad)], f"{bad} line 2"),
        ([str(FILES[0]), str(noname)], "no symbol in the file name"),
        ([str(FILES[0]), str(FILES[0])], "ALGOUSDT is given twice"),
        ([str(FILES[0]), str(tmp_path / "NOPEUSDT.csv")], "does not exist"),
    ]
    for files, message in cases:
        try:
            code = main(["scan", "--klines", *files])
        except SystemExit as e:
            code = e.code
        out, err = capsys.readouterr()
        assert code == 2 and out == "", (files, out)
        assert err.startswith("pairstream: error: ") and err.count("\n") == 1, err
        assert message in err, err


def test_cli_five_minute_roll_up_is_the_last_close() -> None:
    bars = read_klines(str(FILES[0]), SYMBOLS[0])
    t, c = closes(bars, 300_000)
    assert t.size == 20_160 // 5 and (np.diff(t) == 300_000).all()
    assert c[0] == bars[4].close and c[-1] == bars[-1].close
