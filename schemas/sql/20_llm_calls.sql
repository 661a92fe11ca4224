-- One typed row per LLM call span, so dashboards never parse attribute strings. Counts, timings and
-- costs are Nullable: NULL means nobody reported it (never 0). Filled from otel_traces by llm_calls_mv,
-- which works the same for spans from thinkmeter's exporter and from an OTel Collector.
CREATE TABLE IF NOT EXISTS {{database}}.llm_calls {{on_cluster}}(
    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    ServiceName LowCardinality(String),
    StatusCode LowCardinality(String),
    duration_s Float64,
    model LowCardinality(String),
    -- Span attribute columns, generated from schemas/contract.py.
{{columns:llm_calls}},
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1
) ENGINE = {{engine:MergeTree}}
PARTITION BY toYYYYMM(Timestamp)
-- No bare Timestamp in the key: with it, ClickHouse matches time filters on Timestamp to that last key
-- column and reads every granule. Without it, they go through toStartOfHour(Timestamp) and read the hours asked for.
ORDER BY (toStartOfHour(Timestamp), ServiceName, model, task_class)
{{ttl:toDateTime(Timestamp)}}
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1, {{dedup_window}};

CREATE MATERIALIZED VIEW IF NOT EXISTS {{database}}.llm_calls_mv {{on_cluster}}
TO {{database}}.llm_calls
AS SELECT
    Timestamp,
    TraceId,
    SpanId,
    ServiceName,
    StatusCode,
    Duration / 1e9 AS duration_s,
    if(response_model != '', response_model, request_model) AS model,
{{select:llm_calls}}
FROM {{database}}.otel_traces
-- thinkmeter's own spans only: SDKs that trace themselves (anthropic 2.x) or other GenAI
-- instrumentations also write gen_ai.* spans, and counting them would bill a call twice.
WHERE ScopeName = 'thinkmeter' AND mapContains(SpanAttributes, 'gen_ai.operation.name');
