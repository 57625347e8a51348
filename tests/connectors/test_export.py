"""`pairstream export`: streamed CSV equal to the table, descriptive names, flat memory."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from connectors.export import ExportError, ExportSpec, default_name, export, parse_time
from tests.conftest import REPO


def table_frame(http, sql: str) -> pd.DataFrame:
    out = http.exec(sql)
    return pd.DataFrame(out["dataset"], columns=[c["name"] for c in out["columns"]])


def test_export_equals_table_content(window_a, tmp_path: Path):
    http = window_a.http
    spec = ExportSpec("ticks", "BTCUSDT")
    path = export(http, spec, None, tmp_path)
    assert path.name == "ticks_BTCUSDT_2024-07-18T23-57_2024-07-19T00-05.csv"
    got = pd.read_csv(path)
    want = table_frame(http, "SELECT * FROM ticks WHERE symbol = 'BTCUSDT' ORDER BY ts")
    assert len(got) == 10_701
    pd.testing.assert_frame_equal(got, want, check_dtype=False)


def test_time_range_and_name_pattern(window_a, tmp_path: Path):
    http = window_a.http
    spec = ExportSpec(
        "ticks",
        "ETHUSDT",
        start=parse_time("2024-07-18T23:58", "from"),
        end=parse_time("2024-07-19T00:00", "to"),
    )
    path = export(http, spec, None, tmp_path)
    assert path.name == "ticks_ETHUSDT_2024-07-18T23-58_2024-07-19T00-00.csv"
    got = pd.read_csv(path)
    assert got["ts"].min() >= "2024-07-18T23:58:00" and got["ts"].max() < "2024-07-19T00:00:00"
    want = table_frame(
        http,
        "SELECT * FROM ticks WHERE symbol = 'ETHUSDT' AND ts >= '2024-07-18T23:58:00.000000Z'"
        " AND ts < '2024-07-19T00:00:00.000000Z' ORDER BY ts",
    )
    pd.testing.assert_frame_equal(got, want, check_dtype=False)


def test_default_name_for_pairs():
    spec = ExportSpec(
        "analytics",
        "BTCUSDT/ETHUSDT",
        "1m",
        parse_time("2024-07-01", "from"),
        parse_time("2024-07-08T00:00Z", "to"),
    )
    assert default_name(spec, spec.start, spec.end) == (
        "analytics_BTCUSDT-ETHUSDT_1m_2024-07-01T00-00_2024-07-08T00-00.csv"
    )


@pytest.mark.parametrize(
    "spec, message",
    [
        (ExportSpec("ticks", "DOGEUSDT"), r"--symbol: unknown symbol 'DOGEUSDT' in ticks \(known:"),
        (ExportSpec("ticks", "BTC'; DROP TABLE ticks;--"), r"--symbol: expected a symbol"),
        (ExportSpec("ticks", tf="1m"), r"--tf: ticks have no timeframe"),
        (ExportSpec("bars", tf="1 minute"), r"--tf: expected a timeframe"),
        (ExportSpec("analytics", "BTCUSDT"), r"--pair: expected a pair"),
        (ExportSpec("nope"), r"what: expected one of"),
        (
            ExportSpec("ticks", start=parse_time("2030-01-01", "from")),
            r"no ticks rows match: ts >= '2030-01-01",
        ),
    ],
)
def test_bad_arguments_are_one_line(window_a, tmp_path, spec, message):
    with pytest.raises(ExportError, match=message) as e:
        export(window_a.http, spec, None, tmp_path)
    assert "\n" not in str(e.value)


def test_cli_errors_are_one_line_without_traceback(window_a, tmp_path):
    env = dict(os.environ, QDB_CLIENT_CONF=window_a.conf)
    proc = subprocess.run(
        [sys.executable, "-m", "flows.cli", "export", "ticks", "--from", "yesterday"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "pairstream: error: --from: expected an ISO time like 2024-07-01T00:00, got 'yesterday'"
    ]


_CHILD = """
import resource, sys
from pathlib import Path
from connectors.export import ExportSpec, export
from connectors.questdb_http import QuestDBHttp
http = QuestDBHttp.from_conf(sys.argv[1])
export(http, ExportSpec(sys.argv[2]), Path(sys.argv[3]), Path("."))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _export_rss(conf: str, what: str, out: Path) -> int:
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, conf, what, str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return int(proc.stdout.strip())  # KiB


def test_million_row_export_keeps_memory_flat(fresh_tables, tmp_path: Path):
    http = fresh_tables.http
    from connectors.questdb_sink import ensure_tables

    ensure_tables(fresh_tables.conf)
    http.exec(
        "INSERT INTO ticks SELECT timestamp_sequence('2024-07-01', 1000) ts, "
        "rnd_symbol('BTCUSDT','ETHUSDT') symbol, rnd_double() * 60000 price, rnd_double() qty, "
        "x trade_id, x first_id, x last_id, rnd_boolean() buyer_maker FROM long_sequence(1000000)"
    )
    http.exec(
        "INSERT INTO bars SELECT timestamp_sequence('2024-07-01', 1000000) ts, 'BTCUSDT', '1s', "
        "1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0, 0.0, 1.0, true FROM long_sequence(10000)"
    )
    http.wait_applied(["ticks", "bars"])
    small = _export_rss(fresh_tables.conf, "bars", tmp_path / "small.csv")
    big = _export_rss(fresh_tables.conf, "ticks", tmp_path / "big.csv")
    with open(tmp_path / "big.csv") as fh:
        lines = sum(1 for _ in fh)
    assert lines == 1_000_001  # header + rows
    print(f"\nexport peak RSS: 10k rows {small / 1024:.1f} MiB, 1M rows {big / 1024:.1f} MiB")
    assert big < small + 20 * 1024, (small, big)  # 1M rows: not one more 20 MiB than 10k rows
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss > 0
