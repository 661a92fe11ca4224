-- Tasks (`thinkmeter.task(...)`): calls carry their task's id in llm_calls.task_id; the task spans and
-- the outcome spans are typed here, from otel_traces, so the exporter and an OTel Collector fill them
-- alike. Reports join a task's calls, task spans and latest outcome by task id at query time, so an
-- outcome may be recorded before, during or after the task, from any process.

-- One row per task span: a task as one process saw it, with the totals of the calls made inside it.
CREATE TABLE IF NOT EXISTS {{database}}.task_spans {{on_cluster}}(
    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    ServiceName LowCardinality(String),
    duration_s Float64,
    -- Span attribute columns, generated from schemas/contract.py.
{{columns:task_spans}},
    INDEX idx_task_id task_id TYPE bloom_filter(0.001) GRANULARITY 1
) ENGINE = {{engine:MergeTree}}
PARTITION BY toYYYYMM(Timestamp)
ORDER BY (toStartOfHour(Timestamp), task_class)
{{ttl:toDateTime(Timestamp)}}
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1, {{dedup_window}};

CREATE MATERIALIZED VIEW IF NOT EXISTS {{database}}.task_spans_mv {{on_cluster}}
TO {{database}}.task_spans
AS SELECT
    Timestamp,
    TraceId,
    SpanId,
    ServiceName,
    Duration / 1e9 AS duration_s,
{{select:task_spans}}
FROM {{database}}.otel_traces
WHERE ScopeName = 'thinkmeter' AND mapContains(SpanAttributes, 'thinkmeter.task.calls')
  AND mapContains(SpanAttributes, 'thinkmeter.task.id');

-- One row per recorded outcome (`task.outcome()` or `thinkmeter.record_outcome()`); the latest
-- `correct` and the latest `score` of a task count.
CREATE TABLE IF NOT EXISTS {{database}}.task_outcomes {{on_cluster}}(
    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    ServiceName LowCardinality(String),
    -- Span attribute columns, generated from schemas/contract.py.
{{columns:task_outcomes}}
) ENGINE = {{engine:MergeTree}}
PARTITION BY toYYYYMM(Timestamp)
ORDER BY (task_id, Timestamp)
{{ttl:toDateTime(Timestamp)}}
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1, {{dedup_window}};

CREATE MATERIALIZED VIEW IF NOT EXISTS {{database}}.task_outcomes_mv {{on_cluster}}
TO {{database}}.task_outcomes
AS SELECT
    Timestamp,
    TraceId,
    SpanId,
    ServiceName,
{{select:task_outcomes}}
FROM {{database}}.otel_traces
WHERE ScopeName = 'thinkmeter' AND SpanName = 'task.outcome' AND mapContains(SpanAttributes, 'thinkmeter.task.id');
