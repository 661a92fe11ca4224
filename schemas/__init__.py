"""Where the folders meet: names (semconv.py), the span -> llm_calls contract (contract.py), the tables
thinkmeter writes (tables.py, sql/ and ddl.py), the call record (record.py) and the Grafana SQL dialect
(grafana_sql.py)."""
