-- Daily rollups of llm_calls for ranges over 2 days.
-- llm_calls_daily holds the quantile states of the percentile panels: merging a t-digest state costs
-- about a microsecond, and the hourly rollup has ~20x more groups than this one, which is too slow to
-- merge over 30 days. The states hold the calls whose value is known (NULL is skipped). Those named
-- streamed_*, *_per_s and visible_* hold the calls the matching raw panel filters to (streamed calls,
-- calls with a time per output token, calls whose reasoning is known).
-- llm_calls_effort_daily and llm_calls_users_daily group by a per-call column the other rollups lack
-- (requested effort / thinking budget, user).
-- Same conventions as llm_calls_hourly: sums add known values only, unknown_* columns count the calls
-- whose value was unknown. No TTL: they remain once the raw rows have expired.
CREATE TABLE IF NOT EXISTS {{database}}.llm_calls_daily {{on_cluster}}(
    day DateTime,
    ServiceName LowCardinality(String),
    provider LowCardinality(String),
    model LowCardinality(String),
    feature LowCardinality(String),
    tenant LowCardinality(String),
    task_class LowCardinality(String),
    calls SimpleAggregateFunction(sum, UInt64),
    streamed_calls SimpleAggregateFunction(sum, UInt64),
    unknown_reasoning_calls SimpleAggregateFunction(sum, UInt64),
    unknown_cost_calls SimpleAggregateFunction(sum, UInt64),
    -- reasoning tokens per visible token and reasoning share of spend, over the calls where both are known
    reasoning_tokens SimpleAggregateFunction(sum, UInt64),
    reasoning_known_visible_tokens SimpleAggregateFunction(sum, UInt64),
    reasoning_cost_usd SimpleAggregateFunction(sum, Float64),
    reasoning_cost_known_cost_usd SimpleAggregateFunction(sum, Float64),
    -- calls per power-of-two bucket of reasoning tokens, keyed by the bucket's upper bound (the heatmap)
    reasoning_tokens_buckets SimpleAggregateFunction(sumMap, Map(UInt64, UInt64)),
    reasoning_tokens_q AggregateFunction(quantilesTDigest(0.5, 0.9, 0.95, 0.99), Nullable(Float64)),
    visible_output_tokens_q AggregateFunction(quantilesTDigest(0.5, 0.9, 0.95, 0.99), Nullable(Float64)),
    cost_usd_q AggregateFunction(quantilesTDigest(0.5, 0.9, 0.95, 0.99), Nullable(Float64)),
    ttft_s_q AggregateFunction(quantilesTDigest(0.5, 0.9, 0.95, 0.99), Nullable(Float64)),
    ttfvt_s_q AggregateFunction(quantilesTDigest(0.5, 0.9, 0.95, 0.99), Nullable(Float64)),
    duration_s_q AggregateFunction(quantilesTDigest(0.5, 0.9, 0.95, 0.99), Nullable(Float64)),
    streamed_duration_s_q AggregateFunction(quantilesTDigest(0.5, 0.9, 0.95, 0.99), Nullable(Float64)),
    thinking_s_q AggregateFunction(quantilesTDigest(0.5, 0.9, 0.95, 0.99), Nullable(Float64)),
    decode_tokens_per_s_q AggregateFunction(quantilesTDigest(0.5, 0.9, 0.95, 0.99), Nullable(Float64)),
    end_to_end_tokens_per_s_q AggregateFunction(quantilesTDigest(0.5, 0.9, 0.95, 0.99), Nullable(Float64))
) ENGINE = {{engine:AggregatingMergeTree}}
PARTITION BY toYYYYMM(day)
ORDER BY (day, ServiceName, provider, model, feature, tenant, task_class)
SETTINGS index_granularity = 8192, {{dedup_window}};

CREATE MATERIALIZED VIEW IF NOT EXISTS {{database}}.llm_calls_daily_mv {{on_cluster}}
TO {{database}}.llm_calls_daily
AS SELECT
    toStartOfDay(toDateTime(c.Timestamp)) AS day,
    ServiceName,
    provider,
    model,
    feature,
    tenant,
    task_class,
    count() AS calls,
    countIf(c.stream = 1) AS streamed_calls,
    countIf(c.reasoning_tokens IS NULL) AS unknown_reasoning_calls,
    countIf(c.cost_usd IS NULL) AS unknown_cost_calls,
    sum(ifNull(c.reasoning_tokens, 0)) AS reasoning_tokens,
    sumIf(ifNull(c.visible_output_tokens, 0), c.reasoning_tokens IS NOT NULL) AS reasoning_known_visible_tokens,
    sum(ifNull(c.reasoning_cost_usd, 0)) AS reasoning_cost_usd,
    sumIf(ifNull(c.cost_usd, 0), c.reasoning_cost_usd IS NOT NULL) AS reasoning_cost_known_cost_usd,
    sumMapIf(map(toUInt64(pow(2, ceil(log2(greatest(ifNull(c.reasoning_tokens, 0), 1))))), toUInt64(1)),
             c.reasoning_tokens IS NOT NULL) AS reasoning_tokens_buckets,
    quantilesTDigestState(0.5, 0.9, 0.95, 0.99)(CAST(c.reasoning_tokens, 'Nullable(Float64)')) AS reasoning_tokens_q,
    quantilesTDigestState(0.5, 0.9, 0.95, 0.99)(if(c.reasoning_tokens IS NULL, NULL, CAST(c.visible_output_tokens, 'Nullable(Float64)'))) AS visible_output_tokens_q,
    quantilesTDigestState(0.5, 0.9, 0.95, 0.99)(c.cost_usd) AS cost_usd_q,
    quantilesTDigestState(0.5, 0.9, 0.95, 0.99)(c.time_to_first_token_s) AS ttft_s_q,
    quantilesTDigestState(0.5, 0.9, 0.95, 0.99)(c.time_to_first_visible_token_s) AS ttfvt_s_q,
    quantilesTDigestState(0.5, 0.9, 0.95, 0.99)(CAST(c.duration_s, 'Nullable(Float64)')) AS duration_s_q,
    quantilesTDigestState(0.5, 0.9, 0.95, 0.99)(if(c.stream = 1, CAST(c.duration_s, 'Nullable(Float64)'), NULL)) AS streamed_duration_s_q,
    quantilesTDigestState(0.5, 0.9, 0.95, 0.99)(c.time_to_first_visible_token_s - c.time_to_first_token_s) AS thinking_s_q,
    quantilesTDigestState(0.5, 0.9, 0.95, 0.99)(if(c.time_per_output_token_s > 0 AND c.duration_s > 0, 1 / c.time_per_output_token_s, NULL)) AS decode_tokens_per_s_q,
    quantilesTDigestState(0.5, 0.9, 0.95, 0.99)(if(c.time_per_output_token_s > 0 AND c.duration_s > 0, c.output_tokens / c.duration_s, NULL)) AS end_to_end_tokens_per_s_q
FROM {{database}}.llm_calls AS c
GROUP BY day, ServiceName, provider, model, feature, tenant, task_class;

-- llm_calls_daily_by_class: llm_calls_daily without the service, provider, feature and tenant, for
-- dashboards with no call variable set (the default): ~10x fewer states to merge.
CREATE TABLE IF NOT EXISTS {{database}}.llm_calls_daily_by_class {{on_cluster}}(
    day DateTime,
    model LowCardinality(String),
    task_class LowCardinality(String),
    calls SimpleAggregateFunction(sum, UInt64),
    streamed_calls SimpleAggregateFunction(sum, UInt64),
    unknown_reasoning_calls SimpleAggregateFunction(sum, UInt64),
    unknown_cost_calls SimpleAggregateFunction(sum, UInt64),
    -- reasoning tokens per visible token and reasoning share of spend, over the calls where both are known
    reasoning_tokens SimpleAggregateFunction(sum, UInt64),
    reasoning_known_visible_tokens SimpleAggregateFunction(sum, UInt64),
    reasoning_cost_usd SimpleAggregateFunction(sum, Float64),
    reasoning_cost_known_cost_usd SimpleAggregateFunction(sum, Float64),
    -- calls per power-of-two bucket of reasoning tokens, keyed by the bucket's upper bound (the heatmap)
    reasoning_tokens_buckets SimpleAggregateFunction(sumMap, Map(UInt64, UInt64)),
    reasoning_tokens_q AggregateFunction(quantilesTDigest(0.5, 0.9, 0.95, 0.99), Nullable(Float64)),
    visible_output_tokens_q AggregateFunction(quantilesTDigest(0.5, 0.9, 0.95, 0.99), Nullable(Float64)),
    cost_usd_q AggregateFunction(quantilesTDigest(0.5, 0.9, 0.95, 0.99), Nullable(Float64)),
    ttft_s_q AggregateFunction(quantilesTDigest(0.5, 0.9, 0.95, 0.99), Nullable(Float64)),
    ttfvt_s_q AggregateFunction(quantilesTDigest(0.5, 0.9, 0.95, 0.99), Nullable(Float64)),
    duration_s_q AggregateFunction(quantilesTDigest(0.5, 0.9, 0.95, 0.99), Nullable(Float64)),
    streamed_duration_s_q AggregateFunction(quantilesTDigest(0.5, 0.9, 0.95, 0.99), Nullable(Float64)),
    thinking_s_q AggregateFunction(quantilesTDigest(0.5, 0.9, 0.95, 0.99), Nullable(Float64)),
    decode_tokens_per_s_q AggregateFunction(quantilesTDigest(0.5, 0.9, 0.95, 0.99), Nullable(Float64)),
    end_to_end_tokens_per_s_q AggregateFunction(quantilesTDigest(0.5, 0.9, 0.95, 0.99), Nullable(Float64))
) ENGINE = {{engine:AggregatingMergeTree}}
PARTITION BY toYYYYMM(day)
ORDER BY (day, model, task_class)
SETTINGS index_granularity = 8192, {{dedup_window}};

CREATE MATERIALIZED VIEW IF NOT EXISTS {{database}}.llm_calls_daily_by_class_mv {{on_cluster}}
TO {{database}}.llm_calls_daily_by_class
AS SELECT
    toStartOfDay(toDateTime(c.Timestamp)) AS day,
    model,
    task_class,
    count() AS calls,
    countIf(c.stream = 1) AS streamed_calls,
    countIf(c.reasoning_tokens IS NULL) AS unknown_reasoning_calls,
    countIf(c.cost_usd IS NULL) AS unknown_cost_calls,
    sum(ifNull(c.reasoning_tokens, 0)) AS reasoning_tokens,
    sumIf(ifNull(c.visible_output_tokens, 0), c.reasoning_tokens IS NOT NULL) AS reasoning_known_visible_tokens,
    sum(ifNull(c.reasoning_cost_usd, 0)) AS reasoning_cost_usd,
    sumIf(ifNull(c.cost_usd, 0), c.reasoning_cost_usd IS NOT NULL) AS reasoning_cost_known_cost_usd,
    sumMapIf(map(toUInt64(pow(2, ceil(log2(greatest(ifNull(c.reasoning_tokens, 0), 1))))), toUInt64(1)),
             c.reasoning_tokens IS NOT NULL) AS reasoning_tokens_buckets,
    quantilesTDigestState(0.5, 0.9, 0.95, 0.99)(CAST(c.reasoning_tokens, 'Nullable(Float64)')) AS reasoning_tokens_q,
    quantilesTDigestState(0.5, 0.9, 0.95, 0.99)(if(c.reasoning_tokens IS NULL, NULL, CAST(c.visible_output_tokens, 'Nullable(Float64)'))) AS visible_output_tokens_q,
    quantilesTDigestState(0.5, 0.9, 0.95, 0.99)(c.cost_usd) AS cost_usd_q,
    quantilesTDigestState(0.5, 0.9, 0.95, 0.99)(c.time_to_first_token_s) AS ttft_s_q,
    quantilesTDigestState(0.5, 0.9, 0.95, 0.99)(c.time_to_first_visible_token_s) AS ttfvt_s_q,
    quantilesTDigestState(0.5, 0.9, 0.95, 0.99)(CAST(c.duration_s, 'Nullable(Float64)')) AS duration_s_q,
    quantilesTDigestState(0.5, 0.9, 0.95, 0.99)(if(c.stream = 1, CAST(c.duration_s, 'Nullable(Float64)'), NULL)) AS streamed_duration_s_q,
    quantilesTDigestState(0.5, 0.9, 0.95, 0.99)(c.time_to_first_visible_token_s - c.time_to_first_token_s) AS thinking_s_q,
    quantilesTDigestState(0.5, 0.9, 0.95, 0.99)(if(c.time_per_output_token_s > 0 AND c.duration_s > 0, 1 / c.time_per_output_token_s, NULL)) AS decode_tokens_per_s_q,
    quantilesTDigestState(0.5, 0.9, 0.95, 0.99)(if(c.time_per_output_token_s > 0 AND c.duration_s > 0, c.output_tokens / c.duration_s, NULL)) AS end_to_end_tokens_per_s_q
FROM {{database}}.llm_calls AS c
GROUP BY day, model, task_class;

CREATE TABLE IF NOT EXISTS {{database}}.llm_calls_effort_daily {{on_cluster}}(
    day DateTime,
    ServiceName LowCardinality(String),
    provider LowCardinality(String),
    model LowCardinality(String),
    feature LowCardinality(String),
    tenant LowCardinality(String),
    task_class LowCardinality(String),
    reasoning_level LowCardinality(String),
    thinking_budget_tokens Nullable(UInt32),
    calls SimpleAggregateFunction(sum, UInt64),
    unknown_reasoning_calls SimpleAggregateFunction(sum, UInt64),
    stopped_by_length SimpleAggregateFunction(sum, UInt64),
    reasoning_tokens_q AggregateFunction(quantilesTDigest(0.5, 0.9, 0.95, 0.99), Nullable(Float64)),
    -- reasoning tokens / thinking budget of calls with a budget
    budget_used_q AggregateFunction(quantilesTDigest(0.5, 0.9, 0.95, 0.99), Nullable(Float64))
) ENGINE = {{engine:AggregatingMergeTree}}
PARTITION BY toYYYYMM(day)
ORDER BY (day, ServiceName, provider, model, feature, tenant, task_class, reasoning_level, thinking_budget_tokens)
SETTINGS index_granularity = 8192, allow_nullable_key = 1, {{dedup_window}};

CREATE MATERIALIZED VIEW IF NOT EXISTS {{database}}.llm_calls_effort_daily_mv {{on_cluster}}
TO {{database}}.llm_calls_effort_daily
AS SELECT
    toStartOfDay(toDateTime(c.Timestamp)) AS day,
    ServiceName,
    provider,
    model,
    feature,
    tenant,
    task_class,
    reasoning_level,
    thinking_budget_tokens,
    count() AS calls,
    countIf(c.reasoning_tokens IS NULL) AS unknown_reasoning_calls,
    countIf(has(c.finish_reasons, 'length')) AS stopped_by_length,
    quantilesTDigestState(0.5, 0.9, 0.95, 0.99)(CAST(c.reasoning_tokens, 'Nullable(Float64)')) AS reasoning_tokens_q,
    quantilesTDigestState(0.5, 0.9, 0.95, 0.99)(c.reasoning_tokens / c.thinking_budget_tokens) AS budget_used_q
FROM {{database}}.llm_calls AS c
GROUP BY day, ServiceName, provider, model, feature, tenant, task_class, reasoning_level, thinking_budget_tokens;

-- llm_calls_effort_daily_by_level: the same without the call dimensions, for dashboards with no call variable set.
CREATE TABLE IF NOT EXISTS {{database}}.llm_calls_effort_daily_by_level {{on_cluster}}(
    day DateTime,
    reasoning_level LowCardinality(String),
    thinking_budget_tokens Nullable(UInt32),
    calls SimpleAggregateFunction(sum, UInt64),
    unknown_reasoning_calls SimpleAggregateFunction(sum, UInt64),
    stopped_by_length SimpleAggregateFunction(sum, UInt64),
    reasoning_tokens_q AggregateFunction(quantilesTDigest(0.5, 0.9, 0.95, 0.99), Nullable(Float64)),
    budget_used_q AggregateFunction(quantilesTDigest(0.5, 0.9, 0.95, 0.99), Nullable(Float64))
) ENGINE = {{engine:AggregatingMergeTree}}
PARTITION BY toYYYYMM(day)
ORDER BY (day, reasoning_level, thinking_budget_tokens)
SETTINGS index_granularity = 8192, allow_nullable_key = 1, {{dedup_window}};

CREATE MATERIALIZED VIEW IF NOT EXISTS {{database}}.llm_calls_effort_daily_by_level_mv {{on_cluster}}
TO {{database}}.llm_calls_effort_daily_by_level
AS SELECT
    toStartOfDay(toDateTime(c.Timestamp)) AS day,
    reasoning_level,
    thinking_budget_tokens,
    count() AS calls,
    countIf(c.reasoning_tokens IS NULL) AS unknown_reasoning_calls,
    countIf(has(c.finish_reasons, 'length')) AS stopped_by_length,
    quantilesTDigestState(0.5, 0.9, 0.95, 0.99)(CAST(c.reasoning_tokens, 'Nullable(Float64)')) AS reasoning_tokens_q,
    quantilesTDigestState(0.5, 0.9, 0.95, 0.99)(c.reasoning_tokens / c.thinking_budget_tokens) AS budget_used_q
FROM {{database}}.llm_calls AS c
GROUP BY day, reasoning_level, thinking_budget_tokens;

CREATE TABLE IF NOT EXISTS {{database}}.llm_calls_users_daily {{on_cluster}}(
    day DateTime,
    ServiceName LowCardinality(String),
    provider LowCardinality(String),
    model LowCardinality(String),
    feature LowCardinality(String),
    tenant LowCardinality(String),
    task_class LowCardinality(String),
    user LowCardinality(String),
    calls SimpleAggregateFunction(sum, UInt64),
    cost_usd SimpleAggregateFunction(sum, Float64),
    reasoning_cost_usd SimpleAggregateFunction(sum, Float64),
    reasoning_tokens SimpleAggregateFunction(sum, UInt64),
    -- output tokens of the calls whose reasoning is known: the denominator of the reasoning share
    reasoning_known_output_tokens SimpleAggregateFunction(sum, UInt64)
) ENGINE = {{engine:AggregatingMergeTree}}
PARTITION BY toYYYYMM(day)
ORDER BY (day, ServiceName, provider, model, feature, tenant, task_class, user)
SETTINGS index_granularity = 8192, {{dedup_window}};

CREATE MATERIALIZED VIEW IF NOT EXISTS {{database}}.llm_calls_users_daily_mv {{on_cluster}}
TO {{database}}.llm_calls_users_daily
AS SELECT
    toStartOfDay(toDateTime(c.Timestamp)) AS day,
    ServiceName,
    provider,
    model,
    feature,
    tenant,
    task_class,
    user,
    count() AS calls,
    sum(ifNull(c.cost_usd, 0)) AS cost_usd,
    sum(ifNull(c.reasoning_cost_usd, 0)) AS reasoning_cost_usd,
    sum(ifNull(c.reasoning_tokens, 0)) AS reasoning_tokens,
    sumIf(ifNull(c.output_tokens, 0), c.reasoning_tokens IS NOT NULL) AS reasoning_known_output_tokens
FROM {{database}}.llm_calls AS c
GROUP BY day, ServiceName, provider, model, feature, tenant, task_class, user;

-- llm_calls_users_daily_by_user: the same by tenant and user only, for dashboards with no call variable set.
CREATE TABLE IF NOT EXISTS {{database}}.llm_calls_users_daily_by_user {{on_cluster}}(
    day DateTime,
    tenant LowCardinality(String),
    user LowCardinality(String),
    calls SimpleAggregateFunction(sum, UInt64),
    cost_usd SimpleAggregateFunction(sum, Float64),
    reasoning_cost_usd SimpleAggregateFunction(sum, Float64),
    reasoning_tokens SimpleAggregateFunction(sum, UInt64),
    reasoning_known_output_tokens SimpleAggregateFunction(sum, UInt64)
) ENGINE = {{engine:AggregatingMergeTree}}
PARTITION BY toYYYYMM(day)
ORDER BY (day, tenant, user)
SETTINGS index_granularity = 8192, {{dedup_window}};

CREATE MATERIALIZED VIEW IF NOT EXISTS {{database}}.llm_calls_users_daily_by_user_mv {{on_cluster}}
TO {{database}}.llm_calls_users_daily_by_user
AS SELECT
    toStartOfDay(toDateTime(c.Timestamp)) AS day,
    tenant,
    user,
    count() AS calls,
    sum(ifNull(c.cost_usd, 0)) AS cost_usd,
    sum(ifNull(c.reasoning_cost_usd, 0)) AS reasoning_cost_usd,
    sum(ifNull(c.reasoning_tokens, 0)) AS reasoning_tokens,
    sumIf(ifNull(c.output_tokens, 0), c.reasoning_tokens IS NOT NULL) AS reasoning_known_output_tokens
FROM {{database}}.llm_calls AS c
GROUP BY day, tenant, user;
