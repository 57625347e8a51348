"""``pairstream grafana sync`` against the local stand-in Grafana (tests/fakes/grafana.py).

A first sync creates the datasource, folder, dashboards, rule group, contact point and one
notification route; a second writes nothing; ``--dry-run`` writes nothing; a changed object is
the only one written; someone's own policy tree keeps every route; each user-fixable failure is
one line on stderr (exit 2) and writes nothing.
"""

from __future__ import annotations

import copy
import json

import pytest
import yaml

from connectors.grafana import (
    DASHBOARDS,
    PROVISIONING,
    api_route,
    api_rule,
)
from connectors.questdb_server import free_port
from flows.cli import main
from tests.fakes.grafana import FakeGrafana

WEBHOOK = "http://127.0.0.1:9/pairstream-hook"
FILES = {p.stem: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}
# datasource, folder, each dashboard, rule group, contact point, notification route
OBJECTS = 5 + len(FILES)
RULES = yaml.safe_load((PROVISIONING / "alerting" / "rules.yaml").read_text())
POLICIES = yaml.safe_load((PROVISIONING / "alerting" / "policies.yaml").read_text())


@pytest.fixture
def grafana():
    with FakeGrafana() as g:
        yield g


@pytest.fixture
def env(monkeypatch, tmp_path):
    for k in ("GRAFANA_URL", "GRAFANA_USER", "GRAFANA_PASSWORD", "QDB_CLIENT_CONF", "QDB_PG_USER"):
        monkeypatch.delenv(k, raising=False)
    config = tmp_path / "pairstream.toml"
    config.write_text('[questdb]\nconf = "http::addr=127.0.0.1:9000;"\n[grafana]\ntimeout = "1s"\n')
    monkeypatch.setenv("PAIRSTREAM_CONFIG", str(config))
    monkeypatch.setenv("GRAFANA_TOKEN", "glsa_admin")
    monkeypatch.setenv("QDB_PG_PASSWORD", "quest")
    monkeypatch.setenv("ALERT_WEBHOOK_URL", WEBHOOK)
    return monkeypatch


def sync(capsys, url: str, *args: str) -> tuple[int, str, str]:
    try:
        code = main(["grafana", "sync", "--url", url, *args])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def _no_ids(d: dict) -> dict:
    return {k: v for k, v in d.items() if k not in ("id", "version")}


def test_a_sync_creates_everything_and_a_second_writes_nothing(grafana, env, capsys):
    code, out, err = sync(capsys, grafana.url)
    assert code == 0, err
    assert out.count("created") == OBJECTS and f"synced: {OBJECTS} change(s) written" in out

    ds = grafana.datasources["pairstream-questdb"]
    assert ds["type"] == "questdb-questdb-datasource" and ds["isDefault"] is False
    assert ds["jsonData"]["server"] == "127.0.0.1" and ds["jsonData"]["port"] == 8812
    assert ds["jsonData"]["username"] == "admin" and ds["jsonData"]["tlsMode"] == "disable"
    assert grafana.secure["pairstream-questdb"] == {"password": "quest"}
    assert grafana.folders["pairstream"]["title"] == "pairstream"
    assert set(grafana.dashboards) == {d["uid"] for d in FILES.values()}
    for dash in FILES.values():
        stored = grafana.dashboards[dash["uid"]]
        assert _no_ids(stored["dashboard"]) == _no_ids(dash)  # the file, exactly
        assert stored["folderUid"] == "pairstream"
    (group,) = RULES["groups"]
    stored = grafana.rule_groups[("pairstream", "pairstream")]
    assert stored["interval"] == 30
    wanted = [api_rule(r, group, "pairstream") for r in group["rules"]]
    assert [{k: got[k] for k in want} for got, want in zip(stored["rules"], wanted)] == wanted
    assert len(stored["rules"]) == len(wanted) == 3
    (cp,) = grafana.contact_points
    assert cp["uid"] == "pairstream-webhook" and cp["settings"]["url"] == WEBHOOK
    tree = grafana.policy_tree
    assert tree["receiver"] == "grafana-default-email"  # the root is the user's, untouched
    assert tree["routes"] == [api_route(POLICIES)]
    (put,) = [r for r in grafana.writes if r.path.endswith("/policies")]
    assert put.headers.get("X-Disable-Provenance") == "true"  # the tree stays editable in the UI
    assert len(grafana.writes) == OBJECTS

    code, out, err = sync(capsys, grafana.url)
    assert code == 0, err
    assert out.count("unchanged") == OBJECTS and "nothing to change" in out
    assert len(grafana.writes) == OBJECTS  # the second run only read


def test_dry_run_writes_nothing_and_only_changed_objects_are_written(grafana, env, capsys):
    code, out, err = sync(capsys, grafana.url, "--dry-run")
    assert code == 0, err
    assert out.count("would create") == OBJECTS
    assert f"dry run: {OBJECTS} change(s) not written" in out
    assert grafana.writes == [] and not grafana.dashboards

    assert sync(capsys, grafana.url)[0] == 0
    before = len(grafana.writes)
    # someone edits a dashboard in Grafana and reorders the pairstream route's grouping
    grafana.dashboards["pairstream-pair"]["dashboard"]["title"] = "edited by hand"
    grafana.policy_tree["routes"][0]["group_by"] = ["alertname"]
    code, out, err = sync(capsys, grafana.url, "--dry-run")
    assert code == 0, err
    assert "pairstream-pair                  would update: title" in out
    assert "route team=pairstream            would update" in out
    assert out.count("unchanged") == OBJECTS - 2 and len(grafana.writes) == before

    code, out, err = sync(capsys, grafana.url)
    assert code == 0, err
    assert [r.path for r in grafana.writes[before:]] == [
        "/api/dashboards/db",
        "/api/v1/provisioning/policies",
    ]
    assert grafana.dashboards["pairstream-pair"]["dashboard"]["title"] == FILES["pair-monitor"][
        "title"
    ]
    assert grafana.policy_tree["routes"] == [api_route(POLICIES)]


def test_someone_elses_policy_tree_keeps_every_route(grafana, env, capsys):
    grafana.contact_points.append(
        {"uid": "pager", "name": "ops-pager", "type": "webhook", "settings": {"url": "http://x"}}
    )
    theirs = {
        "receiver": "ops-pager",
        "group_by": ["alertname"],
        "routes": [
            {"receiver": "ops-pager", "object_matchers": [["team", "=", "ops"]]},
            {"receiver": "grafana-default-email", "object_matchers": [["env", "=", "dev"]]},
        ],
    }
    grafana.policy_tree = copy.deepcopy(theirs)
    assert sync(capsys, grafana.url)[0] == 0
    assert grafana.policy_tree == {**theirs, "routes": [api_route(POLICIES), *theirs["routes"]]}
    assert sync(capsys, grafana.url)[0] == 0
    assert grafana.policy_tree["routes"][1:] == theirs["routes"]  # added once, not twice


def test_no_policy_leaves_the_tree_alone_and_says_so(grafana, env, capsys):
    code, out, err = sync(capsys, grafana.url, "--no-policy")
    assert code == 0, err
    assert "left alone: route alerts labelled team=pairstream to pairstream-webhook" in out
    assert not [r for r in grafana.requests if r.path.endswith("/policies")]
    assert "routes" not in grafana.policy_tree


def test_into_an_existing_folder_with_basic_auth(grafana, env, capsys):
    env.delenv("GRAFANA_TOKEN")
    env.setenv("GRAFANA_USER", "admin")
    env.setenv("GRAFANA_PASSWORD", "s3cret")
    grafana.folders["team-x"] = grafana._folder("team-x", "Team X")
    code, out, err = sync(capsys, grafana.url, "--folder", "team-x", "--questdb-server", "qdb.lan")
    assert code == 0, err
    assert set(grafana.folders) == {"team-x"}
    assert {d["folderUid"] for d in grafana.dashboards.values()} == {"team-x"}
    assert list(grafana.rule_groups) == [("team-x", "pairstream")]
    assert grafana.datasources["pairstream-questdb"]["jsonData"]["server"] == "qdb.lan"


def _provisioned(g: FakeGrafana) -> None:
    g.provision_dashboard({**FILES["pair-monitor"], "title": "older file"}, "pairstream")


def _name_taken(g: FakeGrafana) -> None:
    g.datasources["other"] = {"id": 1, "uid": "other", "name": "QuestDB", "type": "postgres"}


def _read_only(g: FakeGrafana) -> None:
    g.datasources["pairstream-questdb"] = {
        "id": 1, "uid": "pairstream-questdb", "name": "QuestDB", "readOnly": True,
        "type": "questdb-questdb-datasource", "jsonData": {"server": "questdb", "port": 8812},
    }  # fmt: skip
    g.secure["pairstream-questdb"] = {"password": "x"}


ERRORS = {
    "unreachable": (None, {}, (), "is unreachable", "check --url or GRAFANA_URL"),
    "bad token": (None, {"GRAFANA_TOKEN": "nope"}, (), "rejected the credentials (401)",
                  "set a valid GRAFANA_TOKEN"),
    "no credentials": (None, {"GRAFANA_TOKEN": None}, (), "no Grafana credentials",
                       "set GRAFANA_TOKEN"),
    "viewer token": (None, {"GRAFANA_TOKEN": "glsa_viewer"}, (), "(403: You'll need",
                     "with the Admin role"),
    "no plugin": (lambda g: setattr(g, "plugins", ()), {}, (),
                  "has no plugin questdb-questdb-datasource", "grafana cli plugins install"),
    "provisioned dashboard": (_provisioned, {}, (), "dashboard pairstream-pair is provisioned",
                              "remove their provider"),
    "unknown folder": (None, {}, ("--folder", "nope"), "has no folder with uid 'nope'",
                       "leave out --folder"),
    "5xx": (lambda g: setattr(g.faults, "status", 503), {}, (), "(503: fault on demand)",
            "try again"),
    "stalled": (lambda g: setattr(g.faults, "stall", True), {}, (), "did not answer within 1s",
                "check that it is up"),
    "no webhook": (None, {"ALERT_WEBHOOK_URL": None}, (), "contact point pairstream-webhook",
                   "set ALERT_WEBHOOK_URL"),
    "no password": (None, {"QDB_PG_PASSWORD": None}, (), "PostgreSQL password",
                    "set QDB_PG_PASSWORD"),
    "name taken": (_name_taken, {}, (), "already has a datasource named 'QuestDB' (uid other)",
                   "rename or delete it"),
    "read-only datasource": (_read_only, {}, (), "datasource pairstream-questdb is provisioned",
                             "edit that provisioning file"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(ERRORS))
def test_each_error_is_one_line_with_the_fix_and_writes_nothing(grafana, env, capsys, case):
    setup, env_changes, args, what, fix = ERRORS[case]
    if setup is not None:
        setup(grafana)
    for k, v in env_changes.items():
        if v is None:
            env.delenv(k, raising=False)
        else:
            env.setenv(k, v)
    url = f"http://127.0.0.1:{free_port()}" if case == "unreachable" else grafana.url
    code, out, err = sync(capsys, url, *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pairstream: error: "), err
    assert what in lines[0] and fix in lines[0], lines[0]
    assert grafana.writes == []


def test_a_url_without_credentials_in_the_config_file(env, capsys, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[grafana]\nurl = "http://admin:admin@grafana:3000"\n')
    env.setenv("PAIRSTREAM_CONFIG", str(bad))
    with pytest.raises(SystemExit) as e:
        main(["grafana", "sync"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pairstream: error: grafana.url: must not hold credentials")
    bad.write_text("[grafana]\nannotation = true\n")
    with pytest.raises(SystemExit):
        main(["grafana", "sync"])
    assert "grafana.annotation: unknown key" in capsys.readouterr().err
