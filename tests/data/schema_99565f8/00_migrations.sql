-- Which schema files have been applied to this database (written by `thinkmeter schema apply`).
CREATE TABLE IF NOT EXISTS {{database}}.thinkmeter_schema_migrations {{on_cluster}}(
    name String,
    version UInt32,
    checksum String,
    applied_at DateTime64(3) DEFAULT now64(3)
) ENGINE = {{engine:ReplacingMergeTree}}
ORDER BY name;
