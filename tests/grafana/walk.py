"""Find every query Grafana will run from the files under ``grafana/``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "grafana"
DASHBOARDS = GRAFANA / "dashboards"
PROVISIONING = GRAFANA / "provisioning"


@dataclass(frozen=True)
class Query:
    """One SQL query: where it lives and what the consumer needs from its result."""

    where: str  # "pair-monitor.json › panel 'Spread' › A"
    kind: str  # panel type, "variable", "annotation" or "alert"
    sql: str
    fmt: int
    panel: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    relative: tuple[int, int] = (0, 0)  # alert rules: relativeTimeRange (from, to) in seconds
    interval_ms: int = 0  # alert rules: model.intervalMs


def dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def panels(container: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those inside (collapsed) rows."""
    for p in container.get("panels", []):
        yield p
        yield from panels(p)


def dashboard_queries(name: str, dash: dict[str, Any]) -> Iterator[Query]:
    for p in panels(dash):
        for t in p.get("targets", []):
            yield Query(
                f"{name} › {p['type']} '{p.get('title')}' › {t['refId']}",
                p["type"],
                t["rawSql"],
                t["format"],
                p,
            )
    for v in dash.get("templating", {}).get("list", []):
        if v["type"] == "query":
            yield Query(f"{name} › variable ${v['name']}", "variable", v["query"], 1)
    for a in dash.get("annotations", {}).get("list", []):
        if "rawSql" in a.get("target", {}):
            yield Query(
                f"{name} › annotation '{a['name']}'",
                "annotation",
                a["target"]["rawSql"],
                a["target"]["format"],
            )


def yaml_files(sub: str) -> dict[str, Any]:
    return {
        p.name: yaml.safe_load(p.read_text()) for p in sorted((PROVISIONING / sub).glob("*.y*ml"))
    }


def alert_rules() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    for fname, doc in yaml_files("alerting").items():
        for g in doc.get("groups", []):
            for r in g["rules"]:
                yield fname, g, r


def alert_queries() -> Iterator[Query]:
    for fname, _g, r in alert_rules():
        for d in r["data"]:
            if d["datasourceUid"] == "__expr__":
                continue
            m = d["model"]
            rel = d["relativeTimeRange"]
            yield Query(
                f"{fname} › rule '{r['title']}' › {d['refId']}",
                "alert",
                m["rawSql"],
                m["format"],
                relative=(rel["from"], rel["to"]),
                interval_ms=m.get("intervalMs", 1000),
            )


def variable_values(dash: dict[str, Any]) -> dict[str, list[str]]:
    """Custom variables: their options. Query variables: filled in by the caller."""
    out: dict[str, list[str]] = {}
    for v in dash.get("templating", {}).get("list", []):
        if v["type"] == "custom":
            out[v["name"]] = [o["value"] for o in v["options"]]
    return out
