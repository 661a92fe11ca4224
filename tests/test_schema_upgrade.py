"""Upgrading a store made by an older release, in the session's real embedded ClickHouse (chDB).

tests/data/schema_99565f8/ is the DDL of commit 99565f8 (before the contract table, answer_lost, tasks
and the cache_write rename), frozen as test data: the files that differ from today's plus those they need.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from clickhouse_connect.driver.client import Client
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from thinkmeter.export import spans_to_columns
from thinkmeter.schemas.ddl import SQL_DIR, add_columns_statement, created_object, drop_view_statement, render
from thinkmeter.segments import TRACES_TABLE, insert_blocks, trace_block
from thinkmeter.store import apply_schema

OLD_SCHEMA = Path(__file__).with_name("data") / "schema_99565f8"
SCHEMA_FILES = sorted(path.name for path in SQL_DIR.glob("*.sql"))


class InsertOnly:
    """A least-privilege writer: it may read and insert, and every DDL statement is refused."""

    def __init__(self, client: Client):
        self.query = client.query
        self.insert = client.insert

    def command(self, statement: str) -> Any:
        raise PermissionError(f"ACCESS_DENIED: {statement[:60]}")


def _database(store: Client) -> str:
    name = f"tm_{uuid.uuid4().hex[:10]}"
    store.command(f"CREATE DATABASE {name}")
    return name


def _write_calls(store: Client, database: str, service: str, attributes: dict[str, Any], count: int) -> None:
    """`count` thinkmeter call spans into otel_traces, the way the exporter writes them."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    for _ in range(count):
        with provider.get_tracer("thinkmeter").start_as_current_span("chat o4-mini") as span:
            span.set_attributes(
                {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "o4-mini"}
                | attributes
            )
    block = trace_block(spans_to_columns(memory.get_finished_spans()))
    insert_blocks(store, TRACES_TABLE, database, uuid.uuid4().hex, [block])


def _columns(store: Client, database: str, table: str) -> dict[str, str]:
    rows = store.query(
        "SELECT name, type FROM system.columns WHERE database = {db:String} AND table = {table:String}",
        parameters={"db": database, "table": table},
    ).result_rows
    return dict(rows)


def _statuses(actions: list) -> dict[str, str]:
    return {action.name: action.status for action in actions}


def test_a_store_from_99565f8_is_upgraded_in_place_and_keeps_its_rows(store: Client) -> None:
    old, fresh = _database(store), _database(store)
    apply_schema(store, database=old, sql_dir=OLD_SCHEMA)  # what that release's `schema apply` left
    apply_schema(store, database=fresh)
    _write_calls(store, old, "before", {"gen_ai.usage.cache_creation.input_tokens": 7}, 3)
    assert "task_id" not in _columns(store, old, "llm_calls")

    upgrade = _statuses(apply_schema(store, database=old))

    assert all(upgrade[name] == "already applied" for name in ("00_migrations.sql", "10_traces.sql"))
    assert upgrade["50_tasks.sql"] == "applied"
    calls, hourly = upgrade["20_llm_calls.sql"], upgrade["25_llm_calls_hourly.sql"]
    assert calls.startswith("migrated: llm_calls +") and "except" not in calls, calls
    assert all(column in calls for column in ("answer_lost", "task_id")) and "llm_calls_mv recreated" in calls
    assert hourly.startswith("migrated: llm_calls_hourly +") and "answer_lost_calls" in hourly, hourly
    for table in ("llm_calls", "llm_calls_hourly"):  # the same columns and types as a store made today
        assert _columns(store, old, table) == _columns(store, fresh, table)

    _write_calls(
        store,
        old,
        "after",
        {
            "gen_ai.usage.cache_write.input_tokens": 11,
            "gen_ai.response.finish_reasons": ("length",),
            "thinkmeter.answer_lost": True,
            "thinkmeter.task.id": "ticket-1",
        },
        2,
    )
    rows = store.query(
        f"SELECT ServiceName, count(), any(cache_write_tokens), any(answer_lost), any(task_id)"
        f" FROM {old}.llm_calls GROUP BY ServiceName ORDER BY ServiceName"
    ).result_rows
    assert rows == [("after", 2, 11, True, "ticket-1"), ("before", 3, 7, None, "")]
    rollup = store.query(f"SELECT sum(calls), sum(answer_lost_calls) FROM {old}.llm_calls_hourly").first_row
    assert rollup == (5, 2)

    tables = f"SELECT name, create_table_query FROM system.tables WHERE database = '{old}'"
    before = store.query(tables).result_rows
    again = apply_schema(InsertOnly(store), database=old)  # nothing changed: no DDL needed
    assert [(a.name, a.status) for a in again] == [(name, "already applied") for name in SCHEMA_FILES]
    assert store.query(tables).result_rows == before
    store.command(f"DROP DATABASE {old}")
    store.command(f"DROP DATABASE {fresh}")


def test_migrating_every_file_of_a_current_store_changes_no_column(store: Client) -> None:
    """The DDL reader agrees with ClickHouse on every table of today's schema (Nested, ALIAS, Boolean, codecs)."""
    database = _database(store)
    apply_schema(store, database=database)
    migrations = f"{database}.thinkmeter_schema_migrations"
    store.command(f"INSERT INTO {migrations} (name, version, checksum) SELECT name, version, 'old' FROM {migrations}")

    statuses = _statuses(apply_schema(store, database=database))

    assert list(statuses) == SCHEMA_FILES
    for name, status in statuses.items():
        assert status.startswith("migrated: "), (name, status)
        assert not any(change in status for change in (" +", "except", "keeps")), (name, status)
    assert _statuses(apply_schema(store, database=database)) == {name: "already applied" for name in SCHEMA_FILES}
    store.command(f"DROP DATABASE {database}")


def test_a_changed_column_type_is_reported_and_left_alone(store: Client) -> None:
    database = _database(store)
    apply_schema(store, database=database)
    store.command(f"ALTER TABLE {database}.llm_calls MODIFY COLUMN max_tokens Nullable(UInt64)")
    store.command(
        f"INSERT INTO {database}.thinkmeter_schema_migrations (name, version, checksum) VALUES ('20_llm_calls.sql', 20, 'old')"
    )

    for _ in range(2):  # not recorded as applied: every apply says it again
        status = _statuses(apply_schema(store, database=database))["20_llm_calls.sql"]
        assert "except: llm_calls.max_tokens is Nullable(UInt64) in the store, Nullable(UInt32) in the schema" in status
        assert "MODIFY COLUMN" in status
    assert _columns(store, database, "llm_calls")["max_tokens"] == "Nullable(UInt64)"
    store.command(f"DROP DATABASE {database}")


def test_migration_statements_on_a_cluster() -> None:
    calls = next(created_object(s) for _, s in render(database="obs") if "CREATE TABLE IF NOT EXISTS obs.llm_calls " in s)
    task_id = next(c for c in calls.columns if c.name == "task_id")
    assert add_columns_statement("obs", "llm_calls", [(task_id, "task_class")], cluster="prod") == (
        "ALTER TABLE obs.llm_calls ON CLUSTER prod ADD COLUMN IF NOT EXISTS task_id String CODEC(ZSTD(1)) AFTER task_class"
    )
    dropped = drop_view_statement("obs", "llm_calls_mv", cluster="prod")
    assert dropped == "DROP VIEW IF EXISTS obs.llm_calls_mv ON CLUSTER prod SYNC"
