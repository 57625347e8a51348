"""Dashboard JSON: generated, schema-valid, wired to the provisioned datasource, sampled."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest

from grafana import generate
from tests.grafana import walk

SCHEMAS = Path(__file__).resolve().parent / "schemas"
DASHBOARDS = walk.dashboards()


def dashboard_validator() -> jsonschema.Draft7Validator:
    """The shared schema with its two generator artifacts relaxed (README.md names them):
    ``MatcherConfig.options`` and ``DynamicConfigValue.value`` are typed ``object``, but
    Grafana (and the SDK's own Go/TS types) take any value, e.g. a column name."""
    schema = json.loads((SCHEMAS / "dashboard.jsonschema.json").read_text())
    relaxed = copy.deepcopy(schema)
    relaxed["definitions"]["MatcherConfig"]["properties"]["options"] = {}
    relaxed["definitions"]["DynamicConfigValue"]["properties"]["value"] = {}
    return jsonschema.Draft7Validator(relaxed)


def test_schemas_are_byte_copies_of_the_shared_ones():
    shared = walk.REPO.parent / "shared" / "schemas" / "grafana"
    if not shared.exists():
        pytest.skip("no ../shared checkout next to the repository")
    for name in ("dashboard.jsonschema.json", "alerting.jsonschema.json"):
        assert (SCHEMAS / name).read_bytes() == (shared / name).read_bytes()


def test_committed_json_equals_generator_output():
    rendered = generate.render()
    assert sorted(rendered) == sorted(DASHBOARDS)
    for name, text in rendered.items():
        assert (generate.OUT / name).read_text() == text, f"{name}: run python -m grafana.generate"


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_dashboard_validates_against_schema(name):
    errors = sorted(dashboard_validator().iter_errors(DASHBOARDS[name]), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:10])


def test_schema_rejects_a_broken_dashboard():
    bad = copy.deepcopy(DASHBOARDS["pair-monitor.json"])
    bad["panels"][1]["datasource"] = {
        "type": generate.DS_TYPE,
        "uid": generate.DS_UID,
        "default": True,
    }
    assert list(dashboard_validator().iter_errors(bad))


def _refs(node, path="$"):
    if isinstance(node, dict):
        if isinstance(node.get("datasource"), dict):
            yield path, node["datasource"]
        for k, v in node.items():
            yield from _refs(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _refs(v, f"{path}[{i}]")


def test_every_datasource_reference_resolves_to_the_provisioned_uid():
    (ds,) = walk.yaml_files("datasources")["questdb.yaml"]["datasources"]
    seen = 0
    for name, dash in DASHBOARDS.items():
        for path, ref in _refs(dash):
            if ref.get("type") == "grafana":  # the built-in annotations source
                continue
            assert ref == {"type": ds["type"], "uid": ds["uid"]}, f"{name} {path}: {ref}"
            seen += 1
    assert seen > 30


def test_panels_have_unique_ids_and_fit_the_grid():
    for name, dash in DASHBOARDS.items():
        ids = [p["id"] for p in walk.panels(dash)]
        assert len(ids) == len(set(ids)), name
        for p in walk.panels(dash):
            g = p["gridPos"]
            assert 0 <= g["x"] and g["x"] + g["w"] <= 24, f"{name} {p['title']}"


def test_queries_filter_by_time_and_sample_in_questdb():
    for name, dash in DASHBOARDS.items():
        for q in walk.dashboard_queries(name, dash):
            if q.kind == "variable":
                continue
            assert "$__timeFilter(" in q.sql or "$__fromTime" in q.sql, q.where
            if q.kind in ("timeseries", "candlestick"):
                assert "SAMPLE BY $__sampleByInterval" in q.sql, q.where
                assert q.fmt == generate.TIMESERIES, q.where
            else:
                assert q.fmt == generate.TABLE, q.where


def test_pair_monitor_has_every_view_the_issue_asks_for():
    dash = DASHBOARDS["pair-monitor.json"]
    titles = " | ".join(p.get("title", "") for p in walk.panels(dash)).lower()
    for word in (
        "leg y",
        "leg x",
        "spread",
        "±2σ",
        "z-score",
        "kalman",
        "correlation",
        "adf",
        "half-life",
        "pnl",
        "signal",
        "alert",
        "latest prices",
        "ticks",
        "estimators",
    ):
        assert word in titles, word
    assert [v["name"] for v in dash["templating"]["list"]] == ["pair", "tf", "preset"]
    z = next(p for p in walk.panels(dash) if p.get("title", "").startswith("z-score"))
    steps = {s["value"] for s in z["fieldConfig"]["defaults"]["thresholds"]["steps"]}
    assert {-2.0, -0.5, 0.5, 2.0} <= steps  # entry/exit from pairstream.toml [signals]
    adf = next(p for p in walk.panels(dash) if p.get("title", "").startswith("ADF"))
    assert 0.05 in {s["value"] for s in adf["fieldConfig"]["defaults"]["thresholds"]["steps"]}
