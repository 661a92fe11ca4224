"""The columns thinkmeter inserts into each table, with their types (no DESCRIBE round trip), next to
the DDL in sql/. Columns left out take their defaults; a test checks every list against the created tables."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[tuple[str, str], ...]  # (name, ClickHouse type), in insert order

    @property
    def column_names(self) -> list[str]:
        return [name for name, _ in self.columns]

    @property
    def column_types(self) -> list[str]:
        return [type_name for _, type_name in self.columns]


_ATTRIBUTES = "Map(LowCardinality(String), String)"

# sql/10_traces.sql
TRACES = Table(
    "otel_traces",
    (
        ("Timestamp", "DateTime64(9)"),
        ("TraceId", "String"),
        ("SpanId", "String"),
        ("ParentSpanId", "String"),
        ("TraceState", "String"),
        ("SpanName", "LowCardinality(String)"),
        ("SpanKind", "LowCardinality(String)"),
        ("ServiceName", "LowCardinality(String)"),
        ("ResourceAttributes", _ATTRIBUTES),
        ("ScopeName", "String"),
        ("ScopeVersion", "String"),
        ("SpanAttributes", _ATTRIBUTES),
        ("Duration", "UInt64"),
        ("StatusCode", "LowCardinality(String)"),
        ("StatusMessage", "String"),
        ("Events.Timestamp", "Array(DateTime64(9))"),
        ("Events.Name", "Array(LowCardinality(String))"),
        ("Events.Attributes", f"Array({_ATTRIBUTES})"),
        ("Links.TraceId", "Array(String)"),
        ("Links.SpanId", "Array(String)"),
        ("Links.TraceState", "Array(String)"),
        ("Links.Attributes", f"Array({_ATTRIBUTES})"),
    ),
)

# sql/30_metrics.sql
_METRIC_COMMON = (
    ("ResourceAttributes", _ATTRIBUTES),
    ("ServiceName", "LowCardinality(String)"),
    ("ScopeName", "String"),
    ("ScopeVersion", "String"),
    ("MetricName", "String"),
    ("MetricDescription", "String"),
    ("MetricUnit", "String"),
    ("Attributes", _ATTRIBUTES),
    ("StartTimeUnix", "DateTime64(9)"),
    ("TimeUnix", "DateTime64(9)"),
)
METRICS_GAUGE = Table("otel_metrics_gauge", (*_METRIC_COMMON, ("Value", "Float64"), ("Flags", "UInt32")))
METRICS_SUM = Table(
    "otel_metrics_sum",
    (
        *_METRIC_COMMON,
        ("Value", "Float64"),
        ("Flags", "UInt32"),
        ("AggregationTemporality", "Int32"),
        ("IsMonotonic", "Bool"),
    ),
)
METRICS_HISTOGRAM = Table(
    "otel_metrics_histogram",
    (
        *_METRIC_COMMON,
        ("Count", "UInt64"),
        ("Sum", "Float64"),
        ("BucketCounts", "Array(UInt64)"),
        ("ExplicitBounds", "Array(Float64)"),
        ("Flags", "UInt32"),
        ("Min", "Float64"),
        ("Max", "Float64"),
        ("AggregationTemporality", "Int32"),
    ),
)

# sql/40_alerts.sql
ALERT_EVENTS = Table(
    "thinkmeter_alert_events",
    (
        ("event_time", "DateTime64(3)"),
        ("rule_uid", "LowCardinality(String)"),
        ("rule_title", "LowCardinality(String)"),
        ("severity", "LowCardinality(String)"),
        ("fingerprint", "String"),
        ("state", "LowCardinality(String)"),
        ("labels", _ATTRIBUTES),
        ("value", "Nullable(Float64)"),
        ("threshold", "Float64"),
        ("summary", "String"),
        ("description", "String"),
        ("started_at", "DateTime64(3)"),
    ),
)

INSERTED_TABLES = (TRACES, METRICS_GAUGE, METRICS_SUM, METRICS_HISTOGRAM, ALERT_EVENTS)
