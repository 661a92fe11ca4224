-- Hourly rollup of llm_calls for long time ranges. Sums add up known values only; the unknown_*_calls
-- columns count the calls whose value was unknown, so a sum is never mistaken for a complete total.
-- Quantile states keep p50/p90/p95/p99 mergeable across hours:
--   quantilesTDigestMerge(0.5, 0.9, 0.95, 0.99)(ttft_s_q)[3] is the p95 TTFT of the selected rows.
-- No TTL: the rollup is what remains once the raw rows have expired.
CREATE TABLE IF NOT EXISTS {{database}}.llm_calls_hourly {{on_cluster}}(
    hour DateTime,
    ServiceName LowCardinality(String),
    provider LowCardinality(String),
    model LowCardinality(String),
    feature LowCardinality(String),
    tenant LowCardinality(String),
    task_class LowCardinality(String),
    calls SimpleAggregateFunction(sum, UInt64),
    errors SimpleAggregateFunction(sum, UInt64),
    input_tokens SimpleAggregateFunction(sum, UInt64),
    cache_read_tokens SimpleAggregateFunction(sum, UInt64),
    cache_write_tokens SimpleAggregateFunction(sum, UInt64),
    output_tokens SimpleAggregateFunction(sum, UInt64),
    reasoning_tokens SimpleAggregateFunction(sum, UInt64),
    visible_output_tokens SimpleAggregateFunction(sum, UInt64),
    unknown_output_calls SimpleAggregateFunction(sum, UInt64),
    unknown_reasoning_calls SimpleAggregateFunction(sum, UInt64),
    cost_usd SimpleAggregateFunction(sum, Float64),
    reasoning_cost_usd SimpleAggregateFunction(sum, Float64),
    unknown_cost_calls SimpleAggregateFunction(sum, UInt64),
    reasoning_tokens_q AggregateFunction(quantilesTDigest(0.5, 0.9, 0.95, 0.99), Nullable(Float64)),
    ttft_s_q AggregateFunction(quantilesTDigest(0.5, 0.9, 0.95, 0.99), Nullable(Float64)),
    ttfvt_s_q AggregateFunction(quantilesTDigest(0.5, 0.9, 0.95, 0.99), Nullable(Float64)),
    cost_usd_q AggregateFunction(quantilesTDigest(0.5, 0.9, 0.95, 0.99), Nullable(Float64))
) ENGINE = {{engine:AggregatingMergeTree}}
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, ServiceName, provider, model, feature, tenant, task_class)
SETTINGS index_granularity = 8192, {{dedup_window}};

CREATE MATERIALIZED VIEW IF NOT EXISTS {{database}}.llm_calls_hourly_mv {{on_cluster}}
TO {{database}}.llm_calls_hourly
AS SELECT
    toStartOfHour(toDateTime(c.Timestamp)) AS hour,
    ServiceName,
    provider,
    model,
    feature,
    tenant,
    task_class,
    count() AS calls,
    countIf(c.StatusCode = 'STATUS_CODE_ERROR') AS errors,
    sum(ifNull(c.input_tokens, 0)) AS input_tokens,
    sum(ifNull(c.cache_read_tokens, 0)) AS cache_read_tokens,
    sum(ifNull(c.cache_write_tokens, 0)) AS cache_write_tokens,
    sum(ifNull(c.output_tokens, 0)) AS output_tokens,
    sum(ifNull(c.reasoning_tokens, 0)) AS reasoning_tokens,
    sum(ifNull(c.visible_output_tokens, 0)) AS visible_output_tokens,
    countIf(c.output_tokens IS NULL) AS unknown_output_calls,
    countIf(c.reasoning_tokens IS NULL) AS unknown_reasoning_calls,
    sum(ifNull(c.cost_usd, 0)) AS cost_usd,
    sum(ifNull(c.reasoning_cost_usd, 0)) AS reasoning_cost_usd,
    countIf(c.cost_usd IS NULL) AS unknown_cost_calls,
    quantilesTDigestState(0.5, 0.9, 0.95, 0.99)(CAST(c.reasoning_tokens, 'Nullable(Float64)')) AS reasoning_tokens_q,
    quantilesTDigestState(0.5, 0.9, 0.95, 0.99)(c.time_to_first_token_s) AS ttft_s_q,
    quantilesTDigestState(0.5, 0.9, 0.95, 0.99)(c.time_to_first_visible_token_s) AS ttfvt_s_q,
    quantilesTDigestState(0.5, 0.9, 0.95, 0.99)(c.cost_usd) AS cost_usd_q
FROM {{database}}.llm_calls AS c
GROUP BY hour, ServiceName, provider, model, feature, tenant, task_class;
