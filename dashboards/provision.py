"""Provision a Grafana instance over its HTTP API (grafana-client): datasource, folder, dashboards, contact
point and alert rules, idempotently.

Every resource is read first and written only when it is missing or differs from what thinkmeter wants;
"differs" ignores what Grafana adds (ids, versions, timestamps, defaults), so a second run writes
nothing. A dry run only reads. The datasource password is sent when the datasource is created or has
none; an existing password is kept (Grafana never returns it, so it cannot be compared).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from grafana_client import GrafanaApi
from grafana_client.client import GrafanaClientError
from thinkmeter.alerts.grafana import (
    CONTACT_POINT_NAME,
    FOLDER_TITLE,
    FOLDER_UID,
    api_rule,
    contact_point,
)
from thinkmeter.alerts.rules import GROUP_INTERVALS_S, AlertSettings, build_rules
from thinkmeter.dashboards.boards import dashboards
from thinkmeter.dashboards.build import READER_USER, SERVE_PORT, datasource_document
from thinkmeter.dashboards.model import DATASOURCE_UID, render
from thinkmeter.serve.discovery import PASSWORD_ENV, find_serve

COMMIT_MESSAGE = "thinkmeter provision"


@dataclass(frozen=True)
class ClickHouseTarget:
    """Where Grafana reaches ClickHouse (from Grafana's point of view); by default `thinkmeter serve`."""

    host: str = "localhost"
    port: int = SERVE_PORT
    protocol: str = "http"
    username: str = READER_USER
    password: str | None = None
    database: str = "default"


def serve_target(data_dir: Path) -> ClickHouseTarget:
    """`thinkmeter serve` for the data dir: the port it advertises (8123 when it is not running), HTTP, its
    reader user and the reader password serve was given (THINKMETER_SERVE_PASSWORD), if any."""
    running = find_serve(data_dir)
    return ClickHouseTarget(port=running.port if running else SERVE_PORT, password=os.environ.get(PASSWORD_ENV) or None)


@dataclass(frozen=True)
class Action:
    kind: str  # datasource, folder, dashboard, contact point, alert rule, rule group
    name: str
    status: str  # created, updated, unchanged, would create, would update


def contains(actual: Any, wanted: Any) -> bool:
    """True when `actual` holds everything of `wanted` (dicts may carry more keys)."""
    if isinstance(wanted, dict):
        return isinstance(actual, dict) and all(key in actual and contains(actual[key], value) for key, value in wanted.items())
    if isinstance(wanted, list):
        return isinstance(actual, list) and len(actual) == len(wanted) and all(map(contains, actual, wanted))
    if isinstance(wanted, float) or isinstance(actual, float):
        return isinstance(actual, (int, float)) and not isinstance(actual, bool) and float(actual) == float(wanted)
    return actual == wanted


def _get(read: Callable[..., Any], *args: Any) -> Any | None:
    """read(*args), or None when Grafana answers 404."""
    try:
        return read(*args)
    except GrafanaClientError as error:
        if error.status_code == 404:
            return None
        raise


class Provisioner:
    def __init__(self, api: GrafanaApi, dry_run: bool = False) -> None:
        self.api = api
        self.dry_run = dry_run
        self.actions: list[Action] = []

    def _apply(self, kind: str, name: str, exists: bool, same: bool, write: Callable[..., Any], *args: Any) -> None:
        """Record the resource's status; call write(*args) when it is missing or differs (not in a dry run)."""
        if exists and same:
            status = "unchanged"
        elif self.dry_run:
            status = "would update" if exists else "would create"
        else:
            write(*args)
            status = "updated" if exists else "created"
        self.actions.append(Action(kind, name, status))

    def datasource(self, target: ClickHouseTarget) -> None:
        datasources = self.api.datasource
        wanted = datasource_document(target.host, target.port, target.protocol, target.username, target.database)
        current = _get(datasources.get_datasource_by_uid, DATASOURCE_UID)
        body = dict(wanted)
        needs_password = target.password is not None and not (current or {}).get("secureJsonFields", {}).get("password")
        if needs_password:
            body["secureJsonData"] = {"password": target.password}
        if current is None:
            self._apply("datasource", wanted["name"], False, False, datasources.create_datasource, body)
            return
        body["jsonData"] = {**current.get("jsonData", {}), **wanted["jsonData"]}  # keep settings made in Grafana
        same = contains(current, wanted) and not needs_password
        self._apply("datasource", wanted["name"], True, same, datasources.update_datasource_by_uid, DATASOURCE_UID, body)

    def folder(self) -> None:
        folders = self.api.folder
        current = _get(folders.get_folder, FOLDER_UID)
        if current is None:
            self._apply("folder", FOLDER_TITLE, False, False, partial(folders.create_folder, FOLDER_TITLE, uid=FOLDER_UID))
            return
        same = current.get("title") == FOLDER_TITLE
        self._apply("folder", FOLDER_TITLE, True, same, partial(folders.update_folder, FOLDER_UID, title=FOLDER_TITLE, overwrite=True))

    def dashboards(self, settings: AlertSettings) -> None:
        for dashboard in dashboards(settings):
            wanted = render(dashboard)
            current = _get(self.api.dashboard.get_dashboard, dashboard.uid)
            same = (
                current is not None
                and contains(current.get("dashboard"), wanted)
                and current.get("meta", {}).get("folderUid") == FOLDER_UID
            )
            payload = {"dashboard": {**wanted, "id": None}, "folderUid": FOLDER_UID, "overwrite": True, "message": COMMIT_MESSAGE}
            self._apply("dashboard", dashboard.title, current is not None, same, self.api.dashboard.update_dashboard, payload)

    def contact_point(self, url: str) -> None:
        alerting = self.api.alertingprovisioning
        wanted = contact_point(url)
        found = [cp for cp in alerting.get_contactpoints(name=CONTACT_POINT_NAME) or [] if cp.get("name") == CONTACT_POINT_NAME]
        if not found:
            self._apply("contact point", CONTACT_POINT_NAME, False, False, alerting.create_contactpoint, wanted)
            return
        current = found[0]
        same = current.get("type") == wanted["type"] and contains(current.get("settings"), wanted["settings"])
        body = {**wanted, "uid": current["uid"]}
        self._apply("contact point", CONTACT_POINT_NAME, True, same, alerting.update_contactpoint, current["uid"], body)

    def alert_rules(self, settings: AlertSettings, receiver: str | None) -> None:
        alerting = self.api.alertingprovisioning
        rules = build_rules(settings)
        for rule in rules:
            wanted = api_rule(rule, receiver=receiver)
            current = _get(alerting.get_alertrule, rule.uid)
            if current is None:
                self._apply("alert rule", rule.title, False, False, alerting.create_alertrule, wanted)
                continue
            same = contains(current, wanted) and (receiver is not None or not current.get("notification_settings"))
            self._apply("alert rule", rule.title, True, same, alerting.update_alertrule, rule.uid, wanted)
        for group in dict.fromkeys(rule.group for rule in rules):
            interval = GROUP_INTERVALS_S[group]
            current = _get(alerting.get_rule_group, FOLDER_UID, group)
            if current is None:  # only in a dry run: the rules above create their group
                self.actions.append(Action("rule group", group, "would create"))
                continue
            same = current.get("interval") == interval
            body = {**current, "interval": interval}
            self._apply("rule group", group, True, same, alerting.update_rule_group, FOLDER_UID, group, body)


def provision(
    api: GrafanaApi,
    target: ClickHouseTarget,
    settings: AlertSettings | None = None,
    webhook_url: str | None = None,
    dry_run: bool = False,
) -> list[Action]:
    """Datasource, folder, dashboards, contact point (when webhook_url is given: the rules are routed to
    it through their notification settings) and alert rules, in that order."""
    settings = settings or AlertSettings()
    provisioner = Provisioner(api, dry_run)
    provisioner.datasource(target)
    provisioner.folder()
    provisioner.dashboards(settings)
    if webhook_url:
        provisioner.contact_point(webhook_url)
    provisioner.alert_rules(settings, CONTACT_POINT_NAME if webhook_url else None)
    return provisioner.actions
