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
    task_id String CODEC(ZSTD(1)),
    task_class LowCardinality(String),
    parent_task_id String CODEC(ZSTD(1)),
    calls UInt32,
    errors UInt32,
    input_tokens UInt64,
    output_tokens UInt64,
    reasoning_tokens UInt64,
    cost_usd Float64,
    unpriced_calls UInt32,
    reasoning_unknown_calls UInt32,
    outcome_correct Nullable(UInt8),
    outcome_score Nullable(Float64),
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
    SpanAttributes['thinkmeter.task.id'] AS task_id,
    SpanAttributes['thinkmeter.task_class'] AS task_class,
    SpanAttributes['thinkmeter.task.parent_id'] AS parent_task_id,
    toUInt32OrZero(SpanAttributes['thinkmeter.task.calls']) AS calls,
    toUInt32OrZero(SpanAttributes['thinkmeter.task.errors']) AS errors,
    toUInt64OrZero(SpanAttributes['thinkmeter.task.usage.input_tokens']) AS input_tokens,
    toUInt64OrZero(SpanAttributes['thinkmeter.task.usage.output_tokens']) AS output_tokens,
    toUInt64OrZero(SpanAttributes['thinkmeter.task.usage.reasoning_tokens']) AS reasoning_tokens,
    toFloat64OrZero(SpanAttributes['thinkmeter.task.cost.usd']) AS cost_usd,
    toUInt32OrZero(SpanAttributes['thinkmeter.task.unpriced_calls']) AS unpriced_calls,
    toUInt32OrZero(SpanAttributes['thinkmeter.task.reasoning_unknown_calls']) AS reasoning_unknown_calls,
    multiIf(SpanAttributes['thinkmeter.task.outcome.correct'] = 'true', 1, SpanAttributes['thinkmeter.task.outcome.correct'] = 'false', 0, NULL) AS outcome_correct,
    toFloat64OrNull(SpanAttributes['thinkmeter.task.outcome.score']) AS outcome_score
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
    task_id String CODEC(ZSTD(1)),
    task_class LowCardinality(String),
    correct Nullable(UInt8),
    score Nullable(Float64)
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
    SpanAttributes['thinkmeter.task.id'] AS task_id,
    SpanAttributes['thinkmeter.task_class'] AS task_class,
    multiIf(SpanAttributes['thinkmeter.task.outcome.correct'] = 'true', 1, SpanAttributes['thinkmeter.task.outcome.correct'] = 'false', 0, NULL) AS correct,
    toFloat64OrNull(SpanAttributes['thinkmeter.task.outcome.score']) AS score
FROM {{database}}.otel_traces
WHERE ScopeName = 'thinkmeter' AND SpanName = 'task.outcome' AND mapContains(SpanAttributes, 'thinkmeter.task.id');
