"""The names contract: one table (schemas/contract.py) drives span attributes, llm_calls columns and the
materialized view; the insert column lists (schemas/tables.py) match the tables the DDL creates."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

import thinkmeter
from tests.conftest import make_traced
from thinkmeter.config import Settings
from thinkmeter.instrumentation._telemetry import Call, Telemetry
from thinkmeter.pricing import PriceTable
from thinkmeter.schemas import semconv as sc
from thinkmeter.schemas.contract import SPAN_COLUMNS, STORED_COLUMNS
from thinkmeter.schemas.record import CallRecord, Source, Usage
from thinkmeter.schemas.tables import INSERTED_TABLES
from thinkmeter.store import query_rows

README = Path(__file__).resolve().parents[1] / "README.md"

# A value per record field and per attribute set elsewhere, and what its column must hold (written out
# here, not derived from the contract's conversion rules).
RECORD = CallRecord(
    provider="vllm",
    request_model="qwen3",
    stream=False,
    max_tokens=512,
    reasoning_level="high",
    thinking_budget_tokens=256,
    server_address="localhost",
    server_port=8000,
    engine="vllm",
    response_model="qwen3-32b",
    response_id="resp-1",
    finish_reasons=("length",),
    usage=Usage(
        input_tokens=100,
        cache_read_tokens=40,
        cache_write_tokens=10,
        output_tokens=300,
        reasoning_tokens=280,
        output_source=Source.REPORTED,
        reasoning_source=Source.DERIVED,
    ),
    time_to_first_chunk=0.25,
    time_to_first_token=0.5,
    time_to_first_visible_token=1.5,
    time_per_output_token=0.01,
    cost_usd=0.125,
    reasoning_cost_usd=0.0625,
    cost_source="reported",
    error_type="TimeoutError",
    attributes={
        sc.BUDGET_LINE: "task_classes.lookup.max_reasoning_tokens",
        sc.BUDGET_CAP: 1024,
        sc.BUDGET_REACHED: 1100,
        sc.BUDGET_INJECTED: ("max_tokens=5120", "reasoning_effort=low"),
        sc.BUDGET_CUT: True,
        sc.BUDGET_CUT_COST_USD: 0.03125,
    },
)
ENGINE_CONTEXT = {
    sc.ENGINE_KV_CACHE_USAGE: 0.75,
    sc.ENGINE_REQUESTS_RUNNING: 6,
    sc.ENGINE_REQUESTS_WAITING: 2,
    sc.GPU_UTILIZATION: 0.5,
    sc.GPU_MEMORY_USED_BYTES: 7 * 2**30,
}
TAGS = {"tenant": "acme", "user": "u1", "session": "s1", "feature": "search", "task_class": "lookup"}
EXPECTED_COLUMNS: dict[str, Any] = {
    "operation": "chat",
    "provider": "vllm",
    "request_model": "qwen3",
    "response_model": "qwen3-32b",
    "response_id": "resp-1",
    "finish_reasons": ["length"],
    "stream": 0,
    "max_tokens": 512,
    "reasoning_level": "high",
    "thinking_budget_tokens": 256,
    "server_address": "localhost",
    "engine": "vllm",
    "input_tokens": 100,
    "cache_read_tokens": 40,
    "cache_write_tokens": 10,
    "output_tokens": 300,
    "reasoning_tokens": 280,
    "visible_output_tokens": 20,
    "reasoning_source": "derived",
    "output_source": "reported",
    "time_to_first_chunk_s": 0.25,
    "time_to_first_token_s": 0.5,
    "time_to_first_visible_token_s": 1.5,
    "time_per_output_token_s": 0.01,
    "cost_usd": 0.125,
    "reasoning_cost_usd": 0.0625,
    "cost_source": "reported",
    **TAGS,
    "task_id": "task-1",
    "error_type": "TimeoutError",
    "answer_lost": False,
    "engine_kv_cache_usage": 0.75,
    "engine_requests_running": 6,
    "engine_requests_waiting": 2,
    "gpu_utilization": 0.5,
    "gpu_memory_used_bytes": 7 * 2**30,
    "budget_line": "task_classes.lookup.max_reasoning_tokens",
    "budget_injected": ["max_tokens=5120", "reasoning_effort=low"],
    "budget_cut": 1,
    "budget_would_cut": 0,
    "budget_rejected": 0,
    "budget_would_reject": 0,
    "budget_cut_cost_usd": 0.03125,
}


def test_every_contract_attribute_reaches_its_llm_calls_column(store_settings: Settings, service_name: str) -> None:
    provider, processor = make_traced(store_settings, service_name)
    telemetry = Telemetry(provider, None, PriceTable.load(), request_context=lambda host, port: ENGINE_CONTEXT)
    with thinkmeter.tags(**TAGS), thinkmeter.task("task-1"):
        Call(telemetry, RECORD.model_copy(deep=True)).finish()
    assert processor.force_flush(30_000)
    provider.shutdown()

    columns = [c.column for c in STORED_COLUMNS]
    rows = query_rows(store_settings, f"SELECT {', '.join(columns)} FROM llm_calls WHERE ServiceName = {{s:String}}", {"s": service_name})
    assert rows == [EXPECTED_COLUMNS]


def test_the_contract_names_every_record_field_and_column_once() -> None:
    record_fields = {c.field.split(".")[0] for c in SPAN_COLUMNS if c.field}
    usage_fields = {c.field.split(".")[1] for c in SPAN_COLUMNS if c.field and c.field.startswith("usage.")}
    # Every field of the record becomes an attribute, except the containers read field by field and
    # the per-model split of the usage, which only prices it.
    assert set(CallRecord.model_fields) - record_fields == {"attributes", "usage_by_model"}
    assert set(Usage.model_fields) - usage_fields == {"rejected_prediction_tokens"}  # folded into visible output
    for names in ([c.attribute for c in SPAN_COLUMNS], [c.column for c in STORED_COLUMNS]):
        assert len(names) == len(set(names))


def test_readme_documents_every_span_attribute() -> None:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## The span contract") :]
    section = section[: section.index("\n## ", 1)]
    missing = [c.attribute for c in SPAN_COLUMNS if not re.search(rf"(?<![\w.]){re.escape(c.attribute)}(?![\w.])", section)]
    assert missing == []


@pytest.mark.parametrize("table", INSERTED_TABLES, ids=lambda t: t.name)
def test_insert_columns_match_the_created_table(store: Client, table: Any) -> None:
    described = {row[0]: row[1] for row in store.query(f"DESCRIBE TABLE {table.name}").result_rows}
    assert {name: described.get(name) for name in table.column_names} == dict(table.columns)
