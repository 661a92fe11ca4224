"""`thinkmeter provision grafana` against a loopback recorder of Grafana's HTTP API.

A Grafana server cannot be installed here. The recorder implements the endpoints provisioning uses, with
the paths, status codes and bodies of Grafana's documented HTTP API (datasource, folder, dashboard and
alerting provisioning APIs: grafana.com/docs/grafana/latest/developers/http_api/), stores what it is sent,
and records every request, so the tests check the exact requests grafana-client sends, that a second run
sends no write, and that a dry run only reads.
"""

from __future__ import annotations

import copy
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from grafana_client import GrafanaApi
from thinkmeter.alerts.grafana import CONTACT_POINT_NAME, FOLDER_UID, api_rule
from thinkmeter.alerts.rules import GROUP_INTERVALS_S, AlertSettings, build_rules
from thinkmeter.dashboards.boards import dashboards
from thinkmeter.dashboards.model import DATASOURCE_TYPE, DATASOURCE_UID, render
from thinkmeter.dashboards.provision import ClickHouseTarget, contains, provision

from thinkmeter.cli import main

TOKEN = "glsa_test_token"
DEFAULT_GROUP_INTERVAL_S = 60  # what Grafana gives a rule group created by POST /alert-rules


class FakeGrafana:
    """Grafana's provisioning-related HTTP API on 127.0.0.1, in memory."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, Any]] = []
        self.datasources: dict[str, dict[str, Any]] = {}
        self.folders: dict[str, dict[str, Any]] = {}
        self.dashboards: dict[str, dict[str, Any]] = {}
        self.rules: dict[str, dict[str, Any]] = {}
        self.group_intervals: dict[tuple[str, str], int] = {}
        self.contact_points: dict[str, dict[str, Any]] = {}
        self._ids = iter(range(1, 10_000))
        grafana = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                parts = urlsplit(self.path)
                grafana.requests.append((self.command, self.path, body))
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    self._reply(401, {"message": "Unauthorized"})
                    return
                status, payload = grafana.route(self.command, parts.path, parse_qs(parts.query), body)
                self._reply(status, payload)

            def _reply(self, status: int, payload: Any) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = _handle

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def writes(self) -> list[tuple[str, str, Any]]:
        return [request for request in self.requests if request[0] != "GET"]

    # ---------------------------------------------------------------------------------------- routing

    def route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        for pattern, handler in (
            (r"/api/datasources", self._datasources),
            (r"/api/datasources/uid/(?P<uid>[^/]+)", self._datasource),
            (r"/api/folders", self._create_folder),
            (r"/api/folders/(?P<uid>[^/]+)", self._folder),
            (r"/api/dashboards/db", self._save_dashboard),
            (r"/api/dashboards/uid/(?P<uid>[^/]+)", self._dashboard),
            (r"/api/v1/provisioning/contact-points", self._contact_points),
            (r"/api/v1/provisioning/contact-points/(?P<uid>[^/]+)", self._contact_point),
            (r"/api/v1/provisioning/alert-rules", self._create_rule),
            (r"/api/v1/provisioning/alert-rules/(?P<uid>[^/]+)", self._rule),
            (r"/api/v1/provisioning/folder/(?P<folder>[^/]+)/rule-groups/(?P<group>[^/]+)", self._rule_group),
        ):
            match = re.fullmatch(pattern, path)
            if match:
                return handler(method, body, query=query, **match.groupdict())
        return 404, {"message": "Not found"}

    def _datasources(self, method: str, body: Any, **_: Any) -> tuple[int, Any]:
        if method != "POST":
            return 405, {"message": "Method not allowed"}
        if body["uid"] in self.datasources:
            return 409, {"message": "data source with the same uid already exists"}
        stored = self._store_datasource(body, {"id": next(self._ids), "orgId": 1, "version": 0, "url": "", "basicAuth": False,
                                               "readOnly": False, "secureJsonFields": {}})
        return 200, {"datasource": stored, "id": stored["id"], "message": "Datasource added", "name": stored["name"]}

    def _store_datasource(self, body: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
        stored = {**current, **{k: v for k, v in body.items() if k != "secureJsonData"}}
        stored["secureJsonFields"] = {**current["secureJsonFields"], **{k: True for k in body.get("secureJsonData", {})}}
        stored["version"] = current["version"] + 1
        self.datasources[stored["uid"]] = stored
        return stored

    def _datasource(self, method: str, body: Any, uid: str, **_: Any) -> tuple[int, Any]:
        current = self.datasources.get(uid)
        if current is None:
            return 404, {"message": "Data source not found"}
        if method == "GET":
            return 200, current
        stored = self._store_datasource(body, current)
        return 200, {"datasource": stored, "id": stored["id"], "message": "Datasource updated", "name": stored["name"]}

    def _create_folder(self, method: str, body: Any, **_: Any) -> tuple[int, Any]:
        if body["uid"] in self.folders:
            return 409, {"message": "a folder with the same uid already exists"}
        self.folders[body["uid"]] = {"id": next(self._ids), "uid": body["uid"], "title": body["title"], "url": f"/dashboards/f/{body['uid']}/", "version": 1}
        return 200, self.folders[body["uid"]]

    def _folder(self, method: str, body: Any, uid: str, **_: Any) -> tuple[int, Any]:
        folder = self.folders.get(uid)
        if folder is None:
            return 404, {"message": "folder not found"}
        if method == "PUT":
            folder.update(title=body["title"], version=folder["version"] + 1)
        return 200, folder

    def _save_dashboard(self, method: str, body: Any, **_: Any) -> tuple[int, Any]:
        dashboard = body["dashboard"]
        current = self.dashboards.get(dashboard["uid"])
        if current is not None and not body.get("overwrite"):
            return 412, {"message": "The dashboard has been changed by someone else", "status": "version-mismatch"}
        version = current["dashboard"]["version"] + 1 if current else 1
        stored = {**dashboard, "id": current["dashboard"]["id"] if current else next(self._ids), "version": version}
        self.dashboards[dashboard["uid"]] = {"dashboard": stored, "meta": {"folderUid": body.get("folderUid", ""), "version": version,
                                                                           "slug": dashboard["uid"], "provisioned": False}}
        return 200, {"id": stored["id"], "uid": stored["uid"], "url": f"/d/{stored['uid']}/", "status": "success", "version": version, "slug": stored["uid"]}

    def _dashboard(self, method: str, body: Any, uid: str, **_: Any) -> tuple[int, Any]:
        current = self.dashboards.get(uid)
        return (200, current) if current else (404, {"message": "Dashboard not found"})

    def _contact_points(self, method: str, body: Any, query: dict[str, list[str]], **_: Any) -> tuple[int, Any]:
        if method == "GET":
            names = query.get("name")
            return 200, [cp for cp in self.contact_points.values() if not names or cp["name"] in names]
        self.contact_points[body["uid"]] = copy.deepcopy(body)
        return 202, body

    def _contact_point(self, method: str, body: Any, uid: str, **_: Any) -> tuple[int, Any]:
        if uid not in self.contact_points:
            return 404, {"message": "contact point not found"}
        self.contact_points[uid] = copy.deepcopy(body)
        return 202, {"message": "contactpoint updated"}

    def _store_rule(self, body: dict[str, Any]) -> dict[str, Any]:
        stored = {**copy.deepcopy(body), "id": self.rules.get(body["uid"], {}).get("id") or next(self._ids),
                  "updated": "2026-01-01T00:00:00Z", "provenance": "api"}
        self.rules[body["uid"]] = stored
        self.group_intervals.setdefault((body["folderUID"], body["ruleGroup"]), DEFAULT_GROUP_INTERVAL_S)
        return stored

    def _create_rule(self, method: str, body: Any, **_: Any) -> tuple[int, Any]:
        if body["folderUID"] not in self.folders:
            return 400, {"message": "folder does not exist"}
        return 201, self._store_rule(body)

    def _rule(self, method: str, body: Any, uid: str, **_: Any) -> tuple[int, Any]:
        if uid not in self.rules:
            return 404, {"message": "rule not found"}
        return 200, (self.rules[uid] if method == "GET" else self._store_rule(body))

    def _rule_group(self, method: str, body: Any, folder: str, group: str, **_: Any) -> tuple[int, Any]:
        if (folder, group) not in self.group_intervals:
            return 404, {"message": "rule group not found"}
        if method == "PUT":
            self.group_intervals[(folder, group)] = body["interval"]
        rules = [rule for rule in self.rules.values() if (rule["folderUID"], rule["ruleGroup"]) == (folder, group)]
        return 200, {"title": group, "folderUid": folder, "interval": self.group_intervals[(folder, group)], "rules": rules}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def grafana() -> Iterator[FakeGrafana]:
    fake = FakeGrafana()
    yield fake
    fake.close()


def api(grafana: FakeGrafana) -> GrafanaApi:
    return GrafanaApi.from_url(grafana.url, credential=TOKEN)


TARGET = ClickHouseTarget(host="clickhouse", port=9000, password="s3cret")
WEBHOOK = "http://127.0.0.1:9/thinkmeter-alerts"


def test_first_run_creates_everything_with_the_documented_requests(grafana: FakeGrafana) -> None:
    actions = provision(api(grafana), TARGET, webhook_url=WEBHOOK)
    rules, boards = build_rules(), dashboards()
    assert all(a.status == "created" for a in actions if a.kind != "rule group")
    writes = grafana.writes()
    expected = [
        ("POST", "/api/datasources"),
        ("POST", "/api/folders"),
        *[("POST", "/api/dashboards/db")] * len(boards),
        ("POST", "/api/v1/provisioning/contact-points"),
        *[("POST", "/api/v1/provisioning/alert-rules")] * len(rules),
        # groups whose interval is not Grafana's default
        *[("PUT", f"/api/v1/provisioning/folder/{FOLDER_UID}/rule-groups/{group}")
          for group in dict.fromkeys(r.group for r in rules) if GROUP_INTERVALS_S[group] != DEFAULT_GROUP_INTERVAL_S],
    ]
    assert [(method, path) for method, path, _ in writes] == expected

    datasource = writes[0][2]
    assert (datasource["type"], datasource["uid"], datasource["access"]) == (DATASOURCE_TYPE, DATASOURCE_UID, "proxy")
    assert datasource["jsonData"]["host"] == "clickhouse" and datasource["secureJsonData"] == {"password": "s3cret"}
    assert datasource["jsonData"]["traces"]["defaultTable"] == "otel_traces" and datasource["jsonData"]["traces"]["otelEnabled"]
    assert writes[1][2] == {"title": "thinkmeter", "uid": FOLDER_UID}
    saved = [body for method, path, body in writes if path == "/api/dashboards/db"]
    for body, dashboard in zip(saved, boards):
        assert body["folderUid"] == FOLDER_UID and body["overwrite"] is True
        assert body["dashboard"] == {**render(dashboard), "id": None}
    contact = writes[2 + len(boards)][2]
    assert (contact["name"], contact["type"], contact["settings"]["url"]) == (CONTACT_POINT_NAME, "webhook", WEBHOOK)
    posted_rules = [body for method, path, body in writes if path == "/api/v1/provisioning/alert-rules"]
    for body, rule in zip(posted_rules, rules):
        assert body == api_rule(rule, receiver=CONTACT_POINT_NAME)
        assert (body["folderUID"], body["ruleGroup"], body["condition"]) == (FOLDER_UID, rule.group, "C")
        assert body["data"][0]["datasourceUid"] == DATASOURCE_UID and body["data"][0]["model"]["rawSql"] == rule.sql
    assert all(grafana.group_intervals[(FOLDER_UID, group)] == interval for group, interval in GROUP_INTERVALS_S.items())


def test_second_run_changes_nothing(grafana: FakeGrafana) -> None:
    provision(api(grafana), TARGET, webhook_url=WEBHOOK)
    grafana.requests.clear()
    actions = provision(api(grafana), TARGET, webhook_url=WEBHOOK)
    assert {a.status for a in actions} == {"unchanged"}
    assert grafana.requests and not grafana.writes()


def test_dry_run_only_reads(grafana: FakeGrafana) -> None:
    actions = provision(api(grafana), TARGET, webhook_url=WEBHOOK, dry_run=True)
    assert {a.status for a in actions} == {"would create"}
    assert not grafana.writes() and not grafana.datasources and not grafana.rules
    provision(api(grafana), TARGET, webhook_url=WEBHOOK)
    grafana.requests.clear()
    changed = provision(api(grafana), TARGET, AlertSettings(runaway_k=3), webhook_url=WEBHOOK, dry_run=True)
    assert [(a.kind, a.status) for a in changed if a.status != "unchanged"] == [("alert rule", "would update")]
    assert not grafana.writes()


def test_a_changed_threshold_updates_only_its_rule(grafana: FakeGrafana) -> None:
    provision(api(grafana), TARGET, webhook_url=WEBHOOK)
    grafana.requests.clear()
    provision(api(grafana), TARGET, AlertSettings(runaway_k=3), webhook_url=WEBHOOK)
    assert [(method, path) for method, path, _ in grafana.writes()] == [
        ("PUT", "/api/v1/provisioning/alert-rules/thinkmeter-runaway-reasoning")
    ]
    assert grafana.rules["thinkmeter-runaway-reasoning"]["data"][2]["model"]["conditions"][0]["evaluator"]["params"] == [3.0]


def test_datasource_changes_update_it_and_keep_settings_made_in_grafana(grafana: FakeGrafana) -> None:
    provision(api(grafana), TARGET)
    grafana.datasources[DATASOURCE_UID]["jsonData"]["tlsSkipVerify"] = True  # set by someone in the UI
    grafana.requests.clear()
    provision(api(grafana), ClickHouseTarget(host="ch2", port=8123, protocol="http", password="other"))
    (method, path, body), = grafana.writes()
    assert (method, path) == ("PUT", f"/api/datasources/uid/{DATASOURCE_UID}")
    assert body["jsonData"]["host"] == "ch2" and body["jsonData"]["tlsSkipVerify"] is True
    assert "secureJsonData" not in body  # a password already set is kept: Grafana never returns it


def test_unauthorized_token_is_reported(grafana: FakeGrafana, capsys) -> None:
    code = main(["provision", "grafana", "--url", grafana.url, "--token", "glsa_wrong", "--dry-run"])
    assert code == 1
    assert "Grafana at" in capsys.readouterr().err


def test_cli_provisions_then_reports_nothing_to_change(grafana: FakeGrafana, capsys) -> None:
    argv = ["provision", "grafana", "--url", grafana.url, "--token", TOKEN, "--clickhouse-host", "clickhouse", "--webhook-url", WEBHOOK]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert "created       datasource" in first and "created       alert rule" in first
    assert main(argv) == 0
    assert capsys.readouterr().out.strip().endswith(f"changed 0 of {len(build_rules()) + len(dashboards()) + 2 + 1 + len(GROUP_INTERVALS_S)} resources")
    assert main([*argv, "--dry-run"]) == 0
    assert "would change 0" in capsys.readouterr().out


def test_contains_ignores_what_grafana_adds() -> None:
    assert contains({"a": 1, "b": {"c": [1, {"d": 2, "e": 3}]}, "id": 7}, {"b": {"c": [1, {"d": 2}]}})
    assert not contains({"b": {"c": [1]}}, {"b": {"c": [1, 2]}})
    assert contains({"x": 2}, {"x": 2.0}) and not contains({"x": True}, {"x": 1.0})
