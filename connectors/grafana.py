"""Grafana over its HTTP API (grafana-client): connect, map the provisioning files, sync.

``pairstream grafana sync`` puts into a running Grafana what ``grafana/`` provisions from files:
the QuestDB datasource, a folder, every dashboard, the alert rule group, the contact point and
one notification route. Everything is read first and compared with what the files say; only
what differs is written (so a second run writes nothing), and a dry run writes nothing at all.
The user's notification-policy tree is never replaced: the API only takes a whole tree, so the
tree is read, pairstream's one route (matching the rules' ``team=pairstream`` label) is added or
updated in it, and the rest goes back untouched.

Every failure a user can cause or fix (unreachable, 401/403, no QuestDB plugin, a dashboard
provisioned from files, an unknown folder) is a :class:`GrafanaError` whose text is one line
ending with the fix.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union
from urllib.parse import urlsplit

import niquests.exceptions
import yaml
from grafana_client import GrafanaApi
from grafana_client.client import (
    GrafanaClientError,
    GrafanaException,
    GrafanaServerError,
    GrafanaTimeoutError,
    GrafanaUnauthorizedError,
)

from connectors.grafana_errors import GrafanaError
from pairstream.config import parse_duration

ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS = ROOT / "grafana" / "dashboards"
PROVISIONING = ROOT / "grafana" / "provisioning"
PLUGIN = "questdb-questdb-datasource"
DATASOURCE_UID = "pairstream-questdb"
OWN_FOLDER = "pairstream"  # uid and title of the folder sync creates when none is named
PAIR_DASHBOARD = "pairstream-pair"
ROUTE_MATCHER = ["team", "=", "pairstream"]  # the label every pairstream rule carries
_EXACT = frozenset({"labels", "annotations", "object_matchers"})  # compared whole, not as subset

Credential = Union[str, tuple[str, str]]


# ---- connecting ------------------------------------------------------------------------------


def credential_from_env(env: Mapping[str, str] = os.environ) -> Credential:
    """``GRAFANA_TOKEN``, else ``(GRAFANA_USER, GRAFANA_PASSWORD)``: never from a file."""
    token = env.get("GRAFANA_TOKEN")
    if token:
        return token
    user, password = env.get("GRAFANA_USER"), env.get("GRAFANA_PASSWORD")
    if user and password:
        return (user, password)
    raise GrafanaError(
        "no Grafana credentials: set GRAFANA_TOKEN (a service-account token) "
        "or GRAFANA_USER and GRAFANA_PASSWORD in the environment"
    )


def connect(url: str, credential: Credential, timeout: float = 5.0) -> GrafanaApi:
    """A client for ``url`` (TLS always verified); no request is made yet."""
    u = urlsplit(url)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise GrafanaError(f"Grafana URL {url!r} is not http(s)://HOST[:PORT][/PATH]")
    path = u.path.strip("/")
    logging.getLogger("grafana_client").setLevel(logging.WARNING)  # it logs every connect
    return GrafanaApi(
        auth=credential,
        host=u.hostname,
        port=u.port,
        url_path_prefix=f"{path}/" if path else "",
        protocol=u.scheme,
        verify=True,
        timeout=timeout,
    )


def _message(e: GrafanaException) -> str:
    r = e.response
    text = r.get("message", "") if isinstance(r, dict) else str(r or e.message)
    return " ".join(str(text).split())[:200]


def base_url(api: GrafanaApi) -> str:
    return api.client.url[: -len("/api")]


@contextmanager
def calling(api: GrafanaApi, what: str) -> Iterator[None]:
    """Turn grafana-client's and niquests' exceptions into one-line :class:`GrafanaError`."""
    url = base_url(api)
    try:
        yield
    except GrafanaUnauthorizedError:
        raise GrafanaError(
            f"Grafana at {url} rejected the credentials (401) while {what}: set a valid "
            "GRAFANA_TOKEN or GRAFANA_USER/GRAFANA_PASSWORD"
        ) from None
    except GrafanaTimeoutError:
        raise GrafanaError(
            f"Grafana at {url} did not answer within {api.client.timeout:g}s while {what}: "
            "check that it is up (or raise [grafana] timeout)"
        ) from None
    except GrafanaServerError as e:
        raise GrafanaError(
            f"Grafana at {url} failed while {what} ({e.status_code}: {_message(e)}): "
            "try again; Grafana's log says why"
        ) from None
    except GrafanaClientError as e:
        if e.status_code == 403:
            raise GrafanaError(
                f"Grafana at {url} refused {what} (403: {_message(e)}): use a token or user "
                "with the Admin role (datasources and alerting provisioning need it)"
            ) from None
        raise GrafanaError(
            f"Grafana at {url} rejected {what} ({e.status_code}: {_message(e)})"
        ) from None
    except (GrafanaException, niquests.exceptions.ConnectionError, OSError) as e:
        reason = " ".join(str(getattr(e, "message", e)).split())[:120]
        raise GrafanaError(
            f"Grafana at {url} is unreachable ({reason}): check --url or GRAFANA_URL "
            "and that Grafana is running"
        ) from None


def _get(api: GrafanaApi, what: str, fn: Callable[[], Any]) -> Any:
    """``fn()``, or None when Grafana answers 404."""
    with calling(api, what):
        try:
            return fn()
        except GrafanaClientError as e:
            if e.status_code == 404:
                return None
            raise


def check(api: GrafanaApi) -> str:
    """Reachable, credentials accepted, QuestDB plugin installed; Grafana's version."""
    with calling(api, "checking its health"):
        api.client.GET("/health")  # unauthenticated: tells "down" from "bad credentials"
    with calling(api, "reading its settings"):
        info = api.connect() or {}
    with calling(api, "listing plugins"):
        try:
            api.plugin.by_id(PLUGIN)
        except GrafanaClientError as e:
            if e.status_code != 404:
                raise
            raise GrafanaError(
                f"Grafana at {base_url(api)} has no plugin {PLUGIN}: install it "
                f"(grafana cli plugins install {PLUGIN}, or GF_PLUGINS_PREINSTALL_SYNC="
                f"{PLUGIN}) and restart Grafana"
            ) from None
    return str(info.get("version", "?"))


# ---- the provisioning files in the HTTP API's shapes -----------------------------------------


def _yaml(sub: str, name: str) -> dict[str, Any]:
    return yaml.safe_load((PROVISIONING / sub / name).read_text())


def _env(value: Any, env: Mapping[str, str], where: str) -> Any:
    """``$NAME`` / ``${NAME}`` from the environment, as Grafana reads the same files."""
    m = re.fullmatch(r"\$\{?([A-Z_][A-Z0-9_]*)\}?", value) if isinstance(value, str) else None
    if not m:
        return value
    if m.group(1) not in env:
        raise GrafanaError(f"{where}: set {m.group(1)} in the environment")
    return env[m.group(1)]


def api_rule(rule: dict[str, Any], group: dict[str, Any], folder_uid: str = "") -> dict[str, Any]:
    """A file-provisioned rule as the API's ProvisionedAlertRule (folder, group, org added)."""
    return {
        **rule,
        "folderUID": folder_uid or group["folder"],
        "ruleGroup": group["name"],
        "orgID": group["orgId"],
    }


def api_rule_group(group: dict[str, Any], folder_uid: str) -> dict[str, Any]:
    """A file-provisioned group as the API's AlertRuleGroup (interval in seconds)."""
    return {
        "title": group["name"],
        "folderUid": folder_uid,
        "interval": int(parse_duration(group["interval"], "interval").total_seconds()),
        "rules": [api_rule(r, group, folder_uid) for r in group["rules"]],
    }


def api_contact_points(doc: dict[str, Any], env: Mapping[str, str]) -> list[dict[str, Any]]:
    """Each receiver of each file contact point as an API EmbeddedContactPoint."""
    out = []
    for cp in doc["contactPoints"]:
        for r in cp["receivers"]:
            where = f"contact point {cp['name']}"
            settings = {k: _env(v, env, where) for k, v in r.get("settings", {}).items()}
            out.append({**r, "name": cp["name"], "settings": settings})
    return out


def api_route(doc: dict[str, Any]) -> dict[str, Any]:
    """The file's policy tree root as one route that catches pairstream's rules only."""
    (root,) = doc["policies"]
    route = {k: v for k, v in root.items() if k != "orgId"}
    return {**route, "object_matchers": [ROUTE_MATCHER]}


def api_datasource(server: str, port: int, env: Mapping[str, str]) -> dict[str, Any]:
    """The provisioned QuestDB datasource, pointed at ``server:port``, not Grafana's default."""
    (ds,) = _yaml("datasources", "questdb.yaml")["datasources"]
    where = f"datasource {ds['uid']}"
    env = {"QDB_PG_USER": "admin", **env}  # docker-compose's default too
    json_data = {k: _env(v, env, where) for k, v in ds["jsonData"].items()}
    return {
        "uid": ds["uid"],
        "name": ds["name"],
        "type": ds["type"],
        "access": "proxy",
        "isDefault": False,  # someone else's Grafana keeps its own default datasource
        "jsonData": {**json_data, "server": server, "port": port},
    }


def dashboards() -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))]


# ---- comparing -------------------------------------------------------------------------------


def _same(want: Any, have: Any, key: str = "") -> bool:
    """Does ``have`` hold ``want``? Keys Grafana adds (ids, versions, provenance) are ignored."""
    if isinstance(want, dict) and key not in _EXACT:
        return isinstance(have, dict) and all(
            k in have and _same(v, have[k], k) for k, v in want.items()
        )
    if isinstance(want, list) and key not in _EXACT:
        return isinstance(have, list) and len(want) == len(have) and all(map(_same, want, have))
    return want == have


def _changed(want: dict[str, Any], have: dict[str, Any]) -> list[str]:
    return [k for k, v in want.items() if not (k in have and _same(v, have[k], k))]


# ---- the sync --------------------------------------------------------------------------------


@dataclass
class Change:
    """One object: what sync does (or would do) to it."""

    kind: str
    name: str
    action: str  # "create", "update", "unchanged", "skipped"
    detail: str = ""
    apply: Optional[Callable[[], None]] = field(default=None, repr=False)


@dataclass(frozen=True)
class SyncOptions:
    questdb_server: str = "127.0.0.1"
    questdb_port: int = 8812
    folder: str = ""  # an existing folder's uid; "" = create/keep pairstream's own
    policy: bool = True  # add/update pairstream's notification route


def plan(api: GrafanaApi, opts: SyncOptions, env: Mapping[str, str] = os.environ) -> list[Change]:
    """Read everything and compare; nothing is written. ``Change.apply`` writes one object."""
    folder = opts.folder or OWN_FOLDER
    return [
        _plan_folder(api, opts.folder),
        _plan_datasource(api, opts, env),
        *(_plan_dashboard(api, d, folder) for d in dashboards()),
        *_plan_contact_points(api, env),
        *_plan_rule_groups(api, folder),
        _plan_policy(api) if opts.policy else Change(
            "policy", "route team=pairstream", "skipped",
            "left alone: route alerts labelled team=pairstream to pairstream-webhook yourself",
        ),
    ]


def _outcome(kind: str, name: str, have: Any, changed: list[str], write: Callable[[], None],
             created: str = "") -> Change:  # fmt: skip
    """Unchanged, create (``have`` is None) or update naming the keys that differ."""
    if have is None:
        return Change(kind, name, "create", created, write)
    if not changed:
        return Change(kind, name, "unchanged")
    return Change(kind, name, "update", ", ".join(changed), write)


def apply(api: GrafanaApi, changes: list[Change]) -> None:
    for c in changes:
        if c.apply is not None:
            c.apply()


def _plan_folder(api: GrafanaApi, named: str) -> Change:
    uid = named or OWN_FOLDER
    have = _get(api, f"reading folder {uid}", lambda: api.folder.get_folder(uid))
    if have is not None:
        return Change("folder", uid, "unchanged")
    if named:
        raise GrafanaError(
            f"Grafana at {base_url(api)} has no folder with uid {uid!r}: create it, "
            "or leave out --folder (and [grafana] folder) to use pairstream's own folder"
        )

    def create() -> None:
        with calling(api, f"creating folder {uid}"):
            api.folder.create_folder(OWN_FOLDER, uid=uid)

    return Change("folder", uid, "create", apply=create)


def _plan_datasource(api: GrafanaApi, opts: SyncOptions, env: Mapping[str, str]) -> Change:
    want = api_datasource(opts.questdb_server, opts.questdb_port, env)
    uid = want["uid"]
    have = _get(
        api, f"reading datasource {uid}", lambda: api.datasource.get_datasource_by_uid(uid)
    )
    has_password = bool(have and (have.get("secureJsonFields") or {}).get("password"))
    changed = ["new"] if have is None else _changed(want, have)
    if not has_password:
        changed.append("password")
    if not changed:
        return Change("datasource", uid, "unchanged")
    if have is None:
        same_name = _get(
            api,
            f"reading datasource {want['name']!r}",
            lambda: api.datasource.get_datasource_by_name(want["name"]),
        )
        if same_name is not None:
            raise GrafanaError(
                f"Grafana at {base_url(api)} already has a datasource named {want['name']!r} "
                f"(uid {same_name.get('uid')}): rename or delete it, then sync again"
            )
    if have is not None and have.get("readOnly"):
        raise GrafanaError(
            f"datasource {uid} is provisioned from files in Grafana at {base_url(api)} and the "
            "API may not change it: edit that provisioning file, or remove it and sync again"
        )
    body = dict(want)
    if not has_password:
        where = f"datasource {uid} needs QuestDB's PostgreSQL password (QuestDB's default: quest)"
        body["secureJsonData"] = {"password": _env("$QDB_PG_PASSWORD", env, where)}

    def write() -> None:
        with calling(api, f"writing datasource {uid}"):
            if have is None:
                api.datasource.create_datasource(body)
            else:
                api.datasource.update_datasource_by_uid(uid, body)

    if have is None:
        return Change("datasource", uid, "create", f"{opts.questdb_server}:{opts.questdb_port}",
                      write)  # fmt: skip
    return Change("datasource", uid, "update", ", ".join(changed), write)


def _plan_dashboard(api: GrafanaApi, dash: dict[str, Any], folder: str) -> Change:
    uid = dash["uid"]
    have = _get(api, f"reading dashboard {uid}", lambda: api.dashboard.get_dashboard(uid))
    want = {k: v for k, v in dash.items() if k not in ("id", "version")}
    if have is None:
        changed = ["new"]
    else:
        changed = _changed(want, have.get("dashboard", {}))
        if have.get("meta", {}).get("folderUid", "") != folder:
            changed.append("folder")
    if not changed:
        return Change("dashboard", uid, "unchanged")
    body = {
        "dashboard": {**want, "id": None},
        "folderUid": folder,
        "overwrite": True,
        "message": "pairstream grafana sync",
    }

    provisioned = GrafanaError(
        f"dashboard {uid} is provisioned from files in Grafana at {base_url(api)} and the API "
        "may not overwrite it: keep those files (they hold the same dashboards) or remove "
        "their provider, then sync again"
    )
    # Grafana sets meta.provisioned only where the file provider has allowUiUpdates: false,
    # i.e. exactly where a save is refused: say so before anything is written.
    if have is not None and have.get("meta", {}).get("provisioned"):
        raise provisioned

    def write() -> None:
        with calling(api, f"saving dashboard {uid}"):
            try:
                api.dashboard.update_dashboard(body)
            except GrafanaClientError as e:
                if "provisioned" not in _message(e).lower():
                    raise
                raise provisioned from None

    return _outcome("dashboard", uid, have, changed, write)


def _plan_contact_points(api: GrafanaApi, env: Mapping[str, str]) -> list[Change]:
    changes = []
    for want in api_contact_points(_yaml("alerting", "contact-points.yaml"), env):
        uid = want["uid"]
        with calling(api, "reading contact points"):
            found = api.alertingprovisioning.get_contactpoints(name=want["name"]) or []
        have = next((c for c in found if c.get("uid") == uid), None)

        def write(want: dict[str, Any] = want, have: Any = have) -> None:
            with calling(api, f"writing contact point {want['uid']}"):
                if have is None:
                    api.alertingprovisioning.create_contactpoint(want)
                else:
                    api.alertingprovisioning.update_contactpoint(want["uid"], want)

        changed = [] if have is None else _changed(want, have)
        changes.append(_outcome("contact point", uid, have, changed, write))
    return changes


def _plan_rule_groups(api: GrafanaApi, folder: str) -> list[Change]:
    changes = []
    for group in _yaml("alerting", "rules.yaml")["groups"]:
        for rule in group["rules"]:
            labels = rule.get("labels", {})
            if labels.get(ROUTE_MATCHER[0]) != ROUTE_MATCHER[2]:  # the route would miss it
                raise GrafanaError(f"rule {rule['uid']}: needs the label team: pairstream")
        want = api_rule_group(group, folder)
        name = f"{folder}/{want['title']}"
        have = _get(
            api,
            f"reading rule group {name}",
            lambda t=want["title"]: api.alertingprovisioning.get_rule_group(folder, t),
        )

        def write(want: dict[str, Any] = want, name: str = name) -> None:
            with calling(api, f"writing rule group {name}"):
                api.alertingprovisioning.update_rule_group(folder, want["title"], want)

        changed = [] if have is None else _changed(want, have)
        created = f"{len(want['rules'])} rules"
        changes.append(_outcome("rule group", name, have, changed, write, created))
    return changes


def _plan_policy(api: GrafanaApi) -> Change:
    want = api_route(_yaml("alerting", "policies.yaml"))
    name = "route team=pairstream"
    with calling(api, "reading the notification policy tree"):
        tree = api.alertingprovisioning.get_notification_policy_tree() or {}
    routes = list(tree.get("routes") or [])
    at = next((i for i, r in enumerate(routes) if r.get("object_matchers") == [ROUTE_MATCHER]), -1)
    if at >= 0 and not _changed(want, routes[at]):
        return Change("policy", name, "unchanged")
    if at >= 0:
        routes[at] = want
    else:
        routes.insert(0, want)  # first, so the user's catch-all routes do not take our alerts
    new_tree = {**tree, "routes": routes}

    def write() -> None:
        with calling(api, "writing the notification policy tree"):
            # keeps the tree editable in Grafana's UI (no "provisioned" lock on someone's tree)
            api.alertingprovisioning.set_notification_policy_tree(
                new_tree, disable_provenance=True
            )

    action = "update" if at >= 0 else "create"
    return Change("policy", name, action, "the rest of the tree untouched", write)
