"""Every dashboard panel query and alert query, timed on an embedded store of many calls.

    python benchmarks/scale_queries.py [--quick] [--rows N] [--data-dir DIR] [--repeat K] [--only TEXT] [--ranges 1h,30d]

The generator runs inside ClickHouse (`INSERT ... SELECT ... FROM numbers(...)` in blocks, no Python per
row): by default straight into llm_calls, whose view fills the llm_calls_hourly rollup; with --via-traces
into otel_traces, so every materialized view runs exactly as for exported spans (about 5x slower). Calls spread over the last 30 days (now-relative, so TTL keeps them). With --data-dir an
existing store of the right size is reused. Queries come from thinkmeter.dashboards and
thinkmeter.alerts (whatever they define when this runs), expanded with dashboards' macro expander,
"All" selected for every variable, over 1 h, 24 h, 7 d and 30 d ranges.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import re
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from thinkmeter.schemas.ddl import render

from thinkmeter.config import Settings
from thinkmeter.store import embedded_store, ensure_schema

DAYS = 30
BLOCK = 1_000_000
RANGES_S = {"1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}

# Rows of the generated workload: (model, provider, input $/M, output $/M).
MODELS = (
    ("o4-mini", "openai", 1.1, 4.4), ("gpt-5", "openai", 1.25, 10.0), ("gpt-5-mini", "openai", 0.25, 2.0),
    ("o3", "openai", 2.0, 8.0), ("claude-sonnet-4-5", "anthropic", 3.0, 15.0),
    ("claude-opus-4-1", "anthropic", 15.0, 75.0), ("gemini-2.5-pro", "gcp.gemini", 1.25, 10.0),
    ("gemini-2.5-flash", "gcp.gemini", 0.3, 2.5), ("deepseek-reasoner", "deepseek", 0.55, 2.19),
    ("qwen3-32b", "vllm", 0.0, 0.0), ("gpt-oss-120b", "vllm", 0.0, 0.0), ("llama-3.3-70b", "ollama", 0.0, 0.0),
)


def _array(values: Iterator[Any]) -> str:
    return "[" + ",".join(repr(v) if isinstance(v, str) else f"{float(v)}" for v in values) + "]"


def _calls_sql(start: int, count: int) -> str:
    """Per-call values of calls numbered start .. start+count-1 (deterministic, hash-spread)."""
    models, providers = _array(m[0] for m in MODELS), _array(m[1] for m in MODELS)
    in_price, out_price = _array(m[2] for m in MODELS), _array(m[3] for m in MODELS)
    return f"""
    SELECT number AS n, cityHash64(n) AS h,
           now64(9) - toIntervalMillisecond(h % {DAYS * 86_400_000}) AS ts,
           lower(hex(cityHash64(n, 1))) AS trace_id, lower(hex(h)) AS span_id,
           h % 50 AS tenant_no,  -- a tenant uses one service, two features and three models, as real ones do
           ['checkout', 'search-api', 'assistant', 'batch-jobs', 'support-bot'][1 + tenant_no % 5] AS service,
           (tenant_no * 3 + intDiv(h, 11) % 3) % {len(MODELS)} AS mi,
           ['search', 'chat', 'summarize', 'code', 'agent', 'extract', 'classify', 'rag'][1 + (tenant_no + intDiv(h, 5) % 2) % 8] AS feature,
           {models}[mi + 1] AS model, {providers}[mi + 1] AS provider,
           {in_price}[mi + 1] AS in_usd, {out_price}[mi + 1] AS out_usd,
           (h % 10) < 7 AS stream, (intDiv(h, 13) % 100) = 0 AS error, (intDiv(h, 17) % 100) < 3 AS unknown_usage,
           100 + intDiv(h, 19) % 20000 AS input, intDiv(input, 2) * ((intDiv(h, 23) % 2)) AS cached,
           20 + toUInt64(exp2((intDiv(h, 29) % 1300) / 100.0)) AS output,
           toUInt64(output * ((intDiv(h, 31) % 90) / 100.0)) AS reasoning,
           0.1 + (intDiv(h, 37) % 2000) / 1000.0 AS ttfc, ttfc + reasoning * 0.012 AS ttfvt, 0.004 + (intDiv(h, 41) % 40) / 1000.0 AS tpot,
           ttfvt + (output - reasoning) * tpot AS duration_s,
           ((input - cached) * in_usd + cached * in_usd / 10 + output * out_usd) / 1e6 AS cost
    FROM numbers({start}, {count})
"""


def traces_insert_sql(start: int, count: int) -> str:
    """A block of realistic LLM-call spans into otel_traces: the materialized views do the rest."""
    return f"""
INSERT INTO otel_traces (Timestamp, TraceId, SpanId, ServiceName, SpanName, SpanKind, ScopeName, ScopeVersion,
                         SpanAttributes, Duration, StatusCode)
SELECT ts, trace_id, span_id, service, concat('chat ', model), 'SPAN_KIND_CLIENT', 'thinkmeter', '0.1.0',
       mapFilter((k, v) -> v != '', map(
           'gen_ai.operation.name', 'chat', 'gen_ai.provider.name', provider,
           'gen_ai.request.model', model, 'gen_ai.response.model', concat(model, '-2025-08-07'),
           'gen_ai.response.id', concat('resp_', span_id), 'gen_ai.response.finish_reasons', '["stop"]',
           'gen_ai.request.stream', if(stream, 'true', 'false'),
           'gen_ai.request.reasoning.level', ['low', 'medium', 'high'][1 + h % 3],
           'server.address', 'api.example.com', 'thinkmeter.engine', if(provider IN ('vllm', 'ollama'), provider, ''),
           'gen_ai.usage.input_tokens', toString(input),
           'gen_ai.usage.cache_read.input_tokens', toString(cached),
           'gen_ai.usage.output_tokens', if(unknown_usage, '', toString(output)),
           'gen_ai.usage.reasoning.output_tokens', if(unknown_usage, '', toString(reasoning)),
           'thinkmeter.usage.visible_output_tokens', if(unknown_usage, '', toString(output - reasoning)),
           'thinkmeter.usage.reasoning.source', if(unknown_usage, 'unknown', 'reported'),
           'thinkmeter.usage.output.source', if(unknown_usage, 'unknown', 'reported'),
           'gen_ai.response.time_to_first_chunk', if(stream, toString(ttfc), ''),
           'thinkmeter.latency.time_to_first_token', if(stream, toString(ttfc + 0.01), ''),
           'thinkmeter.latency.time_to_first_visible_token', if(stream, toString(ttfvt), ''),
           'thinkmeter.latency.time_per_output_token', if(stream, toString(tpot), ''),
           'thinkmeter.cost.usd', if(unknown_usage OR in_usd = 0, '', toString(cost)),
           'thinkmeter.cost.reasoning_usd', if(unknown_usage OR in_usd = 0, '', toString(reasoning * out_usd / 1e6)),
           'thinkmeter.cost.source', if(unknown_usage, '', if(in_usd = 0, 'unknown_price', 'price_table')),
           'thinkmeter.tenant', concat('tenant-', toString(tenant_no)),
           'thinkmeter.user', concat('user-', toString(h % 2000)),
           'thinkmeter.session', concat('s-', toString(intDiv(n, 8))),
           'thinkmeter.feature', feature,
           'thinkmeter.task_class', ['simple', 'lookup', 'reasoning', 'coding', 'math', 'creative'][1 + intDiv(h, 7) % 6],
           'error.type', if(error, 'RateLimitError', ''))),
       toUInt64(duration_s * 1e9), if(error, 'STATUS_CODE_ERROR', 'STATUS_CODE_UNSET')
FROM ({_calls_sql(start, count)})
"""


def calls_insert_sql(start: int, count: int) -> str:
    """The same calls straight into llm_calls (its rollup view still fills llm_calls_hourly)."""
    return f"""
INSERT INTO llm_calls (Timestamp, TraceId, SpanId, ServiceName, StatusCode, duration_s, operation, provider,
    request_model, response_model, model, response_id, finish_reasons, stream, reasoning_level, server_address,
    engine, input_tokens, cache_read_tokens, output_tokens, reasoning_tokens, visible_output_tokens,
    reasoning_source, output_source, time_to_first_chunk_s, time_to_first_token_s, time_to_first_visible_token_s,
    time_per_output_token_s, cost_usd, reasoning_cost_usd, cost_source, tenant, user, session, feature,
    task_class, error_type)
SELECT ts, trace_id, span_id, service, if(error, 'STATUS_CODE_ERROR', 'STATUS_CODE_UNSET'), duration_s, 'chat',
    provider, model, concat(model, '-2025-08-07'), concat(model, '-2025-08-07'), concat('resp_', span_id), ['stop'],
    stream, ['low', 'medium', 'high'][1 + h % 3], 'api.example.com', if(provider IN ('vllm', 'ollama'), provider, ''),
    input, cached, if(unknown_usage, NULL, output), if(unknown_usage, NULL, reasoning),
    if(unknown_usage, NULL, output - reasoning), if(unknown_usage, 'unknown', 'reported'),
    if(unknown_usage, 'unknown', 'reported'), if(stream, ttfc, NULL), if(stream, ttfc + 0.01, NULL),
    if(stream, ttfvt, NULL), if(stream, tpot, NULL), if(unknown_usage OR in_usd = 0, NULL, cost),
    if(unknown_usage OR in_usd = 0, NULL, reasoning * out_usd / 1e6),
    if(unknown_usage, '', if(in_usd = 0, 'unknown_price', 'price_table')), concat('tenant-', toString(tenant_no)),
    concat('user-', toString(h % 2000)), concat('s-', toString(intDiv(n, 8))),
    feature,
    ['simple', 'lookup', 'reasoning', 'coding', 'math', 'creative'][1 + intDiv(h, 7) % 6],
    if(error, 'RateLimitError', '')
FROM ({_calls_sql(start, count)})
"""


def fill(client: Any, rows: int, via_traces: bool) -> None:
    have = client.query("SELECT count() FROM llm_calls").result_rows[0][0]
    if have >= rows:
        print(f"store already holds {have:,} calls")
        backfill_rollups(client)
        return
    t0 = time.perf_counter()
    for start in range(have, rows, BLOCK):
        count = min(BLOCK, rows - start)
        insert = traces_insert_sql if via_traces else calls_insert_sql
        client.command(insert(start, count), settings={"max_insert_block_size": 1_048_576,
                                                              "min_insert_block_size_rows": 1_048_576})
        print(f"  generated {start + count:>11,} calls  ({time.perf_counter() - t0:6.1f} s)", flush=True)
    t0 = time.perf_counter()
    for _, statement in render():
        if match := _ROLLUP_VIEW.search(statement):
            client.command(f"OPTIMIZE TABLE {match.group(1)} FINAL")
    print(f"  rollups merged in {time.perf_counter() - t0:.1f} s")
    counts = client.query(
        "SELECT (SELECT count() FROM otel_traces), (SELECT count() FROM llm_calls), "
        "(SELECT count() FROM llm_calls_hourly), (SELECT count() FROM llm_calls_daily), "
        "(SELECT count() FROM llm_calls_effort_daily), (SELECT count() FROM llm_calls_users_daily)"
    ).result_rows[0]
    print(f"  otel_traces {counts[0]:,}  llm_calls {counts[1]:,}  rollup rows: hourly {counts[2]:,}, daily "
          f"{counts[3]:,}, effort daily {counts[4]:,}, users daily {counts[5]:,}")


# A rollup's view: `CREATE MATERIALIZED VIEW ... TO <db>.<table> AS SELECT ... FROM <db>.llm_calls ...`.
_ROLLUP_VIEW = re.compile(r"CREATE MATERIALIZED VIEW .*?\bTO (\S+)\s+AS (SELECT\s.*\bFROM \S+\.llm_calls\b.*)", re.DOTALL)


def backfill_rollups(client: Any) -> None:
    """Fill rollups added to the schema after the store was generated, from llm_calls (their own view's
    SELECT), so a kept store picks up new rollups without being generated again."""
    if not client.query("SELECT count() FROM llm_calls").result_rows[0][0]:
        return
    for _, statement in render():
        match = _ROLLUP_VIEW.search(statement)
        if not match or client.query(f"SELECT count() FROM {match.group(1)}").result_rows[0][0]:
            continue
        t0 = time.perf_counter()
        client.command(f"INSERT INTO {match.group(1)} {match.group(2)}")
        client.command(f"OPTIMIZE TABLE {match.group(1)} FINAL")
        print(f"  backfilled {match.group(1)} from llm_calls in {time.perf_counter() - t0:.1f} s", flush=True)


# ------------------------------------------------------------------------------------------ the queries


def dashboard_queries() -> Iterator[tuple[str, str, Any]]:
    """(name, sql, variables) of every panel query of every Dashboard defined in thinkmeter.dashboards."""
    from thinkmeter.schemas.grafana_sql import ALL, Variable
    from thinkmeter.dashboards.model import CustomVariable, Dashboard, QueryVariable

    from thinkmeter import dashboards

    found: dict[str, Dashboard] = {}

    def take(value: Any) -> None:
        if isinstance(value, Dashboard):
            found[value.uid] = value
        elif isinstance(value, (list, tuple)):
            for item in value:
                take(item)

    for info in pkgutil.iter_modules(dashboards.__path__):
        module = importlib.import_module(f"thinkmeter.dashboards.{info.name}")
        for name, value in vars(module).items():
            take(value)
            if callable(value) and "dashboard" in name.lower() and getattr(value, "__module__", "") == module.__name__:
                try:
                    take(value())
                except TypeError:
                    pass
    for dashboard in found.values():
        variables = [
            Variable(v.name, ALL) if isinstance(v, QueryVariable) else Variable(v.name, v.default)
            for v in dashboard.variables
            if isinstance(v, (QueryVariable, CustomVariable))
        ]
        for variable in dashboard.variables:
            if isinstance(variable, QueryVariable):
                yield f"{dashboard.uid}/var:{variable.name}", variable.sql, variables
        for panel in dashboard.panels:
            for query in panel.queries:
                yield f"{dashboard.uid}/{panel.title}/{query.ref_id}", query.sql, variables


def alert_queries() -> Iterator[tuple[str, str, int]]:
    try:
        from thinkmeter.alerts.rules import build_rules
    except ImportError:
        return
    for rule in build_rules():
        yield f"alert/{rule.uid}", rule.sql, rule.window_s


def time_query(client: Any, sql: str, repeat: int) -> tuple[float, float, int]:
    times = []
    rows = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        rows = len(client.query(sql).result_rows)
        times.append(time.perf_counter() - t0)
    times.sort()
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    return statistics.median(times) * 1000, p95 * 1000, rows


def run_queries(client: Any, repeat: int, only: str = "", ranges: tuple[str, ...] = tuple(RANGES_S)) -> None:
    from thinkmeter.schemas.grafana_sql import (
        TimeRange,
        expand_alert_query,
        expand_panel_query,
    )

    results = []
    for name, sql, variables in dashboard_queries():
        if only.lower() not in name.lower():
            continue
        for label in ranges:
            seconds = RANGES_S[label]
            expanded = expand_panel_query(sql, TimeRange.last(seconds, interval_ms=max(1000, seconds * 1000 // 1000)),
                                          variables)
            results.append((f"{name} [{label}]", expanded))
    for name, sql, window_s in alert_queries():
        if only.lower() not in name.lower():
            continue
        results.append((f"{name} [{window_s}s]", expand_alert_query(sql, TimeRange.last(window_s))))
    if not results:
        print("no dashboard or alert queries found")
        return
    width = max(len(name) for name, _ in results) + 1
    print(f"\n{'query':<{width}}{'p50 ms':>9}{'p95 ms':>9}{'rows':>7}")
    slow = failed = 0
    for name, sql in results:
        try:
            p50, p95, rows = time_query(client, sql, repeat)
        except Exception as exc:  # a query that fails is reported, the rest still run
            failed += 1
            print(f"{name:<{width}}  FAILED: {str(exc).splitlines()[0][:120]}")
            continue
        slow += p95 > 200
        print(f"{name:<{width}}{p50:>9.1f}{p95:>9.1f}{rows:>7}{'  > 200 ms' if p95 > 200 else ''}")
    print(f"\n{len(results)} queries, {slow} with p95 > 200 ms (target: none), {failed} failed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1M calls, 3 repeats")
    parser.add_argument("--rows", type=int, default=None, help="calls in the store (default 10,000,000)")
    parser.add_argument("--repeat", type=int, default=None, help="runs of each query (default 10)")
    parser.add_argument("--via-traces", action="store_true",
                        help="generate spans into otel_traces so every materialized view runs (slower)")
    parser.add_argument("--data-dir", type=Path, default=None, help="keep (and reuse) the store here")
    parser.add_argument("--only", default="", help="time only the queries whose name contains this text")
    parser.add_argument("--ranges", default=",".join(RANGES_S), help=f"comma-separated subset of {', '.join(RANGES_S)}")
    args = parser.parse_args()
    rows = args.rows or (1_000_000 if args.quick else 10_000_000)
    repeat = args.repeat or (3 if args.quick else 10)
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="thinkmeter-bench-scale-"))
    settings = Settings(data_dir=data_dir)
    try:
        with embedded_store(settings) as client:
            ensure_schema(client, settings)
            print(f"store: {data_dir} ({rows:,} calls over {DAYS} days)")
            fill(client, rows, args.via_traces)
            run_queries(client, repeat, args.only, tuple(r for r in args.ranges.split(",") if r))
    finally:
        if args.data_dir is None:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
