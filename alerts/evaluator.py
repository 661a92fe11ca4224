"""The built-in evaluator: the Grafana rules' SQL, run against the store, with state kept in ClickHouse.

One evaluation runs every rule over its window ending now, with the macros expanded as the Grafana
ClickHouse datasource's backend expands them for alert rules. An instance (rule + labels) whose value
is above the threshold fires; it is recorded and notified once when it starts, and once when a later
successful evaluation no longer finds it firing (resolved). A rule whose query fails keeps its
instances as they were. State is the latest event per instance in thinkmeter_alert_events, so a
restarted evaluator carries on where it stopped. Run one evaluator per store.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from clickhouse_connect.driver.client import Client
from thinkmeter.alerts.rules import Rule, render_text
from thinkmeter.schemas.grafana_sql import TimeRange, expand_alert_query
from thinkmeter.schemas.ddl import quote_identifier
from thinkmeter.schemas.tables import ALERT_EVENTS

log = logging.getLogger(__name__)

EVENTS_TABLE = ALERT_EVENTS.name


@dataclass(frozen=True)
class Alert:
    rule_uid: str
    title: str
    severity: str
    labels: dict[str, str]
    value: float | None
    threshold: float
    summary: str
    description: str
    started_at: datetime
    resolved_at: datetime | None = None

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.rule_uid, self.labels)

    @property
    def state(self) -> str:
        return "resolved" if self.resolved_at else "firing"


def fingerprint(rule_uid: str, labels: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps([rule_uid, sorted(labels.items())]).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Evaluation:
    at: datetime
    firing: list[Alert]  # every instance firing after this evaluation, old and new
    started: list[Alert]
    resolved: list[Alert]
    errors: dict[str, str] = field(default_factory=dict)  # rule uid -> what went wrong

    @property
    def changes(self) -> list[Alert]:
        return [*self.started, *self.resolved]


def _instances(rule: Rule, client: Client, now: datetime) -> list[tuple[dict[str, str], float | None]]:
    sql = expand_alert_query(rule.sql, TimeRange.last(rule.window_s, now))
    result = client.query(sql)
    if not result.result_rows:  # (chDB reports no column names for an empty result)
        return []
    names = list(result.column_names)
    if "value" not in names:
        raise ValueError("the query returns no `value` column")
    value_index = names.index("value")
    instances = []
    for row in result.result_rows:
        labels = {name: "" if cell is None else str(cell) for i, (name, cell) in enumerate(zip(names, row)) if i != value_index}
        value = row[value_index]
        instances.append((labels, None if value is None else float(value)))
    return instances


class Evaluator:
    def __init__(self, rules: Sequence[Rule], database: str = "default") -> None:
        uids = [rule.uid for rule in rules]
        if len(set(uids)) != len(uids):
            raise ValueError("alert rule uids must be unique")
        self.rules = list(rules)
        self.database = database
        self._active: dict[str, Alert] | None = None

    def evaluate(self, client: Client, now: datetime | None = None) -> Evaluation:
        now = now or datetime.now(timezone.utc)
        if self._active is None:
            self._active = self._load_active(client)
        active = self._active
        started: list[Alert] = []
        resolved: list[Alert] = []
        errors: dict[str, str] = {}
        seen: set[str] = set()
        evaluated: set[str] = set()
        for rule in self.rules:
            try:
                instances = _instances(rule, client, now)
            except Exception as error:  # one broken rule must not stop the others
                errors[rule.uid] = str(error).splitlines()[0] if str(error) else type(error).__name__
                log.error("thinkmeter alerts: rule %s failed: %s", rule.uid, errors[rule.uid])
                continue
            evaluated.add(rule.uid)
            for labels, value in instances:
                if value is None or not value > rule.threshold:
                    continue
                alert = Alert(
                    rule_uid=rule.uid,
                    title=rule.title,
                    severity=rule.severity,
                    labels=labels,
                    value=value,
                    threshold=rule.threshold,
                    summary=render_text(rule.summary, labels, value),
                    description=render_text(rule.description, labels, value),
                    started_at=now,
                )
                key = alert.fingerprint
                seen.add(key)
                if key in active:
                    active[key] = replace(active[key], value=value)
                else:
                    active[key] = alert
                    started.append(alert)
        known = {rule.uid for rule in self.rules}
        for key, alert in list(active.items()):
            # Resolved: its rule ran and no longer finds it firing, or the rule no longer exists.
            if key not in seen and (alert.rule_uid in evaluated or alert.rule_uid not in known):
                resolved.append(replace(active.pop(key), resolved_at=now))
        self._record(client, now, started, resolved)
        return Evaluation(at=now, firing=list(active.values()), started=started, resolved=resolved, errors=errors)

    def _record(self, client: Client, now: datetime, started: list[Alert], resolved: list[Alert]) -> None:
        rows = [
            [
                now, a.rule_uid, a.title, a.severity, a.fingerprint, a.state, a.labels,
                a.value if a.resolved_at is None else None, a.threshold, a.summary, a.description, a.started_at,
            ]
            for a in (*started, *resolved)
        ]
        if rows:
            client.insert(
                EVENTS_TABLE,
                rows,
                database=self.database,
                column_names=ALERT_EVENTS.column_names,
                column_type_names=ALERT_EVENTS.column_types,
            )

    def _load_active(self, client: Client) -> dict[str, Alert]:
        result = client.query(
            f"""SELECT argMax(state, event_time) AS last_state, argMax(rule_uid, event_time), argMax(rule_title, event_time),
    argMax(severity, event_time), argMax(labels, event_time), argMax(value, event_time), argMax(threshold, event_time),
    argMax(summary, event_time), argMax(description, event_time), argMax(started_at, event_time)
FROM {quote_identifier(self.database)}.{EVENTS_TABLE} GROUP BY fingerprint HAVING last_state = 'firing'"""
        )
        active = {}
        for row in result.result_rows:
            _, uid, title, severity, labels, value, threshold, summary, description, started_at = row
            alert = Alert(uid, title, severity, dict(labels), value, threshold, summary, description, _utc(started_at))
            active[alert.fingerprint] = alert
        return active


def _utc(value: Any) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
