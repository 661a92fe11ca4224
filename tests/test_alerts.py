"""Alerts: every rule's query runs against the seeded store and returns its frame; a runaway request and a
quota breach, seeded through the simulator and the real instrumentation, fire, are recorded in
thinkmeter_alert_events, reach a loopback webhook once, and resolve once."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client
from thinkmeter.alerts.evaluator import EVENTS_TABLE, Evaluator, fingerprint
from thinkmeter.alerts.grafana import api_rule, provisioning_file
from thinkmeter.alerts.notify import (
    Notifier,
    alertmanager_payload,
    notify_all,
    slack_payload,
)
from thinkmeter.alerts.rules import (
    AlertSettings,
    Quota,
    build_rules,
    grafana_template,
    render_text,
)
from thinkmeter.schemas.grafana_sql import TimeRange, expand_alert_query

from tests.engine_servers import vllm_metrics
from tests.grafana_seed import Call, SeededTasks, seed_budget_actions, seed_calls, seed_engine_metrics, seed_gpu_metrics, seed_tasks
from tests.nvml_stand_in import StandInGpu
from thinkmeter.cli import main
from thinkmeter.config import Settings
from thinkmeter.simulator import Scenario
from thinkmeter.store import store_session

NORMAL_CALLS = 40


@dataclass(frozen=True)
class Seeded:
    service: str
    tenant: str
    user: str
    task_class: str
    runaway_trace_id: str
    engine: str
    gpu_host: str
    tasks: SeededTasks


class Receiver:
    """A loopback webhook receiver recording every POST body by path."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.posts.append((self.path, json.loads(body)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def bodies(self, path: str) -> list[Any]:
        return [body for posted_path, body in self.posts if posted_path == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def client(store_settings: Settings) -> Iterator[Client]:
    with store_session(store_settings) as session:
        yield session


@pytest.fixture(scope="module")
def seeded(store_settings: Settings, client: Client, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    """A task class of its own with 40 ordinary calls and one runaway, all by one tenant and user."""
    started = datetime.now(timezone.utc) - timedelta(seconds=1)
    suffix = uuid.uuid4().hex[:10]
    service, tenant, user, task_class = f"test-alerts-{suffix}", f"tenant-{suffix}", f"user-{suffix}", f"class-{suffix}"
    tags = {"tenant": tenant, "user": user, "feature": "alerts-test", "task_class": task_class}
    ordinary = [
        Call(tags, Scenario(model="o4-mini", input_tokens=300, reasoning_tokens=400 + 10 * i, visible_tokens=10,
                            prefill_s=0.1, thinking_s=2.5), stream=i % 4 == 0)
        for i in range(NORMAL_CALLS)
    ]
    runaway = Call(tags, Scenario(model="o4-mini", input_tokens=300, reasoning_tokens=40_000, visible_tokens=10,
                                  prefill_s=0.1, thinking_s=240), stream=True)
    # Out of the class, tenant and user above, so the quotas and the runaway baseline stay as they were.
    lost_tags = {"tenant": f"tenant-lost-{suffix}", "user": f"user-lost-{suffix}", "task_class": f"class-lost-{suffix}"}
    answer_lost = Call(lost_tags, Scenario(model="o4-mini", input_tokens=300, reasoning_tokens=500, visible_tokens=0,
                                           finish_reason="length"), stream=False)
    assert seed_calls(store_settings, service, [*ordinary, runaway, answer_lost]) == 0
    seed_budget_actions(store_settings, service, {**tags, "task_class": f"budget-{suffix}"}, tmp_path_factory.mktemp("budgets"))
    engine = seed_engine_metrics(client, [vllm_metrics(kv_usage=0.95, waiting=2, preemptions=1), vllm_metrics(kv_usage=0.98, waiting=6, preemptions=4)], f"host-{suffix}")
    gpu_host = f"gpu-host-{suffix}"
    seed_gpu_metrics(client, gpu_host, 2, [StandInGpu(uuid=f"GPU-{suffix}", memory=(80 * 2**30, 79 * 2**30))])
    tasks = seed_tasks(store_settings, client, service, f"graded-{suffix}")
    trace_id = client.query(
        "SELECT TraceId FROM llm_calls WHERE ServiceName = {s:String} AND reasoning_tokens = 40000", parameters={"s": service}
    ).result_rows[0][0]
    yield Seeded(service, tenant, user, task_class, trace_id, engine, gpu_host, tasks)
    # Every alert event is this module's (the evaluations here also travel a day ahead).
    client.command(f"DELETE FROM {EVENTS_TABLE} WHERE event_time >= {{t:DateTime64(3)}}", parameters={"t": started})


def settings_for(seeded: Seeded) -> AlertSettings:
    """Default thresholds, plus quotas this test's tenant and user exceed, and a smaller class minimum."""
    return AlertSettings(
        runaway_min_class_calls=NORMAL_CALLS,
        tenant_quotas={seeded.tenant: Quota(spend_usd=0.0001)},
        user_quotas={seeded.user: Quota(reasoning_tokens=10_000)},
    )


def ours(seeded: Seeded, labels: dict[str, str]) -> bool:
    return seeded.service in labels.values() or labels.get("tenant") == seeded.tenant or labels.get("host") == seeded.gpu_host or labels.get("server") == seeded.engine


@pytest.mark.parametrize("rule", build_rules(), ids=lambda rule: rule.uid)
def test_rule_query_returns_its_frame(client: Client, seeded: Seeded, rule) -> None:
    settings = settings_for(seeded)
    rule = next(r for r in build_rules(settings) if r.uid == rule.uid)
    sql = expand_alert_query(rule.sql, TimeRange.last(rule.window_s, datetime.now(timezone.utc) + timedelta(seconds=60)))
    assert "$" not in sql
    result = client.query(sql)
    assert result.result_rows, f"{rule.uid}: no rows"
    assert tuple(result.column_names) == (*rule.labels, "value")
    mine = [dict(zip(result.column_names, row)) for row in result.result_rows]
    assert any(ours(seeded, {k: str(v) for k, v in row.items()}) for row in mine), f"{rule.uid}: no row of this test's data"


def test_runaway_and_quota_breach_fire_notify_once_and_resolve(client: Client, seeded: Seeded) -> None:
    receiver = Receiver()
    notifiers = [Notifier("webhook", receiver.url + "/hook"), Notifier("slack", receiver.url + "/slack")]
    rules = build_rules(settings_for(seeded))
    now = datetime.now(timezone.utc) + timedelta(seconds=5)
    try:
        evaluation = Evaluator(rules).evaluate(client, now)
        assert not evaluation.errors
        started = {a.rule_uid: a for a in evaluation.started if ours(seeded, a.labels)}
        runaway = started["thinkmeter-runaway-reasoning"]
        assert runaway.labels["trace_id"] == seeded.runaway_trace_id and runaway.labels["task_class"] == seeded.task_class
        assert runaway.value > 2
        assert started["thinkmeter-tenant-spend-quota"].labels == {"tenant": seeded.tenant}
        assert started["thinkmeter-user-reasoning-quota"].labels == {"tenant": seeded.tenant, "user": seeded.user}
        assert "thinkmeter-tenant-reasoning-quota" not in started  # default quota, far from reached
        assert started["thinkmeter-kv-cache-saturation"].labels["server"] == seeded.engine
        assert started["thinkmeter-gpu-memory-pressure"].labels["host"] == seeded.gpu_host
        assert started["thinkmeter-cost-per-solved-task"].labels == {"service": seeded.service, "task_class": seeded.tasks.task_class}
        notify_all(notifiers, evaluation)

        # Still firing 30 s later, and after a restart (state read back from the store): nothing new.
        again = Evaluator(rules).evaluate(client, now + timedelta(seconds=30))
        assert not [a for a in again.started if ours(seeded, a.labels)]
        assert {a.fingerprint for a in started.values()} <= {a.fingerprint for a in again.firing}
        notify_all(notifiers, again)

        # A day later the request is out of every window and the quotas start over: resolved, once.
        later = Evaluator(rules)
        resolved = later.evaluate(client, now + timedelta(days=1, minutes=5))
        assert {a.fingerprint for a in started.values()} <= {a.fingerprint for a in resolved.resolved}
        notify_all(notifiers, resolved)
        assert not [a for a in later.evaluate(client, now + timedelta(days=1, minutes=6)).resolved if ours(seeded, a.labels)]
    finally:
        receiver.close()

    notified = [(alert["status"], alert["fingerprint"]) for body in receiver.bodies("/hook") for alert in body["alerts"]]
    for alert in started.values():
        assert notified.count(("firing", alert.fingerprint)) == 1
        assert notified.count(("resolved", alert.fingerprint)) == 1
    hook = receiver.bodies("/hook")[0]
    assert hook["version"] == "1" and hook["status"] == "firing"
    assert any(seeded.runaway_trace_id in body["text"] or seeded.task_class in body["text"] for body in receiver.bodies("/slack"))

    events = client.query(
        f"SELECT state, count() FROM {EVENTS_TABLE} WHERE fingerprint = {{f:String}} GROUP BY state ORDER BY state",
        parameters={"f": runaway.fingerprint},
    ).result_rows
    assert events == [("firing", 1), ("resolved", 1)]


def test_alerts_check_exit_code_and_webhook(client: Client, seeded: Seeded, tmp_path: Path, capsys) -> None:
    settings_file = tmp_path / "alerts.yaml"
    settings_file.write_text(
        f"runaway_min_class_calls: {NORMAL_CALLS}\ntenant_quotas:\n  {seeded.tenant}:\n    spend_usd: 0.0001\n"
    )
    receiver = Receiver()
    try:
        code = main(["alerts", "check", "--settings", str(settings_file), "--webhook", receiver.url + "/hook"])
    finally:
        receiver.close()
    assert code == 3
    out = capsys.readouterr().out
    assert "thinkmeter-runaway-reasoning" in out and seeded.tenant in out
    posted = [alert["labels"] for body in receiver.bodies("/hook") for alert in body["alerts"]]
    assert {"trace_id": seeded.runaway_trace_id}.items() <= next(
        labels for labels in posted if labels.get("trace_id") == seeded.runaway_trace_id
    ).items()


def test_broken_rule_keeps_its_alerts(client: Client, seeded: Seeded) -> None:
    rules = build_rules(settings_for(seeded))
    now = datetime.now(timezone.utc) + timedelta(seconds=5)
    evaluator = Evaluator(rules)
    evaluator.evaluate(client, now)
    broken = [replace(r, sql="SELECT nonsense") if r.uid == "thinkmeter-runaway-reasoning" else r for r in rules]
    evaluator.rules = broken
    evaluation = evaluator.evaluate(client, now + timedelta(seconds=10))
    assert "thinkmeter-runaway-reasoning" in evaluation.errors
    assert not [a for a in evaluation.resolved if a.rule_uid == "thinkmeter-runaway-reasoning"]


def test_payload_formats() -> None:
    from thinkmeter.alerts.evaluator import Alert, Evaluation

    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    firing = Alert("r", "Title", "warning", {"tenant": "t"}, 2.0, 1.0, "summary", "description", now)
    resolved = Alert("r", "Title", "warning", {"tenant": "u"}, None, 1.0, "summary", "description", now, now + timedelta(minutes=5))
    evaluation = Evaluation(at=now, firing=[firing], started=[firing], resolved=[resolved])
    am = alertmanager_payload(evaluation)
    assert am[0] == {"labels": {"alertname": "r", "severity": "warning", "tenant": "t"},
                     "annotations": {"title": "Title", "summary": "summary", "description": "description"},
                     "startsAt": "2026-01-01T00:00:00Z"}
    assert am[1]["endsAt"] == "2026-01-01T00:05:00Z"
    assert "[FIRING] Title" in slack_payload(evaluation)["text"] and "[RESOLVED] Title" in slack_payload(evaluation)["text"]
    assert Notifier("alertmanager", "http://am:9093").endpoint == "http://am:9093/api/v2/alerts"
    assert fingerprint("r", {"a": "1", "b": "2"}) == fingerprint("r", {"b": "2", "a": "1"})


def test_texts_render_for_grafana_and_the_evaluator() -> None:
    text = "Tenant {tenant} used {value:percent} of {value} tokens"
    assert grafana_template(text) == (
        "Tenant {{ $labels.tenant }} used {{ humanizePercentage $values.B.Value }} of {{ humanize $values.B.Value }} tokens"
    )
    assert render_text(text, {"tenant": "acme"}, 1234567.0) == "Tenant acme used 1.235e+08% of 1.235M tokens"


def test_one_definition_for_grafana_and_the_evaluator() -> None:
    settings = AlertSettings(runaway_k=3, tenant_quotas={"acme": Quota(spend_usd=5)})
    rules = build_rules(settings)
    assert len({rule.uid for rule in rules}) == len({rule.title for rule in rules}) == len(rules)
    assert all(len(rule.uid) <= 40 for rule in rules)  # Grafana rejects longer alert rule uids
    document = provisioning_file(rules)
    provisioned = {rule["uid"]: rule for group in document["groups"] for rule in group["rules"]}
    for rule in rules:
        grafana = provisioned[rule.uid]
        assert grafana["data"][0]["model"]["rawSql"] == rule.sql
        assert grafana["data"][0]["relativeTimeRange"] == {"from": rule.window_s, "to": 0}
        assert grafana["data"][2]["model"]["conditions"][0]["evaluator"] == {"type": "gt", "params": [rule.threshold]}
        assert api_rule(rule)["data"] == grafana["data"]
    assert provisioned["thinkmeter-runaway-reasoning"]["data"][2]["model"]["conditions"][0]["evaluator"]["params"] == [3.0]
    assert "transform(tenant, ['acme'], [5.0], 500.0)" in next(r.sql for r in rules if r.uid == "thinkmeter-tenant-spend-quota")


def test_cost_per_solved_task_against_its_baseline(client: Client, seeded: Seeded) -> None:
    """The rule's value is the last day's cost per solved task over the week before's, worked out from
    the seeded scenarios' prices; it fires above cost_per_solved_k."""
    rule = next(r for r in build_rules(settings_for(seeded)) if r.uid == "thinkmeter-cost-per-solved-task")
    sql = expand_alert_query(rule.sql, TimeRange.last(rule.window_s, datetime.now(timezone.utc) + timedelta(seconds=60)))
    rows = {row[1]: row[2] for row in client.query(sql).result_rows if row[0] == seeded.service}
    expected = seeded.tasks.recent_cost_per_solved / seeded.tasks.baseline_cost_per_solved
    assert rows[seeded.tasks.task_class] == pytest.approx(expected, rel=1e-9)
    assert expected > rule.threshold  # so it fires (test_runaway_and_quota_breach_fire_notify_once_and_resolve)
