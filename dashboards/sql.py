"""SQL pieces shared by the panels: variable filters, the raw-or-rollup switch, the trace-view query.

Long ranges read a rollup. A panel that a rollup can serve is one query with two branches joined by
UNION ALL: the llm_calls branch is active while the dashboard range is at most ROLLUP_AFTER_S, the
rollup branch beyond. The inactive branch has a constant-false WHERE (`$__toTime - $__fromTime` is a
constant once the macros are expanded), so ClickHouse reads nothing for it.
Sums read llm_calls_hourly: its branch starts at the hour the range starts in and never buckets finer
than an hour. Percentiles read the daily rollups (llm_calls_daily, or llm_calls_daily_by_class while no call
variable filters; llm_calls_effort_daily(_by_level) for effort, llm_calls_users_daily(_by_user) for users), because
merging the hourly t-digest states of 30 days is too slow: their branch starts at the day the range
starts in and buckets by whole days.
Panels of single calls (outliers, most expensive) read llm_calls at any range, over at most its last CALLS_CAP_S.
"""

from __future__ import annotations

ROLLUP_AFTER_S = 2 * 24 * 3600

# Template variable -> column (same name in llm_calls and llm_calls_hourly).
CALL_VARIABLES: tuple[tuple[str, str, str], ...] = (
    ("service", "Service", "ServiceName"),
    ("model", "Model", "model"),
    ("provider", "Provider", "provider"),
    ("feature", "Feature", "feature"),
    ("tenant", "Tenant", "tenant"),
    ("task_class", "Task class", "task_class"),
)


def call_filters(prefix: str = "", skip: tuple[str, ...] = ()) -> str:
    """`$__conditionalAll` filters for the call variables (All selected: 1=1)."""
    return " AND ".join(
        f"$__conditionalAll({prefix}{column} IN (${{{name}:singlequote}}), ${name})"
        for name, _, column in CALL_VARIABLES
        if name not in skip
    )


RAW_RANGE = f"$__toTime - $__fromTime <= {ROLLUP_AFTER_S}"
ROLLUP_RANGE = f"$__toTime - $__fromTime > {ROLLUP_AFTER_S}"
RAW_WHERE = f"$__timeFilter(Timestamp) AND {RAW_RANGE} AND {call_filters()}"
ROLLUP_WHERE = f"hour >= toStartOfHour($__fromTime) AND hour <= $__toTime AND {ROLLUP_RANGE} AND {call_filters()}"
CALLS_WHERE = f"$__timeFilter(Timestamp) AND {call_filters()}"  # llm_calls at any range
RAW_BUCKET = "$__timeInterval(Timestamp)"
ROLLUP_BUCKET = "toStartOfInterval(hour, INTERVAL greatest($__interval_s, 3600) second)"
DAILY_RANGE = f"day >= toStartOfDay($__fromTime) AND day <= $__toTime AND {ROLLUP_RANGE}"
DAILY_WHERE = f"{DAILY_RANGE} AND {call_filters()}"
# True (1=1 AND ...) while every call variable is "All", else false (0 AND ...): `$__conditionalAll`
# becomes 1=1 for "All" and its condition, 0, otherwise.
NO_CALL_FILTER = " AND ".join(f"$__conditionalAll(0, ${name})" for name, _, _ in CALL_VARIABLES)
DAILY_BUCKET = "toStartOfInterval(day, INTERVAL greatest($__interval_s, 86400) second)"
# Tables of single calls list the last day of the range at most: scanning 30 days of calls for a top 50
# takes seconds on a store of 10M calls.
CALLS_CAP_S = 24 * 3600


def by_range(raw: str, rollup: str, outer: str = "*", tail: str = "") -> str:
    """One query over llm_calls (short ranges) or llm_calls_hourly (long ranges).

    `raw` and `rollup` are SELECTs returning the same columns; `outer` combines them (sums of
    numerators and denominators, so ratios are taken once) and `tail` adds GROUP BY / ORDER BY / LIMIT.
    """
    return f"SELECT {outer}\nFROM (\n{raw}\nUNION ALL\n{rollup}\n)\n{tail}".rstrip()


def daily(select: str, rest: str = "", table: str = "llm_calls_daily", unfiltered: str = "llm_calls_daily_by_class") -> str:
    """`select` over the days of a long range, then `rest` (more conditions, GROUP BY): from `unfiltered`
    (the same rollup without the call dimensions, so far fewer states to merge) while no call variable
    filters, from `table` otherwise. `select` may use only the columns both tables have."""
    return (
        f"{select}\nFROM {table} WHERE {DAILY_WHERE} AND NOT ({NO_CALL_FILTER}){rest}\nUNION ALL\n"
        f"{select}\nFROM {unfiltered} WHERE {DAILY_RANGE} AND {NO_CALL_FILTER}{rest}"
    )


def variable_query(column: str) -> str:
    """Options of a call variable: the values seen in the rollup during the range."""
    return (
        f"SELECT DISTINCT {column} FROM llm_calls_hourly "
        f"WHERE hour >= toStartOfHour($__fromTime) AND hour <= $__toTime AND {column} != '' ORDER BY {column}"
    )


# ------------------------------------------------------------------------------------ the trace view

# The OTel trace columns the plugin maps (src/otel.ts, versions 1.2.9 / 1.3.0 / latest: traces unchanged).
TRACE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("time", "Timestamp"),
    ("trace_id", "TraceId"),
    ("trace_span_id", "SpanId"),
    ("trace_parent_span_id", "ParentSpanId"),
    ("trace_service_name", "ServiceName"),
    ("trace_operation_name", "SpanName"),
    ("trace_duration_time", "Duration"),
    ("trace_tags", "SpanAttributes"),
    ("trace_service_tags", "ResourceAttributes"),
    ("trace_status_code", "StatusCode"),
    ("trace_kind", "SpanKind"),
    ("trace_status_message", "StatusMessage"),
    ("trace_state", "TraceState"),
)
TRACE_ID_SUFFIX = "_trace_id_ts"


def trace_id_query(trace_id: str, database: str = "default", table: str = "otel_traces") -> str:
    """What the plugin's query builder generates for one trace id (src/data/sqlGenerator.ts
    generateTraceIdQuery) with the OTel column map, nanosecond durations, Events/Links prefixes,
    flattenNested false and the `<table>_trace_id_ts` lookup table present."""
    ts_table = f'"{database}"."{table}{TRACE_ID_SUFFIX}"'
    attrs = "arrayMap(key -> map('key', key, 'value', attributes[key]), mapKeys(attributes))"
    return " ".join(
        [
            f"WITH '{trace_id}' as __gf_trace_id,",
            f"(SELECT min(Start) FROM {ts_table} WHERE TraceId = __gf_trace_id) as __gf_trace_start,",
            f"(SELECT max(End) + 1 FROM {ts_table} WHERE TraceId = __gf_trace_id) as __gf_trace_end",
            'SELECT "TraceId" as traceID, "SpanId" as spanID, "ParentSpanId" as parentSpanID,',
            '"ServiceName" as serviceName, "SpanName" as operationName,',
            'multiply(toUnixTimestamp64Nano("Timestamp"), 0.000001) as startTime,',
            'multiply("Duration", 0.000001) as duration,',
            "arrayMap(key -> map('key', key, 'value',\"SpanAttributes\"[key]), mapKeys(\"SpanAttributes\")) as tags,",
            "arrayMap(key -> map('key', key, 'value',\"ResourceAttributes\"[key]), mapKeys(\"ResourceAttributes\")) as serviceTags,",
            "if(\"StatusCode\" IN ('Error', 'STATUS_CODE_ERROR'), 2, 0) as statusCode,",
            (
                f"arrayMap((name, timestamp, attributes) -> tuple(name, toString(toUnixTimestamp64Milli(timestamp)), {attrs})"
                '::Tuple(name String, timestamp String, fields Array(Map(String, String))), "Events".Name, "Events".Timestamp,'
                ' "Events".Attributes) AS logs,'
            ),
            (
                f"arrayMap((traceID, spanID, attributes) -> tuple(traceID, spanID, {attrs})"
                '::Tuple(traceID String, spanID String, tags Array(Map(String, String))), "Links".TraceId, "Links".SpanId,'
                ' "Links".Attributes) AS references,'
            ),
            '"SpanKind" as kind,',
            '"StatusMessage" as statusMessage,',
            '"TraceState" as traceState',
            (
                f'FROM "{database}"."{table}" WHERE traceID = __gf_trace_id AND "Timestamp" >= __gf_trace_start'
                ' AND "Timestamp" <= __gf_trace_end'
            ),
        ]
    )


TRACE_VIEW_COLUMNS = (
    "traceID", "spanID", "parentSpanID", "serviceName", "operationName", "startTime", "duration", "tags",
    "serviceTags", "statusCode", "logs", "references", "kind", "statusMessage", "traceState",
)


def trace_link(database: str = "default") -> dict[str, object]:
    """A field data link that opens the trace of the cell's trace id in Explore's trace view, as the
    plugin builds its own log-to-trace links (src/data/utils.ts): a builder query in trace-id mode."""
    value = "${__value.raw}"
    builder_options = {
        "database": database,
        "table": "otel_traces",
        "queryType": "traces",
        "columns": [{"name": column, "hint": hint} for hint, column in TRACE_COLUMNS],
        "filters": [],
        "orderBy": [],
        "meta": {
            "minimized": True,
            "isTraceIdMode": True,
            "traceId": value,
            "traceDurationUnit": "nanoseconds",
            "otelEnabled": True,
            "otelVersion": "latest",
            "traceEventsColumnPrefix": "Events",
            "traceLinksColumnPrefix": "Links",
            "hasTraceTimestampTable": True,
            "traceTimestampTableSuffix": TRACE_ID_SUFFIX,
            "flattenNested": False,
            "tagsAreJSON": False,
        },
    }
    return {
        "title": "Open trace",
        "url": "",
        "internal": {
            "datasourceUid": "${datasource}",
            "datasourceName": "thinkmeter ClickHouse",
            "query": {
                "datasource": {"type": "grafana-clickhouse-datasource", "uid": "${datasource}"},
                "editorType": "builder",
                "format": 3,
                "queryType": "traces",
                "rawSql": trace_id_query(value, database),
                "builderOptions": builder_options,
                "refId": "Trace ID",
            },
        },
    }
