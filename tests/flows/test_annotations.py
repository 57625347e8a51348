"""``[grafana] annotations = true``: the flow's alert events on Grafana, never in its way.

The 7-day kline replay (config/week.toml and its alert rules) runs into the session's real
QuestDB with the stand-in Grafana: one annotation per row of the ``alerts`` table, same time,
tags and text. With the stand-in stalled (it accepts connections and never answers) the same
replay still finishes, and every event it could not post is counted in the summary log line.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest

from connectors.grafana_annotations import GrafanaAnnotationSink
from connectors.questdb_sink import drop_tables
from pairstream.records import AlertEvent
from tests.conftest import REPO, run_flow
from tests.fakes.grafana import FakeGrafana

KLINES = REPO / "data" / "klines" / "futures-um-klines-1m-*-2024-07-01_2024-07-07.csv"
SUMMARY = re.compile(
    r"grafana annotations: (\d+) posted, (\d+) failed, (\d+) dropped "
    r"\((\d+) queue full, (\d+) unsent at exit\)"
)


def week_config(path: Path, queue: int = 1000) -> Path:
    text = (REPO / "config" / "week.toml").read_text()
    text = re.sub(r'^paths = \[.*\]$', f'paths = ["{KLINES}"]', text, flags=re.M)
    path.write_text(text + f"\n[grafana]\nannotations = true\nannotation_queue = {queue}\n")
    return path


def alert_rows(questdb) -> list[dict]:
    return questdb.http.query(
        "SELECT ts, rule_id, pair, tf, severity, message FROM alerts ORDER BY ts, rule_id"
    )


def _ms(ts: str) -> int:
    return int(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000)


def replay(questdb, config: Path, grafana: FakeGrafana) -> tuple[int, ...]:
    drop_tables(questdb.http)
    env = {"GRAFANA_URL": grafana.url, "GRAFANA_TOKEN": "glsa_admin"}
    proc = run_flow(questdb, config, env=env)
    (summary,) = SUMMARY.findall(proc.stderr)
    return tuple(map(int, summary))


def test_one_annotation_per_alert_row(questdb, tmp_path):
    with FakeGrafana() as grafana:
        counts = replay(questdb, week_config(tmp_path / "week.toml"), grafana)
        rows = alert_rows(questdb)
        posted = list(grafana.annotations)
    assert len(rows) > 100  # the week fires every rule, both ways
    assert counts == (len(rows), 0, 0, 0, 0)
    tags = ("rule_id", "pair", "tf", "severity")
    want = Counter(
        (_ms(r["ts"]), ("pairstream", *(r[k] for k in tags)), r["message"]) for r in rows
    )
    got = Counter((a["time"], tuple(a["tags"]), a["text"]) for a in posted)
    assert got == want
    assert {a["dashboardUID"] for a in posted} == {"pairstream-pair"}
    assert all(a["timeEnd"] == a["time"] for a in posted)


def test_a_stalled_grafana_neither_stops_the_flow_nor_loses_count(questdb, tmp_path):
    with FakeGrafana() as grafana:
        grafana.faults.stall = True
        counts = replay(questdb, week_config(tmp_path / "week.toml", queue=8), grafana)
        assert grafana.annotations == []
    rows = alert_rows(questdb)
    posted, failed, dropped, full, unsent = counts
    assert len(rows) > 100  # the flow wrote every alert all the same
    assert posted == 0 and failed + dropped == len(rows) and full + unsent == dropped
    assert full >= len(rows) - 8 - 1 - failed  # the bounded queue overflowed, counted
    assert unsent <= 8 + 1  # what was queued or in flight at the end


def _event(i: int) -> AlertEvent:
    return AlertEvent("r", "BTCUSDT/ETHUSDT", "1m", datetime.fromtimestamp(60 * i).astimezone(),
                      "FIRING", "info", "x > 1", 2.0, f"event {i}")  # fmt: skip


@pytest.mark.parametrize("fault", ["5xx", "down"])
def test_failures_are_counted_not_retried(fault):
    grafana = FakeGrafana().start()
    if fault == "5xx":
        grafana.faults.status = 503
        url = grafana.url
    else:
        url = grafana.url
        grafana.stop()
    part = GrafanaAnnotationSink(url, "glsa_admin", queue_size=100, timeout=2).build("s", 0, 1)
    part.write_batch([_event(i) for i in range(20)])
    part.close()
    grafana.stop()
    assert (part.posted, part.failed, part.dropped_full, part.dropped_exit) == (0, 20, 0, 0)
    if fault == "5xx":
        assert len(grafana.requests) == 20  # one attempt per event
