"""Hostile text in tags and model names: stored verbatim in real ClickHouse (chDB), or rejected with a reason.

Values travel the real path (thinkmeter.tags -> span -> ClickHouseSpanProcessor -> otel_traces ->
llm_calls) and are read back with parameterized queries.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client
from thinkmeter.instrumentation._telemetry import Call, Telemetry
from thinkmeter.schemas import semconv as sc
from thinkmeter.schemas.record import CallRecord

import thinkmeter
from tests.conftest import TracedFactory
from thinkmeter.pricing import PriceTable
from thinkmeter.store import store_session

HOSTILE = {
    "quotes": 'it\'s "quoted" `back` \\ backslash',
    "newlines": "line1\nline2\r\n\ttab",
    "sql": "x'); DROP TABLE otel_traces; --",
    "sql_param": "{window:UInt64} {{database}} %s ? :name",
    "nul": "before\x00after",
    "unicode": "租户 — emoji 🧠 RTL \u202eevil",
    "huge": "A" * 200_000,
    "empty": "",
}


def emit(traced: TracedFactory, model: str, **tag_values: str) -> None:
    provider, processor = traced()
    telemetry = Telemetry(provider, None, PriceTable.load())
    with thinkmeter.tags(**tag_values):
        call = Call(telemetry, CallRecord(provider="openai", request_model=model))
        call.record.response_model = model
        call.finish()
    assert processor.force_flush(60_000)


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_tags_and_model_names_are_stored_verbatim(
    traced: TracedFactory, store_settings, service_name: str, name: str
) -> None:
    value = HOSTILE[name]
    emit(traced, model=value, tenant=value, user=value, feature=value)
    with store_session(store_settings) as client:
        attrs = client.query(
            "SELECT SpanAttributes, SpanName FROM otel_traces WHERE ServiceName = {s:String}",
            parameters={"s": service_name},
        ).result_rows
        calls = client.query(
            "SELECT tenant, user, feature, request_model, response_model FROM llm_calls WHERE ServiceName = {s:String}",
            parameters={"s": service_name},
        ).result_rows
    assert len(attrs) == 1 and len(calls) == 1
    span_attributes, _ = attrs[0]
    assert span_attributes[sc.TENANT] == value
    assert span_attributes[sc.REQUEST_MODEL] == value
    assert calls[0] == (value, value, value, value, value)


def test_text_that_is_not_unicode_is_rejected_or_escaped(
    traced: TracedFactory, store_settings, service_name: str
) -> None:
    # A tag is the caller's own value: bytes and unpaired surrogates are refused with the reason.
    with pytest.raises(ValueError, match="tenant.*UTF-8"):
        thinkmeter.tags(tenant="\udcff")
    with pytest.raises(TypeError, match="tenant.*bytes"):
        thinkmeter.tags(tenant=b"\xff\xfe")
    # A model name comes from the server: the span is stored, the unpaired surrogate as \u escape text.
    emit(traced, model="bad\udcffmodel", tenant="ok")
    with store_session(store_settings) as client:
        rows = client.query(
            "SELECT request_model, tenant FROM llm_calls WHERE ServiceName = {s:String}",
            parameters={"s": service_name},
        ).result_rows
    assert rows == [("bad\\udcffmodel", "ok")]


def test_the_tables_survive_sql_in_values(store: Client) -> None:
    names = {row[0] for row in store.query("SHOW TABLES").result_rows}
    assert {"otel_traces", "llm_calls"} <= names


SQL_SOURCES = [
    "thinkmeter/reports.py",
    "thinkmeter/store.py",
    "thinkmeter/demo.py",
    "thinkmeter/segments.py",
    "thinkmeter/serve/server.py",
    "thinkmeter/serve/http.py",
]
# A query built by formatting: f"...{x}..." or "...".format / % inside a query()/command() call.
_FORMATTED_SQL = re.compile(
    r"\.(query|command)\(\s*f[\"']|\.(query|command)\([^)]*(\.format\(|%\s)"
)


@pytest.mark.parametrize("path", SQL_SOURCES)
def test_queries_carry_values_as_parameters(path: str) -> None:
    """Values go in as {name:Type} parameters; only identifiers (quoted by quote_identifier) are formatted."""
    source = (Path(__file__).parent.parent / path).read_text()
    for match in _FORMATTED_SQL.finditer(source):
        line = source[match.start() : source.find("\n", match.start())]
        assert "quote_identifier" in line or "{table}" in line, (
            f"{path}: formatted SQL {line.strip()}"
        )
