"""Schema, store sessions and segment ingest, against the session's real embedded ClickHouse (chDB)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.conftest import finish_span_emitter, start_span_emitter
from thinkmeter.cli import main
from thinkmeter.config import Settings
from thinkmeter.export import spans_to_columns
from thinkmeter.schemas.ddl import SQL_DIR, render
from thinkmeter.segments import (
    SEGMENT_SUFFIX,
    TRACE_COLUMN_NAMES,
    TRACES_TABLE,
    SegmentWriter,
    ingest_segments,
    pending_segments,
    trace_block,
)
from thinkmeter.store import apply_schema, query_rows, server_client_args, store_session

SCHEMA_FILES = sorted(path.name for path in SQL_DIR.glob("*.sql"))


def _scratch_database(store: Client) -> str:
    name = f"tm_{uuid.uuid4().hex[:10]}"
    store.command(f"CREATE DATABASE {name}")
    return name


def _tables(store: Client, database: str) -> dict[str, str]:
    rows = store.query(
        "SELECT name, create_table_query FROM system.tables WHERE database = {db:String}", parameters={"db": database}
    ).result_rows
    return dict(rows)


def test_applying_the_schema_twice_changes_nothing(store: Client) -> None:
    database = _scratch_database(store)
    first = apply_schema(store, database=database)
    assert [(a.name, a.status) for a in first] == [(name, "applied") for name in SCHEMA_FILES]
    tables = _tables(store, database)
    assert {
        "thinkmeter_schema_migrations",
        "otel_traces",
        "otel_traces_trace_id_ts",
        "otel_traces_trace_id_ts_mv",
        "llm_calls",
        "llm_calls_mv",
        "llm_calls_hourly",
        "llm_calls_hourly_mv",
    } <= set(tables)

    second = apply_schema(store, database=database)

    assert [(a.name, a.status) for a in second] == [(name, "already applied") for name in SCHEMA_FILES]
    assert _tables(store, database) == tables
    recorded = store.query(f"SELECT name, version FROM {database}.thinkmeter_schema_migrations FINAL ORDER BY name")
    assert recorded.result_rows == [(name, int(name.split("_")[0])) for name in SCHEMA_FILES]
    store.command(f"DROP DATABASE {database}")


def test_ttl_option_reaches_new_and_existing_tables(store: Client) -> None:
    database = _scratch_database(store)
    apply_schema(store, database=database)
    assert "TTL" not in _tables(store, database)["otel_traces"]

    apply_schema(store, database=database, ttl_days=7)

    tables = _tables(store, database)
    assert "TTL toDateTime(Timestamp) + toIntervalDay(7)" in tables["otel_traces"]
    assert "TTL toDateTime(Timestamp) + toIntervalDay(7)" in tables["llm_calls"]
    assert "TTL toDateTime(Start) + toIntervalDay(7)" in tables["otel_traces_trace_id_ts"]
    assert "TTL" not in tables["llm_calls_hourly"]  # the rollup outlives the raw rows
    store.command(f"DROP DATABASE {database}")


def test_cluster_ddl_has_on_cluster_and_replicated_engines() -> None:
    statements = render(cluster="analytics", database="obs", ttl_days=30)

    creates = [s for _, s in statements if "CREATE " in s]
    assert creates and all("ON CLUSTER analytics" in s for s in creates)
    engines = [s for s in creates if "ENGINE =" in s]
    assert engines and all(
        "ENGINE = Replicated" in s and "('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')" in s
        for s in engines
    )
    assert all("default." not in s and "{{" not in s and not s.rstrip().endswith(";") for _, s in statements)
    traces = next(s for _, s in statements if "obs.otel_traces ON CLUSTER analytics (" in s)
    assert "TTL toDateTime(Timestamp) + toIntervalDay(30)" in traces

    local = render()
    assert not any("ON CLUSTER" in s or "Replicated" in s or "toIntervalDay" in s for _, s in local)
    assert [name for name, _ in local] == [name for name, _ in statements]


def test_otel_traces_has_the_collector_exporter_columns(store: Client) -> None:
    columns = [row[0] for row in store.query("DESCRIBE TABLE otel_traces").result_rows]
    assert columns == [*TRACE_COLUMN_NAMES, "ResourceAttributeItems", "SpanAttributeItems"]


def test_schema_cli_shows_and_applies(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "show", "--cluster", "prod", "--database", "obs"]) == 0
    shown = capsys.readouterr().out
    assert "CREATE TABLE IF NOT EXISTS obs.otel_traces ON CLUSTER prod (" in shown
    assert "ReplicatedAggregatingMergeTree(" in shown

    assert main(["schema", "apply"]) == 0
    applied = capsys.readouterr().out
    assert all(f"{name}: already applied" in applied for name in SCHEMA_FILES)


def test_server_url_is_parsed_into_client_arguments() -> None:
    assert server_client_args("https://bob:s%40cret@ch.example.com/analytics") == {
        "host": "ch.example.com",
        "port": 8443,
        "interface": "https",
        "username": "bob",
        "password": "s@cret",
        "database": "analytics",
    }
    with pytest.raises(ValueError, match="http"):
        server_client_args("tcp://ch:9000")


# ---------------------------------------------------------------------------------------------- segments


def _llm_span_columns(service_name: str, count: int) -> dict[str, list]:
    """otel_traces columns of `count` real SDK spans, as the exporter writes them."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("thinkmeter")
    for i in range(count):
        with tracer.start_as_current_span("chat m") as span:
            span.set_attributes(
                {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": "m",
                    "gen_ai.usage.output_tokens": 10 + i,
                }
            )
    return spans_to_columns(memory.get_finished_spans())


def _stored(store: Client, service_name: str) -> tuple[int, int, int, int]:
    """(otel_traces rows, distinct span ids, llm_calls rows, calls in the hourly rollup) of one service."""
    params = {"service": service_name}
    traces, distinct = store.query(
        "SELECT count(), uniqExact(SpanId) FROM otel_traces WHERE ServiceName = {service:String}", parameters=params
    ).first_row
    calls = store.query("SELECT count() FROM llm_calls WHERE ServiceName = {service:String}", parameters=params)
    hourly = store.query(
        "SELECT sum(calls) FROM llm_calls_hourly WHERE ServiceName = {service:String}", parameters=params
    )
    return traces, distinct, calls.first_row[0], hourly.first_row[0]


def _write_segment(directory: Path, service_name: str, count: int) -> Path:
    return SegmentWriter(directory, 1 << 30).write(TRACES_TABLE, trace_block(_llm_span_columns(service_name, count)))


def test_batch_reingested_after_a_crash_is_stored_once(store: Client, service_name: str, tmp_path: Path) -> None:
    segments = tmp_path / "segments"
    written = [_write_segment(segments, service_name, 3), _write_segment(segments, service_name, 2)]
    contents = {path.name: path.read_bytes() for path in written}

    assert ingest_segments(store, segments) == 5  # one insert: both segments in one claimed batch
    assert pending_segments(segments) == []
    assert _stored(store, service_name) == (5, 5, 5, 5)

    # kill -9 between the insert and the deletion of the claim: the claim is still there.
    claim = segments / ".claimed" / f"{TRACES_TABLE}.{written[0].name[len(TRACES_TABLE) + 1 : -len(SEGMENT_SUFFIX)]}+2"
    claim.mkdir(parents=True)
    for name, data in contents.items():
        (claim / name).write_bytes(data)
    assert ingest_segments(store, segments) == 5
    assert not claim.exists()
    assert _stored(store, service_name) == (5, 5, 5, 5)


def test_unreadable_segment_is_set_aside_and_the_rest_ingested(store: Client, service_name: str, tmp_path: Path) -> None:
    segments = tmp_path / "segments"
    good = _write_segment(segments, service_name, 2)
    truncated = _write_segment(segments, service_name, 3)
    truncated.write_bytes(truncated.read_bytes()[:-40])
    garbage = segments / f"{TRACES_TABLE}.00000000000000000000-1-garbage{SEGMENT_SUFFIX}"
    garbage.write_bytes(b"\x16\x02not a native block at all")

    assert ingest_segments(store, segments) == 2

    assert pending_segments(segments) == []
    assert garbage.with_name(garbage.name + ".bad").exists()
    assert truncated.with_name(truncated.name + ".bad").exists()
    assert not good.exists()
    assert _stored(store, service_name) == (2, 2, 2, 2)


def test_segments_written_while_the_store_is_held_survive_the_process(store_settings: Settings, service_name: str) -> None:
    count = 40
    with store_session(store_settings) as client:
        # Another process writes spans while this one holds the store, then exits: it never waits for it.
        result = finish_span_emitter(start_span_emitter(store_settings.data_dir, service_name, count, 30_000))
        assert result == {"flushed": True, "dropped": 0}
        assert pending_segments(store_settings.segments_dir)
        assert _stored(client, service_name) == (0, 0, 0, 0)

        ingest_segments(client, store_settings.segments_dir)
        assert _stored(client, service_name) == (count, count, count, count)
        ingest_segments(client, store_settings.segments_dir)  # nothing left: a no-op
        assert _stored(client, service_name) == (count, count, count, count)

    rows = query_rows(
        store_settings,
        "SELECT count() AS calls, sum(output_tokens) AS tokens FROM llm_calls WHERE ServiceName = {service:String}",
        {"service": service_name},
    )
    assert rows == [{"calls": count, "tokens": sum(range(count))}]
