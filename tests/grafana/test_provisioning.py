"""Provisioning files, alert rules and docker-compose: parse, resolve, pinned, local-only."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
import pytest
import yaml

from connectors.grafana import api_route, api_rule, api_rule_group
from connectors.questdb_server import VERSION as QUESTDB_VERSION
from tests.grafana import walk

REPO = walk.REPO
SCHEMAS = Path(__file__).resolve().parent / "schemas"
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
DS_UID = "pairstream-questdb"


def alerting_validator(definition: str) -> jsonschema.Draft7Validator:
    schema = json.loads((SCHEMAS / "alerting.jsonschema.json").read_text())
    return jsonschema.Draft7Validator({**schema, "$ref": f"#/definitions/{definition}"})


def _errors(validator, doc) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]


# ---- datasource and dashboard provider


def test_datasource_is_the_questdb_plugin_with_a_fixed_uid():
    (ds,) = walk.yaml_files("datasources")["questdb.yaml"]["datasources"]
    assert ds["uid"] == DS_UID and ds["type"] == "questdb-questdb-datasource"
    j = ds["jsonData"]
    assert j["server"] == "questdb" and j["port"] == 8812 and j["tlsMode"] == "disable"
    assert j["username"] == "$QDB_PG_USER"
    assert ds["secureJsonData"]["password"] == "$QDB_PG_PASSWORD"


def test_dashboard_provider_points_at_the_mounted_dashboards():
    (prov,) = walk.yaml_files("dashboards")["pairstream.yaml"]["providers"]
    mounts = dict(v.split(":")[:2][::-1] for v in COMPOSE["services"]["grafana"]["volumes"])
    src = mounts[prov["options"]["path"]]
    assert (REPO / src).resolve() == walk.DASHBOARDS.resolve()
    assert list(walk.DASHBOARDS.glob("*.json"))


# ---- alerting


def test_rule_files_follow_the_file_provisioning_format():
    rule_schema = alerting_validator("Rule")
    uids = set()
    for fname, group, rule in walk.alert_rules():
        assert group["orgId"] == 1 and group["name"] and group["folder"], fname
        assert re.fullmatch(r"\d+[smh]", group["interval"]), fname
        for key in ("uid", "title", "condition", "data", "noDataState", "execErrState", "for"):
            assert key in rule, f"{fname}: rule lacks {key}"
        uids.add(rule["uid"])
        refs = [d["refId"] for d in rule["data"]]
        assert rule["condition"] in refs
        for d in rule["data"]:
            assert set(d) == {"refId", "relativeTimeRange", "datasourceUid", "model"}
            assert d["datasourceUid"] in (DS_UID, "__expr__")
            assert d["model"]["refId"] == d["refId"]
            assert d["model"]["datasource"]["uid"] == d["datasourceUid"]
            if d["datasourceUid"] == "__expr__":
                assert d["model"]["expression"] in refs
            else:
                assert d["relativeTimeRange"]["from"] > d["relativeTimeRange"]["to"] >= 0
        # labels and titles are env-interpolated by Grafana: a '$' would be eaten
        assert "$" not in rule["title"] + "".join(rule.get("labels", {}).values())
        api = api_rule(rule, group)  # the mapping `pairstream grafana sync` sends
        assert not _errors(rule_schema, api), _errors(rule_schema, api)
    assert len(uids) == 3
    (group,) = walk.yaml_files("alerting")["rules.yaml"]["groups"]
    api_group = api_rule_group(group, "some-folder")
    assert api_group["interval"] == 30 and api_group["folderUid"] == "some-folder"
    assert not _errors(alerting_validator("RuleGroup"), api_group)


def test_the_issue_s_three_rules():
    rules = {r["uid"]: r for _f, _g, r in walk.alert_rules()}
    z, adf, feed = (rules[f"pairstream-{k}"] for k in ("z-extreme", "coint-lost", "feed-stalled"))

    def threshold(rule):
        (c,) = [d for d in rule["data"] if d["refId"] == rule["condition"]]
        return c["model"]["conditions"][0]["evaluator"]

    assert threshold(z) == {"type": "gt", "params": [2]} and z["for"] == "1m"
    assert "tf = '1m'" in z["data"][0]["model"]["rawSql"]
    assert threshold(adf) == {"type": "gt", "params": [0.1]} and adf["for"] == "10m"
    assert threshold(feed) == {"type": "gt", "params": [30]}
    assert feed["noDataState"] == "Alerting"


def test_contact_point_and_policy():
    cps = walk.yaml_files("alerting")["contact-points.yaml"]
    assert cps["apiVersion"] == 1
    (cp,) = cps["contactPoints"]
    (recv,) = cp["receivers"]
    assert recv["type"] == "webhook" and recv["settings"]["url"] == "$ALERT_WEBHOOK_URL"
    api = {"name": cp["name"], **recv}
    assert not _errors(alerting_validator("ContactPoint"), api)
    pols = walk.yaml_files("alerting")["policies.yaml"]
    assert pols["apiVersion"] == 1
    (pol,) = pols["policies"]
    tree = {k: v for k, v in pol.items() if k != "orgId"}
    assert not _errors(alerting_validator("NotificationPolicy"), tree)

    def receivers(node):
        yield node.get("receiver")
        for r in node.get("routes", []):
            yield from receivers(r)

    assert {r for r in receivers(tree) if r} == {cp["name"]}
    # what sync adds to someone's tree: the same policy as one route for pairstream's label
    route = api_route(pols)
    assert not _errors(alerting_validator("NotificationPolicy"), route)
    assert route["object_matchers"] == [["team", "=", "pairstream"]]
    assert {k: v for k, v in route.items() if k != "object_matchers"} == tree


def test_every_provisioning_file_declares_api_version_1():
    for sub in ("datasources", "dashboards", "alerting"):
        files = walk.yaml_files(sub)
        assert files, sub
        for name, doc in files.items():
            assert doc["apiVersion"] == 1, f"{sub}/{name}"


# ---- docker compose


def _host_ports(service):
    return [str(p) for p in service.get("ports", [])]


def test_images_are_pinned():
    for name, svc in COMPOSE["services"].items():
        if "build" in svc:
            assert (REPO / svc["build"]["context"] / svc["build"]["dockerfile"]).exists()
            continue
        image = svc["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: {image}"
    assert COMPOSE["services"]["questdb"]["image"] == f"questdb/questdb:{QUESTDB_VERSION}"
    gf = COMPOSE["services"]["grafana"]
    major, minor = map(int, gf["image"].split(":")[1].split(".")[:2])
    assert (major, minor) >= (12, 3)  # the plugin needs Grafana ≥ 12.3 from 0.1.7
    assert re.fullmatch(
        r"questdb-questdb-datasource@\d+\.\d+\.\d+", gf["environment"]["GF_PLUGINS_PREINSTALL_SYNC"]
    )


def test_ports_are_bound_to_loopback_only():
    published = 0
    for name, svc in COMPOSE["services"].items():
        for p in _host_ports(svc):
            assert p.startswith("127.0.0.1:"), f"{name}: {p} is reachable from other machines"
            published += 1
    assert published >= 3


def test_health_checks_depends_on_and_volumes():
    s = COMPOSE["services"]
    for name in ("questdb", "grafana"):
        assert s[name]["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name
    for name in ("flow", "grafana"):
        assert s[name]["depends_on"]["questdb"]["condition"] == "service_healthy"
    named = set(COMPOSE["volumes"])
    assert "questdb-data:/var/lib/questdb" in s["questdb"]["volumes"]
    assert "grafana-data:/var/lib/grafana" in s["grafana"]["volumes"]
    assert "flow-recovery:/recovery" in s["flow"]["volumes"]
    used = {
        v.split(":")[0]
        for svc in s.values()
        for v in svc.get("volumes", [])
        if not v.startswith(".")
    }
    assert used <= named


def test_bind_mounts_exist():
    for name, svc in COMPOSE["services"].items():
        for v in svc.get("volumes", []):
            src = v.split(":")[0]
            if src.startswith("."):
                assert (REPO / src).exists(), f"{name}: {src}"


def test_grafana_environment():
    env = COMPOSE["services"]["grafana"]["environment"]
    assert env["GF_DASHBOARDS_MIN_REFRESH_INTERVAL"] == "1s"
    assert env["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GF_ADMIN_PASSWORD:?")
    home = env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (walk.DASHBOARDS / Path(home).name).exists()
    # every $VAR the provisioning files read is passed into the container
    text = "".join(
        line.split("#")[0] + "\n"
        for p in walk.PROVISIONING.rglob("*.yaml")
        for line in p.read_text().splitlines()
    )
    wanted = set(re.findall(r"\$([A-Z][A-Z0-9_]+)", text))
    assert wanted and wanted <= set(env)


def test_env_example_defines_every_required_variable():
    compose_text = (REPO / "docker-compose.yml").read_text()
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", compose_text))
    example = dict(
        line.split("=", 1)
        for line in (REPO / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert required and required <= set(example)
    assert "ALERT_WEBHOOK_URL" in example


def test_flow_service_and_dockerfile():
    flow = COMPOSE["services"]["flow"]
    assert flow["environment"]["QDB_CLIENT_CONF"] == "http::addr=questdb:9000;"
    df = (REPO / "Dockerfile").read_text()
    assert df.startswith("# ") and "FROM python:3.11-slim" in df
    assert "RUN pip install ." in df
    # the project's own command initialises the recovery dir once, then runs the flow with it
    assert 'CMD ["pairstream", "run", "--recovery", "/recovery"]' in df
    copied = set()
    for line in df.splitlines():
        if line.startswith("COPY "):
            for src in line.split()[1:-1]:
                assert (REPO / src).exists() or src in ("README.md",), src
                copied.add(src)
    # every package pyproject installs is in the image
    packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    for pattern in packages["packages"]["find"]["include"]:
        assert pattern.rstrip("*") in copied, pattern
    ignored = (REPO / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".env" in ignored


@pytest.mark.parametrize(
    "path",
    [
        "docker-compose.yml",
        *[
            str(p.relative_to(REPO))
            for p in sorted((REPO / "grafana" / "provisioning").rglob("*.yaml"))
        ],
    ],
)
def test_yaml_parses(path):
    assert yaml.safe_load((REPO / path).read_text())
