-- Alert events of the built-in evaluator (`thinkmeter alerts run` / `alerts check`): one row each time an
-- alert instance starts firing or resolves. The latest row per fingerprint is the instance's state, so
-- an evaluator that restarts neither re-notifies what is still firing nor forgets what it must resolve.
CREATE TABLE IF NOT EXISTS {{database}}.thinkmeter_alert_events {{on_cluster}}(
    event_time DateTime64(3) CODEC(Delta(8), ZSTD(1)),
    rule_uid LowCardinality(String),
    rule_title LowCardinality(String),
    severity LowCardinality(String),
    -- sha256 of the rule uid and the instance labels: the identity of one alert instance
    fingerprint String CODEC(ZSTD(1)),
    state LowCardinality(String),
    labels Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    -- the query's value when the event was recorded (NULL: the instance had no value, e.g. resolved)
    value Nullable(Float64),
    threshold Float64,
    summary String CODEC(ZSTD(1)),
    description String CODEC(ZSTD(1)),
    started_at DateTime64(3)
) ENGINE = {{engine:MergeTree}}
PARTITION BY toYYYYMM(event_time)
ORDER BY (rule_uid, fingerprint, event_time)
SETTINGS index_granularity = 8192, {{dedup_window}};
