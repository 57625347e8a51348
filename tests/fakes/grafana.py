"""FakeGrafana: a loopback stand-in for the parts of Grafana's HTTP API that pairstream calls.

It answers what grafana-client sends (``/api/health``, ``/api/frontend/settings``,
``/api/plugins``, datasources by uid, folders, ``/api/dashboards/db`` and ``/uid``, the alerting
provisioning API: rule groups, contact points, policies; annotations) with the request and
response shapes of Grafana's HTTP API documentation, and rejects what Grafana rejects:

* no or wrong credentials → 401; a role too low for the call → 403 (datasources and alerting
  provisioning need Admin, dashboards/folders/annotations Editor);
* a dashboard saved into a folder that does not exist → 400 ``folder not found``; a dashboard
  provisioned from files (``provision_dashboard``, allowUiUpdates false) → 400 ``Cannot save
  provisioned dashboard``; a read-only (file-provisioned) datasource → 403;
* a datasource whose name is taken → 409; a policy tree naming an unknown receiver → 400;
  an annotation without text → 400; alerting bodies that do not validate against the HTTP API
  JSON schema in ``tests/grafana/schemas`` → 400.

Like Grafana it accepts a datasource whose plugin is not installed (the plugin list says so),
keeps secure fields it is not sent again, and caps ``GET /api/annotations`` at ``limit`` (100).
Faults on demand: ``faults.stall`` holds every request but ``/api/health`` until the fake stops;
``faults.status`` answers every such request with that status (e.g. 503).
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Optional
from urllib.parse import parse_qs, unquote, urlsplit

import jsonschema

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[1] / "grafana" / "schemas" / "alerting.jsonschema.json")
    .read_text()
)
ROLES = {"Viewer": 0, "Editor": 1, "Admin": 2}
DEFAULT_TREE = {"receiver": "grafana-default-email", "group_by": ["grafana_folder", "alertname"]}


def _validator(definition: str) -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator({**SCHEMA, "$ref": f"#/definitions/{definition}"})


VALIDATE = {d: _validator(d) for d in ("RuleGroup", "ContactPoint", "NotificationPolicy")}


@dataclass
class Faults:
    stall: bool = False  # hold every request but /api/health until the fake stops
    status: int = 0  # answer every request but /api/health with this status


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


class ApiError(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body


def _err(code: int, message: str, **extra: Any) -> ApiError:
    return ApiError(code, {"message": message, **extra})


@dataclass
class FakeGrafana:
    version: str = "12.3.3"
    plugins: tuple[str, ...] = ("questdb-questdb-datasource",)
    users: dict[str, tuple[str, str]] = field(
        default_factory=lambda: {"admin": ("s3cret", "Admin")}
    )
    tokens: dict[str, str] = field(
        default_factory=lambda: {"glsa_admin": "Admin", "glsa_viewer": "Viewer"}
    )
    faults: Faults = field(default_factory=Faults)

    def __post_init__(self) -> None:
        self.datasources: dict[str, dict[str, Any]] = {}
        self.secure: dict[str, dict[str, str]] = {}  # uid -> secureJsonData (never returned)
        self.folders: dict[str, dict[str, Any]] = {}
        self.dashboards: dict[str, dict[str, Any]] = {}  # uid -> {dashboard, folderUid, ...}
        self.rule_groups: dict[tuple[str, str], dict[str, Any]] = {}
        self.contact_points: list[dict[str, Any]] = []
        self.policy_tree: dict[str, Any] = copy.deepcopy(DEFAULT_TREE)
        self.annotations: list[dict[str, Any]] = []
        self.requests: list[Request] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server: Optional[ThreadingHTTPServer] = None

    # ---- life cycle ------------------------------------------------------------------------

    def start(self) -> FakeGrafana:
        fake = self

        class Handler(_Handler):
            grafana = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeGrafana:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def writes(self) -> list[Request]:
        return [r for r in self.requests if r.method != "GET"]

    # ---- state set up by tests -------------------------------------------------------------

    def provision_dashboard(self, dashboard: dict[str, Any], folder_uid: str) -> None:
        """A dashboard from a file provider with ``allowUiUpdates: false``."""
        self.folders.setdefault(folder_uid, self._folder(folder_uid, folder_uid))
        self._store_dashboard(dashboard, folder_uid, provisioned=True)

    # ---- the API ---------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict[str, list[str]], body: Any,
               role: Optional[str]) -> tuple[int, Any]:  # fmt: skip
        for m, pattern, need, fn in _ROUTES:
            match = re.fullmatch(pattern, unquote(path))
            if m == method and match:
                if need is not None:
                    if role is None:
                        raise _err(401, "Unauthorized", messageId="auth.unauthorized")
                    if ROLES[role] < ROLES[need]:
                        raise ApiError(403, {
                            "accessErrorId": "ACE0000000001",
                            "message": "You'll need additional permissions to perform this "
                                       f"action. Permissions needed: {need} role",
                            "title": "Access denied",
                        })  # fmt: skip
                with self._lock:
                    return fn(self, *match.groups(), query=query, body=body)
        raise _err(404, "Not found")

    def _health(self, **_: Any) -> tuple[int, Any]:
        return 200, {"commit": "fake", "database": "ok", "version": self.version}

    def _settings(self, **_: Any) -> tuple[int, Any]:
        build = {"version": self.version, "commit": "fake", "edition": "Open Source"}
        return 200, {"buildInfo": build, "datasources": {}, "appSubUrl": ""}

    def _plugins(self, **_: Any) -> tuple[int, Any]:
        return 200, [
            {"id": p, "name": p, "type": "datasource", "enabled": True,
             "info": {"version": "0.1.8"}}  # fmt: skip
            for p in self.plugins
        ]

    # datasources

    def _ds_dto(self, uid: str) -> dict[str, Any]:
        ds = copy.deepcopy(self.datasources[uid])
        ds["secureJsonFields"] = {k: True for k in self.secure.get(uid, {})}
        return ds

    def _ds_get(self, uid: str, **_: Any) -> tuple[int, Any]:
        if uid not in self.datasources:
            raise _err(404, "Data source not found")
        return 200, self._ds_dto(uid)

    def _ds_by_name(self, name: str, **_: Any) -> tuple[int, Any]:
        for uid, d in self.datasources.items():
            if d["name"] == name:
                return 200, self._ds_dto(uid)
        raise _err(404, "Data source not found")

    def _ds_body(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or not body.get("name") or not body.get("type"):
            raise _err(400, "bad request data")
        return body

    def _ds_create(self, body: Any, **_: Any) -> tuple[int, Any]:
        body = self._ds_body(body)
        uid = body.get("uid") or f"ds{next(self._ids)}"
        if uid in self.datasources:
            raise _err(409, "data source with the same uid already exists")
        if any(d["name"] == body["name"] for d in self.datasources.values()):
            raise _err(409, "data source with the same name already exists")
        ds = {k: v for k, v in body.items() if k != "secureJsonData"}
        ds.update(id=next(self._ids), uid=uid, orgId=1, version=1, readOnly=False)
        self.datasources[uid] = ds
        self.secure[uid] = dict(body.get("secureJsonData") or {})
        dto = self._ds_dto(uid)
        return 200, {"datasource": dto, "id": ds["id"], "message": "Datasource added",
                     "name": ds["name"]}  # fmt: skip

    def _ds_update(self, uid: str, body: Any, **_: Any) -> tuple[int, Any]:
        body = self._ds_body(body)
        if uid not in self.datasources:
            raise _err(404, "Data source not found")
        old = self.datasources[uid]
        if old.get("readOnly"):
            raise _err(403, "Cannot update read-only data source")
        if any(d["name"] == body["name"] and u != uid for u, d in self.datasources.items()):
            raise _err(409, "data source with the same name already exists")
        ds = {k: v for k, v in body.items() if k != "secureJsonData"}
        ds.update(id=old["id"], uid=uid, orgId=1, version=old["version"] + 1, readOnly=False)
        self.datasources[uid] = ds
        self.secure[uid] = {**self.secure.get(uid, {}), **(body.get("secureJsonData") or {})}
        dto = self._ds_dto(uid)
        return 200, {"datasource": dto, "id": ds["id"], "message": "Datasource updated",
                     "name": ds["name"]}  # fmt: skip

    # folders

    def _folder(self, uid: str, title: str) -> dict[str, Any]:
        slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
        return {"id": next(self._ids), "uid": uid, "title": title,
                "url": f"/dashboards/f/{uid}/{slug}", "hasAcl": False, "canSave": True,
                "canEdit": True, "canAdmin": True, "version": 1}  # fmt: skip

    def _folder_get(self, uid: str, **_: Any) -> tuple[int, Any]:
        if uid not in self.folders:
            raise _err(404, "folder not found", status="not-found")
        return 200, self.folders[uid]

    def _folder_create(self, body: Any, **_: Any) -> tuple[int, Any]:
        if not isinstance(body, dict) or not body.get("title"):
            raise _err(400, "folder title cannot be empty")
        uid = body.get("uid") or f"f{next(self._ids)}"
        if uid in self.folders:
            raise _err(409, "a folder with the same uid already exists")
        self.folders[uid] = self._folder(uid, body["title"])
        return 200, self.folders[uid]

    # dashboards

    def _store_dashboard(self, dash: dict[str, Any], folder: str, provisioned: bool) -> dict:
        uid = dash.get("uid") or f"d{next(self._ids)}"
        old = self.dashboards.get(uid)
        version = old["dashboard"]["version"] + 1 if old else 1
        ident = old["dashboard"]["id"] if old else next(self._ids)
        stored = {**copy.deepcopy(dash), "uid": uid, "id": ident, "version": version}
        self.dashboards[uid] = {"dashboard": stored, "folderUid": folder,
                                "provisioned": provisioned}  # fmt: skip
        return stored

    def _dash_get(self, uid: str, **_: Any) -> tuple[int, Any]:
        if uid not in self.dashboards:
            raise _err(404, "Dashboard not found", status="not-found")
        d = self.dashboards[uid]
        folder = self.folders.get(d["folderUid"], {})
        meta = {"isStarred": False, "url": f"/d/{uid}/x", "folderUid": d["folderUid"],
                "folderId": folder.get("id", 0), "folderTitle": folder.get("title", ""),
                "provisioned": d["provisioned"], "version": d["dashboard"]["version"],
                "canSave": not d["provisioned"]}  # fmt: skip
        return 200, {"dashboard": copy.deepcopy(d["dashboard"]), "meta": meta}

    def _dash_save(self, body: Any, **_: Any) -> tuple[int, Any]:
        known = {"dashboard", "folderUid", "folderId", "overwrite", "message"}
        if not isinstance(body, dict) or not isinstance(body.get("dashboard"), dict):
            raise _err(400, "bad request data")
        if set(body) - known:
            raise _err(400, f"bad request data: unknown {sorted(set(body) - known)}")
        dash = body["dashboard"]
        if not dash.get("title"):
            raise _err(400, "Dashboard title cannot be empty", status="empty-name")
        folder = body.get("folderUid", "")
        if folder and folder not in self.folders:
            raise _err(400, "folder not found")
        old = self.dashboards.get(dash.get("uid", ""))
        if old is not None:
            if old["provisioned"]:
                raise _err(400, "Cannot save provisioned dashboard")
            if not body.get("overwrite"):
                if dash.get("version") != old["dashboard"]["version"]:
                    raise _err(412, "The dashboard has been changed by someone else",
                               status="version-mismatch")  # fmt: skip
        stored = self._store_dashboard(dash, folder, provisioned=False)
        uid = stored["uid"]
        return 200, {"id": stored["id"], "uid": uid, "url": f"/d/{uid}/x", "status": "success",
                     "version": stored["version"], "slug": "x"}  # fmt: skip

    # alerting provisioning

    def _check(self, definition: str, body: Any) -> None:
        errors = [
            f"{list(e.absolute_path)}: {e.message}" for e in VALIDATE[definition].iter_errors(body)
        ]
        if errors:
            raise _err(400, f"invalid object specification: {errors[0]}")

    def _group_get(self, folder: str, title: str, **_: Any) -> tuple[int, Any]:
        if (folder, title) not in self.rule_groups:
            raise _err(404, "rule group does not exist")
        return 200, copy.deepcopy(self.rule_groups[(folder, title)])

    def _group_put(self, folder: str, title: str, body: Any, **_: Any) -> tuple[int, Any]:
        self._check("RuleGroup", body)
        if folder not in self.folders:
            raise _err(400, "folder does not exist")
        if body.get("folderUid", folder) != folder or body.get("title", title) != title:
            raise _err(400, "folder and group in the body differ from the path")
        for r in body.get("rules", []):
            if r["folderUID"] != folder or r["ruleGroup"] != title:
                raise _err(400, f"rule {r.get('uid')}: folderUID/ruleGroup differ from the path")
            for q in r["data"]:
                ds = q["datasourceUid"]
                if ds not in self.datasources and ds != "__expr__":
                    raise _err(400, f"failed to build query '{q['refId']}': data source {ds} "
                                    "not found")  # fmt: skip
        rules = [{**r, "id": next(self._ids), "orgID": 1, "provenance": "api",
                  "updated": "2026-12-02T00:00:00Z", "isPaused": False}
                 for r in body["rules"]]  # fmt: skip
        self.rule_groups[(folder, title)] = {**body, "folderUid": folder, "title": title,
                                             "rules": rules}  # fmt: skip
        return 200, copy.deepcopy(self.rule_groups[(folder, title)])

    def _cp_list(self, query: dict[str, list[str]], **_: Any) -> tuple[int, Any]:
        name = (query.get("name") or [None])[0]
        return 200, [copy.deepcopy(c) for c in self.contact_points if name in (None, c["name"])]

    def _cp_create(self, body: Any, **_: Any) -> tuple[int, Any]:
        self._check("ContactPoint", body)
        uid = body.get("uid") or f"cp{next(self._ids)}"
        if any(c["uid"] == uid for c in self.contact_points):
            raise _err(400, f"contact point with uid {uid} already exists")
        cp = {**body, "uid": uid, "provenance": "api"}
        self.contact_points.append(cp)
        return 202, copy.deepcopy(cp)

    def _cp_update(self, uid: str, body: Any, **_: Any) -> tuple[int, Any]:
        self._check("ContactPoint", body)
        for i, c in enumerate(self.contact_points):
            if c["uid"] == uid:
                self.contact_points[i] = {**body, "uid": uid, "provenance": "api"}
                return 202, {"message": "contactpoint updated"}
        raise _err(404, "contact point not found")

    def _policy_get(self, **_: Any) -> tuple[int, Any]:
        return 200, copy.deepcopy(self.policy_tree)

    def _policy_put(self, body: Any, **_: Any) -> tuple[int, Any]:
        self._check("NotificationPolicy", body)
        names = {c["name"] for c in self.contact_points} | {"grafana-default-email"}

        def receivers(node: dict[str, Any]):
            yield node.get("receiver")
            for r in node.get("routes") or []:
                yield from receivers(r)

        for r in receivers(body):
            if r is not None and r not in names:
                raise _err(400, f"invalid object specification: receiver '{r}' does not exist")
        self.policy_tree = copy.deepcopy(body)
        return 202, {"message": "policies updated"}

    # annotations

    def _ann_create(self, body: Any, **_: Any) -> tuple[int, Any]:
        if not isinstance(body, dict):
            raise _err(400, "bad request data")
        if not body.get("text"):
            raise _err(400, "Failed to save annotation", error="text field should not be empty")
        ann = {"id": next(self._ids), "dashboardUID": body.get("dashboardUID", ""),
               "panelId": body.get("panelId") or 0, "time": body.get("time") or 0,
               "timeEnd": body.get("timeEnd") or body.get("time") or 0,
               "tags": list(body.get("tags") or []), "text": body["text"]}  # fmt: skip
        self.annotations.append(ann)
        return 200, {"message": "Annotation added", "id": ann["id"]}

    def _ann_find(self, query: dict[str, list[str]], **_: Any) -> tuple[int, Any]:
        tags = set(query.get("tags", []))
        uid = (query.get("dashboardUID") or [None])[0]
        limit = int((query.get("limit") or ["100"])[0])
        found = [a for a in reversed(self.annotations)
                 if tags <= set(a["tags"]) and uid in (None, a["dashboardUID"])]  # fmt: skip
        return 200, copy.deepcopy(found[:limit])


_P = "/api/v1/provisioning"
_ROUTES: list[tuple[str, str, Optional[str], Any]] = [
    ("GET", r"/api/health", None, FakeGrafana._health),
    ("GET", r"/api/frontend/settings", "Viewer", FakeGrafana._settings),
    ("GET", r"/api/plugins", "Viewer", FakeGrafana._plugins),
    ("GET", r"/api/datasources/uid/([^/]+)", "Viewer", FakeGrafana._ds_get),
    ("GET", r"/api/datasources/name/([^/]+)", "Viewer", FakeGrafana._ds_by_name),
    ("POST", r"/api/datasources", "Admin", FakeGrafana._ds_create),
    ("PUT", r"/api/datasources/uid/([^/]+)", "Admin", FakeGrafana._ds_update),
    ("GET", r"/api/folders/([^/]+)", "Viewer", FakeGrafana._folder_get),
    ("POST", r"/api/folders", "Editor", FakeGrafana._folder_create),
    ("GET", r"/api/dashboards/uid/([^/]+)", "Viewer", FakeGrafana._dash_get),
    ("POST", r"/api/dashboards/db", "Editor", FakeGrafana._dash_save),
    ("GET", _P + r"/folder/([^/]+)/rule-groups/([^/]+)", "Admin", FakeGrafana._group_get),
    ("PUT", _P + r"/folder/([^/]+)/rule-groups/([^/]+)", "Admin", FakeGrafana._group_put),
    ("GET", _P + r"/contact-points", "Admin", FakeGrafana._cp_list),
    ("POST", _P + r"/contact-points", "Admin", FakeGrafana._cp_create),
    ("PUT", _P + r"/contact-points/([^/]+)", "Admin", FakeGrafana._cp_update),
    ("GET", _P + r"/policies", "Admin", FakeGrafana._policy_get),
    ("PUT", _P + r"/policies", "Admin", FakeGrafana._policy_put),
    ("POST", r"/api/annotations", "Editor", FakeGrafana._ann_create),
    ("GET", r"/api/annotations", "Viewer", FakeGrafana._ann_find),
]


class _Handler(BaseHTTPRequestHandler):
    grafana: FakeGrafana
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go in two writes: no 40 ms ACK waits

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _role(self) -> Optional[str]:
        auth = self.headers.get("Authorization", "")
        g = self.grafana
        if auth.startswith("Bearer "):
            return g.tokens.get(auth[7:])
        if auth.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                return None
            known = g.users.get(user)
            return known[1] if known and known[0] == password else None
        return None

    def _serve(self, method: str) -> None:
        g = self.grafana
        u = urlsplit(self.path)
        path = u.path.rstrip("/") or "/"
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = ...
        headers = {k: v for k, v in self.headers.items() if k.lower().startswith("x-")}
        g.requests.append(Request(method, path, headers, body))
        try:
            if path != "/api/health":
                if g.faults.stall:
                    g._release.wait()
                    self.close_connection = True
                    return
                if g.faults.status:
                    raise _err(g.faults.status, "fault on demand")
            if body is ...:
                raise _err(400, "bad request data")
            status, payload = g.handle(method, path, parse_qs(u.query), body, self._role())
        except ApiError as e:
            status, payload = e.status, e.body
        except Exception as e:  # noqa: BLE001 - a bug here must show as a 500, like Grafana's
            status, payload = 500, {"message": f"fake: {type(e).__name__}: {e}"}
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass  # the client gave up (a stall it timed out on)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")
