"""Send the evaluator's alerts to webhooks: generic JSON, Slack-compatible, or the Alertmanager API v2.

Generic and Slack webhooks get one POST per evaluation that changed something: the alerts that
started and resolved. Alertmanager gets every firing alert on every evaluation, plus those that
resolved (with endsAt): it deduplicates itself and ends an alert that is not re-sent within its
resolve_timeout, as it expects from Prometheus. A notifier that fails is logged; the others still run.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from thinkmeter.alerts.evaluator import Alert, Evaluation

log = logging.getLogger(__name__)

KINDS = ("webhook", "slack", "alertmanager")
_TIMEOUT_S = 10.0


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def alert_json(alert: Alert) -> dict[str, Any]:
    return {
        "status": alert.state,
        "rule_uid": alert.rule_uid,
        "title": alert.title,
        "severity": alert.severity,
        "labels": alert.labels,
        "value": alert.value,
        "threshold": alert.threshold,
        "summary": alert.summary,
        "description": alert.description,
        "starts_at": _iso(alert.started_at),
        "ends_at": _iso(alert.resolved_at),
        "fingerprint": alert.fingerprint,
    }


def webhook_payload(evaluation: Evaluation) -> dict[str, Any] | None:
    """{"version": "1", "source": "thinkmeter", "status", "evaluated_at", "alerts": [...]}; None: nothing changed."""
    changes = evaluation.changes
    if not changes:
        return None
    return {
        "version": "1",
        "source": "thinkmeter",
        "status": "firing" if evaluation.started else "resolved",
        "evaluated_at": _iso(evaluation.at),
        "alerts": [alert_json(alert) for alert in changes],
    }


def slack_payload(evaluation: Evaluation) -> dict[str, Any] | None:
    """An incoming-webhook message (`text`, mrkdwn), also understood by Mattermost and Rocket.Chat."""
    if not evaluation.changes:
        return None
    lines = []
    for alert in evaluation.started:
        lines.append(f":rotating_light: *[FIRING] {alert.title}* ({alert.severity})\n{alert.summary}")
    for alert in evaluation.resolved:
        lines.append(f":white_check_mark: *[RESOLVED] {alert.title}*\n{alert.summary}")
    return {"text": "\n\n".join(lines)}


def alertmanager_payload(evaluation: Evaluation) -> list[dict[str, Any]] | None:
    """postableAlerts for POST /api/v2/alerts: labels identify the alert, alertname = the rule uid."""
    alerts = []
    for alert in (*evaluation.firing, *evaluation.resolved):
        item: dict[str, Any] = {
            "labels": {"alertname": alert.rule_uid, "severity": alert.severity, **alert.labels},
            "annotations": {"title": alert.title, "summary": alert.summary, "description": alert.description},
            "startsAt": _iso(alert.started_at),
        }
        if alert.resolved_at is not None:
            item["endsAt"] = _iso(alert.resolved_at)
        alerts.append(item)
    return alerts or None


@dataclass(frozen=True)
class Notifier:
    kind: Literal["webhook", "slack", "alertmanager"]
    url: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown notifier {self.kind!r}; use one of {', '.join(KINDS)}")
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"{self.kind} URL {self.url!r} must start with http:// or https://")

    @property
    def endpoint(self) -> str:
        if self.kind == "alertmanager" and not self.url.rstrip("/").endswith("/api/v2/alerts"):
            return self.url.rstrip("/") + "/api/v2/alerts"
        return self.url

    def payload(self, evaluation: Evaluation) -> Any:
        if self.kind == "webhook":
            return webhook_payload(evaluation)
        if self.kind == "slack":
            return slack_payload(evaluation)
        return alertmanager_payload(evaluation)

    def send(self, evaluation: Evaluation) -> bool:
        """POST the evaluation's payload (if any); False after logging when the receiver failed."""
        payload = self.payload(evaluation)
        if payload is None:
            return True
        request = urllib.request.Request(
            self.endpoint,
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json", "User-Agent": "thinkmeter-alerts"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:
                response.read()
            return True
        except (urllib.error.URLError, OSError, ValueError) as error:
            log.error("thinkmeter alerts: %s notification to %s failed: %s", self.kind, self.endpoint, error)
            return False


def notify_all(notifiers: Sequence[Notifier], evaluation: Evaluation) -> list[Notifier]:
    """Send to every notifier; returns the ones that failed."""
    return [notifier for notifier in notifiers if not notifier.send(evaluation)]
