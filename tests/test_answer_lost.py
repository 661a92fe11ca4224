"""Answer lost to reasoning: a call that hit its output cap while still thinking (billed, no visible
answer) is marked on its span and in llm_calls, listed by `thinkmeter report`, counted by the Reasoning
dashboard's panel and fires the alert rule. Calls go through the span path into the session's chDB store;
the recorded Gemini reply that lost its answer is replayed through the real SDK in test_cassettes."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from clickhouse_connect.driver.client import Client

from tests.conftest import make_traced
from thinkmeter import reports
from thinkmeter.alerts.rules import build_rules
from thinkmeter.cli.report import format_report
from thinkmeter.config import Settings
from thinkmeter.instrumentation._telemetry import Call, Telemetry
from thinkmeter.pricing import PriceTable
from thinkmeter.schemas.grafana_sql import TimeRange, expand_alert_query
from thinkmeter.schemas.record import CallRecord, Source, Usage
from thinkmeter.store import store_session


def _record(model: str, reason: str, output: int, reasoning: int | None) -> CallRecord:
    source = Source.REPORTED if reasoning is not None else Source.UNKNOWN
    usage = Usage(input_tokens=50, output_tokens=output, reasoning_tokens=reasoning, output_source=Source.REPORTED, reasoning_source=source)
    return CallRecord(provider="openai", request_model=model, response_model=model, finish_reasons=(reason,), usage=usage, cost_usd=0.25, cost_source="reported")


@pytest.mark.parametrize(
    ("reason", "output", "reasoning", "lost"),
    [
        ("length", 4096, 4096, True),  # every token was reasoning
        ("max_tokens", 4096, 4096, True),  # Anthropic's spelling
        ("max_output_tokens", 4096, 4096, True),  # Responses incomplete_details.reason
        ("length", 4096, 4000, False),  # cut short, but some answer came back
        ("stop", 900, 900, False),  # all reasoning, yet it ended by itself (e.g. a tool call follows)
        ("length", 4096, None, None),  # reasoning unknown: so is the visible part
    ],
)
def test_answer_lost_is_the_length_cap_with_nothing_visible(reason: str, output: int, reasoning: int | None, lost: bool | None) -> None:
    assert _record("m", reason, output, reasoning).answer_lost is lost


def test_lost_answers_reach_the_report_the_alert_and_the_panel(store_settings: Settings, service_name: str) -> None:
    model = f"o-lost-{uuid.uuid4().hex[:8]}"
    provider, processor = make_traced(store_settings, service_name)
    telemetry = Telemetry(provider, None, PriceTable.load())
    for record in (_record(model, "length", 4096, 4096), _record(model, "length", 4096, 4096), _record(model, "stop", 900, 800)):
        Call(telemetry, record).finish()
    assert processor.force_flush(30_000)
    provider.shutdown()

    with store_session(store_settings) as client:
        assert _column(client, service_name) == [False, True, True]
        lost = [row for row in reports.spend_report(client, 3600)["answer_lost"] if row["model"] == model]
        assert lost == [{"model": model, "task_class": "", "answers_lost": 2, "total_cost_usd": 0.5, "calls_without_price": 0}]
        assert "Answers lost to reasoning" in format_report(reports.spend_report(client, 3600))

        rule = next(r for r in build_rules() if r.uid == "thinkmeter-answer-lost-to-reasoning")
        now = datetime.now(timezone.utc) + timedelta(seconds=60)
        result = client.query(expand_alert_query(rule.sql, TimeRange.last(rule.window_s, now)))
        rows = [dict(zip(result.column_names, row)) for row in result.result_rows]
        assert {"service": service_name, "model": model, "task_class": "", "value": 2.0} in rows
        assert 2.0 > rule.threshold


def _column(client: Client, service_name: str) -> list[bool | None]:
    result = client.query("SELECT answer_lost FROM llm_calls WHERE ServiceName = {s:String} ORDER BY answer_lost", parameters={"s": service_name})
    return [row[0] for row in result.result_rows]
