"""The span path end to end: real OTel SDK spans -> ClickHouseSpanProcessor -> segments -> real chDB tables
(ingested as `thinkmeter serve` does), and into a server with segments kept while it is down."""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from tests.conftest import TracedFactory, finish_span_emitter, make_traced, start_span_emitter
from thinkmeter.config import Settings
from thinkmeter.export import ClickHouseSpanProcessor, attribute_value, build_span_processor
from thinkmeter.schemas import semconv as sc
from thinkmeter.segments import block_rows, ingest_segments, pending_segments
from thinkmeter.store import store_session

FULL_CALL = {
    sc.OPERATION: "chat",
    sc.PROVIDER: "openai",
    sc.REQUEST_MODEL: "o3",
    sc.RESPONSE_MODEL: "o3-2025-04-16",
    sc.RESPONSE_ID: "resp_1",
    sc.RESPONSE_FINISH_REASONS: ("stop", "length"),
    sc.REQUEST_STREAM: True,
    sc.REQUEST_MAX_TOKENS: 4096,
    sc.REQUEST_REASONING_LEVEL: "high",
    sc.REQUEST_THINKING_BUDGET: 2048,
    sc.SERVER_ADDRESS: "127.0.0.1",
    sc.ENGINE: "vllm",
    sc.INPUT_TOKENS: 1200,
    sc.CACHE_READ_TOKENS: 1000,
    sc.CACHE_WRITE_TOKENS: 0,
    sc.OUTPUT_TOKENS: 900,
    sc.REASONING_TOKENS: 700,
    sc.VISIBLE_OUTPUT_TOKENS: 200,
    sc.REASONING_SOURCE: "reported",
    sc.OUTPUT_SOURCE: "reported",
    sc.TIME_TO_FIRST_CHUNK: 0.25,
    sc.TIME_TO_FIRST_TOKEN: 0.5,
    sc.TIME_TO_FIRST_VISIBLE_TOKEN: 7.75,
    sc.TIME_PER_OUTPUT_TOKEN: 0.0125,
    sc.COST_USD: 0.0123,
    sc.REASONING_COST_USD: 0.0098,
    sc.COST_SOURCE: "price_table",
    sc.TENANT: "acme",
    sc.USER: "u1",
    sc.SESSION: "s1",
    sc.FEATURE: "search",
    sc.TASK_CLASS: "qa",
}

FULL_CALL_ROW = {
    "operation": "chat",
    "provider": "openai",
    "request_model": "o3",
    "response_model": "o3-2025-04-16",
    "model": "o3-2025-04-16",
    "response_id": "resp_1",
    "finish_reasons": ["stop", "length"],
    "stream": 1,
    "max_tokens": 4096,
    "reasoning_level": "high",
    "thinking_budget_tokens": 2048,
    "server_address": "127.0.0.1",
    "engine": "vllm",
    "input_tokens": 1200,
    "cache_read_tokens": 1000,
    "cache_write_tokens": 0,
    "output_tokens": 900,
    "reasoning_tokens": 700,
    "visible_output_tokens": 200,
    "reasoning_source": "reported",
    "output_source": "reported",
    "time_to_first_chunk_s": 0.25,
    "time_to_first_token_s": 0.5,
    "time_to_first_visible_token_s": 7.75,
    "time_per_output_token_s": 0.0125,
    "cost_usd": 0.0123,
    "reasoning_cost_usd": 0.0098,
    "cost_source": "price_table",
    "tenant": "acme",
    "user": "u1",
    "session": "s1",
    "feature": "search",
    "task_class": "qa",
    "error_type": "",
    "StatusCode": "STATUS_CODE_OK",
}

# Nothing reported: every count, timing and cost is NULL, never 0.
BARE_CALL = {sc.OPERATION: "chat", sc.PROVIDER: "anthropic", sc.REQUEST_MODEL: "claude-x", sc.ERROR_TYPE: "timeout"}
BARE_CALL_ROW = {
    **{key: None for key in FULL_CALL_ROW if key.endswith(("_tokens", "_s", "_usd"))},
    "operation": "chat",
    "provider": "anthropic",
    "request_model": "claude-x",
    "response_model": "",
    "model": "claude-x",
    "response_id": "",
    "finish_reasons": [],
    "stream": 0,
    "max_tokens": None,
    "reasoning_level": "",
    "server_address": "",
    "engine": "",
    "reasoning_source": "unknown",
    "output_source": "unknown",
    "cost_source": "",
    "tenant": "",
    "user": "",
    "session": "",
    "feature": "",
    "task_class": "",
    "error_type": "timeout",
    "StatusCode": "STATUS_CODE_ERROR",
}


def _rows(store: Client, sql: str, service_name: str) -> list[dict]:
    return list(store.query(sql, parameters={"service": service_name}).named_results())


def test_sdk_spans_land_in_otel_traces_llm_calls_and_the_rollup(
    traced: TracedFactory, store: Client, store_settings: Settings, service_name: str
) -> None:
    provider, processor = traced()
    tracer = provider.get_tracer("thinkmeter", "1.2.3")
    with tracer.start_as_current_span("invoke_agent") as parent:
        with tracer.start_as_current_span(
            "chat o3", kind=SpanKind.CLIENT, links=[Link(parent.get_span_context(), {"why": "retry"})]
        ) as full:
            full.set_attributes(FULL_CALL)
            full.add_event("gen_ai.choice", {"index": 0, "score": 1.0})
            full.set_status(Status(StatusCode.OK))
        with tracer.start_as_current_span("chat claude-x", kind=SpanKind.CLIENT) as bare:
            bare.set_attributes(BARE_CALL)
            bare.set_status(Status(StatusCode.ERROR, "timed out"))

    assert processor.force_flush(30_000)

    assert processor.pending_spans == 0
    assert ingest_segments(store, store_settings.segments_dir) >= 3
    full_ctx, parent_ctx = full.get_span_context(), parent.get_span_context()
    [trace] = _rows(
        store,
        "SELECT toUnixTimestamp64Nano(Timestamp) AS ts, TraceId, SpanId, ParentSpanId, SpanKind, ScopeName,"
        " ScopeVersion, ResourceAttributes['service.name'] AS service, SpanAttributes, Duration, StatusCode,"
        " Events.Name, arrayMap(t -> toUnixTimestamp64Nano(t), Events.Timestamp) AS event_ts, Events.Attributes,"
        " Links.TraceId, Links.SpanId, Links.Attributes"
        " FROM otel_traces WHERE ServiceName = {service:String} AND SpanName = 'chat o3'",
        service_name,
    )
    assert trace == {
        "ts": full.start_time,
        "TraceId": format(full_ctx.trace_id, "032x"),
        "SpanId": format(full_ctx.span_id, "016x"),
        "ParentSpanId": format(parent_ctx.span_id, "016x"),
        "SpanKind": "SPAN_KIND_CLIENT",
        "ScopeName": "thinkmeter",
        "ScopeVersion": "1.2.3",
        "service": service_name,
        "SpanAttributes": {key: attribute_value(value) for key, value in FULL_CALL.items()},
        "Duration": full.end_time - full.start_time,
        "StatusCode": "STATUS_CODE_OK",
        "Events.Name": ["gen_ai.choice"],
        "event_ts": [full.events[0].timestamp],
        "Events.Attributes": [{"index": "0", "score": "1"}],
        "Links.TraceId": [format(parent_ctx.trace_id, "032x")],
        "Links.SpanId": [format(parent_ctx.span_id, "016x")],
        "Links.Attributes": [{"why": "retry"}],
    }
    assert trace["SpanAttributes"][sc.RESPONSE_FINISH_REASONS] == '["stop","length"]'
    assert trace["SpanAttributes"][sc.REQUEST_STREAM] == "true"

    calls = _rows(
        store,
        "SELECT * EXCEPT (Timestamp, TraceId, SpanId, ServiceName, duration_s), toUnixTimestamp64Nano(Timestamp) AS ts,"
        " duration_s FROM llm_calls WHERE ServiceName = {service:String} ORDER BY provider DESC",
        service_name,
    )
    assert len(calls) == 2  # the invoke_agent span has no gen_ai.operation.name
    for row, span, expected in ((calls[0], full, FULL_CALL_ROW), (calls[1], bare, BARE_CALL_ROW)):
        assert row.pop("ts") == span.start_time
        assert row.pop("duration_s") == pytest.approx((span.end_time - span.start_time) / 1e9)
        assert {key: row[key] for key in expected} == expected

    [hourly] = _rows(
        store,
        "SELECT sum(calls) AS calls, sum(errors) AS errors, sum(output_tokens) AS output_tokens,"
        " sum(reasoning_tokens) AS reasoning_tokens, sum(unknown_reasoning_calls) AS unknown_reasoning,"
        " sum(cost_usd) AS cost, sum(unknown_cost_calls) AS unknown_cost,"
        " quantilesTDigestMerge(0.5, 0.9, 0.95, 0.99)(ttft_s_q) AS ttft,"
        " quantilesTDigestMerge(0.5, 0.9, 0.95, 0.99)(reasoning_tokens_q) AS reasoning_q"
        " FROM llm_calls_hourly WHERE ServiceName = {service:String}",
        service_name,
    )
    assert hourly == {
        "calls": 2,
        "errors": 1,
        "output_tokens": 900,
        "reasoning_tokens": 700,
        "unknown_reasoning": 1,
        "cost": pytest.approx(0.0123),
        "unknown_cost": 1,
        "ttft": [0.5] * 4,  # the unknown TTFT is left out, not counted as 0
        "reasoning_q": [700.0] * 4,
    }

    lookup = store.query(
        "SELECT count() FROM otel_traces_trace_id_ts WHERE TraceId = {t:String}",
        parameters={"t": format(full_ctx.trace_id, "032x")},
    )
    assert lookup.first_row[0] >= 1


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        (True, "true"),
        (False, "false"),
        (42, "42"),
        (1.0, "1"),
        (0.1, "0.1"),
        (-0.0, "-0"),
        (1e-7, "1e-7"),
        (0.00001, "0.00001"),
        (1.5e20, "150000000000000000000"),
        (1e21, "1e+21"),
        ("plain", "plain"),
        (("stop",), '["stop"]'),
        ((1, 2.5, True), "[1,2.5,true]"),
    ],
)
def test_attribute_values_are_encoded_like_the_collector(value: object, stored: str) -> None:
    assert attribute_value(value) == stored


def test_processes_writing_segments_at_once_each_store_every_span_once(
    store_settings: Settings, service_name: str
) -> None:
    # Three processes write segments into one data dir at once, with no lock between them; the next
    # reader ingests them.
    per_process = 150
    services = [f"{service_name}-{i}" for i in range(3)]
    emitters = [start_span_emitter(store_settings.data_dir, s, per_process, 60_000) for s in services]
    results = [finish_span_emitter(emitter) for emitter in emitters]

    assert results == [{"flushed": True, "dropped": 0}] * 3
    with store_session(store_settings) as client:
        for service in services:
            rows = _rows(
                client,
                "SELECT count() AS spans, uniqExact(SpanId) AS distinct_spans,"
                " (SELECT count() FROM llm_calls WHERE ServiceName = {service:String}) AS calls"
                " FROM otel_traces WHERE ServiceName = {service:String}",
                service,
            )
            assert rows == [{"spans": per_process, "distinct_spans": per_process, "calls": per_process}]


def test_full_queue_drops_and_counts_without_blocking(
    traced: TracedFactory, store: Client, store_settings: Settings, service_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The export thread only wakes on force_flush: with 5 slots, 15 of 20 spans must be dropped.
    provider, processor = traced(queue_size=5, batch_size=1_000, flush_interval_s=3_600)
    tracer = provider.get_tracer("thinkmeter")
    with caplog.at_level(logging.WARNING, logger="thinkmeter.export"):
        for _ in range(20):
            with tracer.start_as_current_span("chat m") as span:
                span.set_attribute(sc.OPERATION, "chat")

        assert processor.dropped_spans == 15
        assert processor.pending_spans == 5
        assert [r.message for r in caplog.records].count(caplog.records[0].message) == 1
        assert "export queue full" in caplog.records[0].message

        assert processor.force_flush(30_000)

    assert processor.pending_spans == 0
    ingest_segments(store, store_settings.segments_dir)
    spans = store.query(
        "SELECT count() FROM otel_traces WHERE ServiceName = {service:String}", parameters={"service": service_name}
    )
    assert spans.first_row[0] == 5


def test_segments_beyond_the_bound_are_dropped_counted_and_logged_once(
    tmp_path: Path, service_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Nothing ingests this data dir (no serve): the segments directory fills up to its bound.
    settings = Settings(data_dir=tmp_path, batch_size=10, flush_interval_s=3_600, segments_max_bytes=20_000)
    provider, processor = make_traced(settings, service_name)
    tracer = provider.get_tracer("thinkmeter")
    with caplog.at_level(logging.WARNING, logger="thinkmeter.export"):
        for round_ in range(20):
            for _ in range(10):
                with tracer.start_as_current_span("chat m") as span:
                    span.set_attributes(FULL_CALL)
            processor.force_flush(10_000)
        provider.shutdown()
    kept = sum(block_rows(path.read_bytes()) for path in pending_segments(settings.segments_dir))
    assert processor.dropped_spans > 0 and kept + processor.dropped_spans == 200
    assert sum(path.stat().st_size for path in pending_segments(settings.segments_dir)) <= 20_000
    assert [r.getMessage() for r in caplog.records if "is full" in r.getMessage()] == [caplog.records[0].getMessage()]


def test_unreachable_server_keeps_spans_as_segments(
    tmp_path: Path, store: Client, service_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = Settings(data_dir=tmp_path, clickhouse_url=f"http://127.0.0.1:{port}/default")
    provider, processor = make_traced(settings, service_name)
    tracer = provider.get_tracer("thinkmeter")
    with caplog.at_level(logging.WARNING, logger="thinkmeter.export"):
        for _ in range(3):
            with tracer.start_as_current_span("chat m") as span:
                span.set_attribute(sc.OPERATION, "chat")
        assert processor.force_flush(10_000) is False
        provider.shutdown()

    assert any("could not write spans" in record.message for record in caplog.records)
    assert len(pending_segments(settings.segments_dir)) >= 1
    # They are ordinary segments: once a store is reachable they go in, once.
    ingest_segments(store, settings.segments_dir)
    spans = store.query(
        "SELECT count() FROM otel_traces WHERE ServiceName = {service:String}", parameters={"service": service_name}
    )
    assert spans.first_row[0] == 3


def test_build_span_processor_follows_the_exporter_setting(store_settings: Settings) -> None:
    assert build_span_processor(store_settings.model_copy(update={"exporter": "none"})) is None
    otlp = build_span_processor(store_settings.model_copy(update={"exporter": "otlp"}))
    assert isinstance(otlp, BatchSpanProcessor)
    otlp.shutdown()
    ours = build_span_processor(store_settings)
    assert isinstance(ours, ClickHouseSpanProcessor)
    ours.shutdown()
    ours.shutdown()  # a second shutdown is harmless
    assert ours.force_flush(1_000)  # nothing pending


def test_forked_child_gets_its_own_empty_exporter(traced: TracedFactory) -> None:
    provider, processor = traced(flush_interval_s=3_600)
    with provider.get_tracer("thinkmeter").start_as_current_span("chat m"):
        pass
    assert processor.pending_spans == 1
    parent_worker = processor._worker

    pid = os.fork()
    if pid == 0:  # child: report through the exit status only, and leave without running any cleanup
        fresh = processor.pending_spans == 0 and processor._worker is not parent_worker and processor._worker.is_alive()
        os._exit(0 if fresh else 1)
    _, status = os.waitpid(pid, 0)

    assert os.waitstatus_to_exitcode(status) == 0
    assert processor.pending_spans == 1  # the parent's span is still the parent's to export


def test_forked_child_of_a_store_user_writes_segments_without_touching_the_store(
    traced: TracedFactory, store: Client, store_settings: Settings, service_name: str
) -> None:
    """chDB's engine hangs a process forked after it started (this test process has it running): the
    child's exporter only writes a segment, quickly, for the store's owner to ingest."""
    provider, processor = traced()
    pid = os.fork()
    if pid == 0:  # child: report through the exit status only, and leave without running any cleanup
        with provider.get_tracer("thinkmeter").start_as_current_span("chat forked-child"):
            pass
        started = time.monotonic()
        flushed = processor.force_flush(5_000)
        os._exit(0 if flushed and time.monotonic() - started < 1.0 else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the child could not write its segment at once"

    ingest_segments(store, store_settings.segments_dir)
    assert _rows(store, "SELECT SpanName FROM otel_traces WHERE ServiceName = {service:String}", service_name) == [
        {"SpanName": "chat forked-child"}
    ]
