"""The rules of alerts/rules.py as Grafana-managed alert rules: the file-provisioning format
(alerts/provisioning/rules.yaml) and the alerting provisioning HTTP API body, plus the example contact point.

Each rule: A = the ClickHouse query (table format, one row per instance), B = reduce(last) (a no-op for
the numbers a table yields), C = threshold `B > threshold`, the condition. No data is OK (nothing to
alert on); a failing query is an Error state, not an alert.
"""

from __future__ import annotations

from typing import Any

from thinkmeter.alerts.rules import GROUP_INTERVALS_S, Rule, grafana_template
from thinkmeter.schemas.grafana_sql import DATASOURCE_UID

FOLDER_UID = "thinkmeter"
FOLDER_TITLE = "thinkmeter"
CONTACT_POINT_NAME = "thinkmeter-webhook"
CONTACT_POINT_UID = "thinkmeter-webhook"
ORG_ID = 1


def rule_data(rule: Rule, datasource_uid: str = DATASOURCE_UID) -> list[dict[str, Any]]:
    return [
        {
            "refId": "A",
            "queryType": "table",
            "relativeTimeRange": {"from": rule.window_s, "to": 0},
            "datasourceUid": datasource_uid,
            "model": {
                "refId": "A",
                "editorType": "sql",
                "format": 1,
                "queryType": "table",
                "rawSql": rule.sql,
                "intervalMs": 1000,
                "maxDataPoints": 43200,
            },
        },
        {
            "refId": "B",
            "queryType": "",
            "relativeTimeRange": {"from": 0, "to": 0},
            "datasourceUid": "__expr__",
            "model": {"refId": "B", "type": "reduce", "expression": "A", "reducer": "last", "settings": {"mode": ""}},
        },
        {
            "refId": "C",
            "queryType": "",
            "relativeTimeRange": {"from": 0, "to": 0},
            "datasourceUid": "__expr__",
            "model": {
                "refId": "C",
                "type": "threshold",
                "expression": "B",
                "conditions": [{"evaluator": {"type": "gt", "params": [rule.threshold]}}],
            },
        },
    ]


def _common(rule: Rule, datasource_uid: str) -> dict[str, Any]:
    return {
        "uid": rule.uid,
        "title": rule.title,
        "condition": "C",
        "data": rule_data(rule, datasource_uid),
        "noDataState": "OK",
        "execErrState": "Error",
        "for": "0s",
        "labels": {"severity": rule.severity, "source": "thinkmeter"},
        "annotations": {"summary": grafana_template(rule.summary), "description": grafana_template(rule.description)},
        "isPaused": False,
    }


def provisioning_file(rules: list[Rule], datasource_uid: str = DATASOURCE_UID) -> dict[str, Any]:
    """apiVersion 1 `groups:` document for /etc/grafana/provisioning/alerting/."""
    groups: dict[str, list[Rule]] = {}
    for rule in rules:
        groups.setdefault(rule.group, []).append(rule)
    return {
        "apiVersion": 1,
        "groups": [
            {
                "orgId": ORG_ID,
                "name": name,
                "folder": FOLDER_TITLE,
                "interval": f"{GROUP_INTERVALS_S[name]}s",
                "rules": [_common(rule, datasource_uid) for rule in members],
            }
            for name, members in groups.items()
        ],
    }


def api_rule(rule: Rule, datasource_uid: str = DATASOURCE_UID, receiver: str | None = None) -> dict[str, Any]:
    """The body of POST/PUT /api/v1/provisioning/alert-rules (ProvisionedAlertRule)."""
    body = {**_common(rule, datasource_uid), "orgID": ORG_ID, "folderUID": FOLDER_UID, "ruleGroup": rule.group}
    if receiver:
        body["notification_settings"] = {"receiver": receiver}
    return body


def contact_point(url: str) -> dict[str, Any]:
    """The body of POST /api/v1/provisioning/contact-points (EmbeddedContactPoint): a webhook."""
    return {
        "uid": CONTACT_POINT_UID,
        "name": CONTACT_POINT_NAME,
        "type": "webhook",
        "settings": {"url": url, "httpMethod": "POST"},
        "disableResolveMessage": False,
    }


def contact_points_file(url: str) -> dict[str, Any]:
    """apiVersion 1 `contactPoints:` document for /etc/grafana/provisioning/alerting/."""
    return {
        "apiVersion": 1,
        "contactPoints": [
            {
                "orgId": ORG_ID,
                "name": CONTACT_POINT_NAME,
                "receivers": [
                    {"uid": CONTACT_POINT_UID, "type": "webhook", "settings": {"url": url, "httpMethod": "POST"},
                     "disableResolveMessage": False}
                ],
            }
        ],
    }
