"""The span contract, written once: span attribute -> call-record field -> `llm_calls` column -> ClickHouse type.

`instrumentation/_telemetry.py` reads record fields into span attributes from this table, and
`schemas/ddl.py` generates `llm_calls`' typed columns and the SELECT list of `llm_calls_mv` from it.
Adding an attribute with a column is one row here (and a field on the record, if thinkmeter fills it
from the call).
"""

from __future__ import annotations

from dataclasses import dataclass

from thinkmeter.schemas import semconv as sc


@dataclass(frozen=True)
class SpanColumn:
    attribute: str
    # Dotted path from CallRecord to the value (None: set elsewhere, e.g. tags or engine context).
    field: str | None
    # The llm_calls column (None: the attribute stays on the span only).
    column: str | None
    # The column's ClickHouse type, codec included; it picks how the string attribute is converted.
    type: str = "LowCardinality(String)"
    # Stored when the span does not carry the attribute (strings only).
    default: str | None = None


_COUNT = "Nullable(UInt64)"
_SECONDS = "Nullable(Float64)"
_USD = "Nullable(Float64)"
_TEXT = "String CODEC(ZSTD(1))"

SPAN_COLUMNS: tuple[SpanColumn, ...] = (
    # Request
    SpanColumn(sc.OPERATION, "operation", "operation"),
    SpanColumn(sc.PROVIDER, "provider", "provider"),
    SpanColumn(sc.REQUEST_MODEL, "request_model", "request_model"),
    SpanColumn(sc.RESPONSE_MODEL, "response_model", "response_model"),
    SpanColumn(sc.RESPONSE_ID, "response_id", "response_id", _TEXT),
    SpanColumn(sc.RESPONSE_FINISH_REASONS, "finish_reasons", "finish_reasons", "Array(String)"),
    SpanColumn(sc.REQUEST_STREAM, "stream", "stream", "UInt8"),
    SpanColumn(sc.REQUEST_MAX_TOKENS, "max_tokens", "max_tokens", "Nullable(UInt32)"),
    SpanColumn(sc.REQUEST_REASONING_LEVEL, "reasoning_level", "reasoning_level"),
    SpanColumn(sc.REQUEST_THINKING_BUDGET, "thinking_budget_tokens", "thinking_budget_tokens", "Nullable(UInt32)"),
    SpanColumn(sc.SERVER_ADDRESS, "server_address", "server_address"),
    SpanColumn(sc.SERVER_PORT, "server_port", None),
    SpanColumn(sc.ENGINE, "engine", "engine"),
    # Usage: input includes cached tokens; reasoning is a subset of output.
    SpanColumn(sc.INPUT_TOKENS, "usage.input_tokens", "input_tokens", _COUNT),
    SpanColumn(sc.CACHE_READ_TOKENS, "usage.cache_read_tokens", "cache_read_tokens", _COUNT),
    SpanColumn(sc.CACHE_WRITE_TOKENS, "usage.cache_write_tokens", "cache_write_tokens", _COUNT),
    SpanColumn(sc.OUTPUT_TOKENS, "usage.output_tokens", "output_tokens", _COUNT),
    SpanColumn(sc.REASONING_TOKENS, "usage.reasoning_tokens", "reasoning_tokens", _COUNT),
    SpanColumn(sc.VISIBLE_OUTPUT_TOKENS, "usage.visible_output_tokens", "visible_output_tokens", _COUNT),
    SpanColumn(sc.REASONING_SOURCE, "usage.reasoning_source.value", "reasoning_source", default="unknown"),
    SpanColumn(sc.OUTPUT_SOURCE, "usage.output_source.value", "output_source", default="unknown"),
    # Timings, seconds from the start of the SDK call
    SpanColumn(sc.TIME_TO_FIRST_CHUNK, "time_to_first_chunk", "time_to_first_chunk_s", _SECONDS),
    SpanColumn(sc.TIME_TO_FIRST_TOKEN, "time_to_first_token", "time_to_first_token_s", _SECONDS),
    SpanColumn(sc.TIME_TO_FIRST_VISIBLE_TOKEN, "time_to_first_visible_token", "time_to_first_visible_token_s", _SECONDS),
    SpanColumn(sc.TIME_PER_OUTPUT_TOKEN, "time_per_output_token", "time_per_output_token_s", _SECONDS),
    # Cost
    SpanColumn(sc.COST_USD, "cost_usd", "cost_usd", _USD),
    SpanColumn(sc.REASONING_COST_USD, "reasoning_cost_usd", "reasoning_cost_usd", _USD),
    SpanColumn(sc.COST_SOURCE, "cost_source", "cost_source"),
    # Attribution from thinkmeter.tags(...)
    SpanColumn(sc.TENANT, None, "tenant"),
    SpanColumn(sc.USER, None, "user"),
    SpanColumn(sc.SESSION, None, "session", _TEXT),
    SpanColumn(sc.FEATURE, None, "feature"),
    SpanColumn(sc.TASK_CLASS, None, "task_class"),
    SpanColumn(sc.TASK_ID, None, "task_id", _TEXT),  # thinkmeter.task(...)
    SpanColumn(sc.ERROR_TYPE, "error_type", "error_type"),
    SpanColumn(sc.ANSWER_LOST, "answer_lost", "answer_lost", "Nullable(Bool)"),
    # What the engine and its GPUs were under when the call started (self-hosted engines with a collector)
    SpanColumn(sc.ENGINE_KV_CACHE_USAGE, None, "engine_kv_cache_usage", "Nullable(Float64)"),
    SpanColumn(sc.ENGINE_KV_CACHE_LAYOUT, None, None),
    SpanColumn(sc.ENGINE_REQUESTS_RUNNING, None, "engine_requests_running", "Nullable(UInt32)"),
    SpanColumn(sc.ENGINE_REQUESTS_WAITING, None, "engine_requests_waiting", "Nullable(UInt32)"),
    SpanColumn(sc.GPU_UTILIZATION, None, "gpu_utilization", "Nullable(Float64)"),
    SpanColumn(sc.GPU_MEMORY_USED_BYTES, None, "gpu_memory_used_bytes", _COUNT),
    # Budgets (thinkmeter/budgets), set by the budget runtime: the policy line that acted (or would
    # have), what was injected, a stream cut off or a call refused (or what would have been), and the
    # running cost at the cut.
    SpanColumn(sc.BUDGET_LINE, None, "budget_line"),
    SpanColumn(sc.BUDGET_CAP, None, None),
    SpanColumn(sc.BUDGET_REACHED, None, None),
    SpanColumn(sc.BUDGET_INJECTED, None, "budget_injected", "Array(String)"),
    SpanColumn(sc.BUDGET_CUT, None, "budget_cut", "UInt8"),
    SpanColumn(sc.BUDGET_WOULD_CUT, None, "budget_would_cut", "UInt8"),
    SpanColumn(sc.BUDGET_REJECTED, None, "budget_rejected", "UInt8"),
    SpanColumn(sc.BUDGET_WOULD_REJECT, None, "budget_would_reject", "UInt8"),
    SpanColumn(sc.BUDGET_CUT_COST_USD, None, "budget_cut_cost_usd", _USD),
)

# The task span (`thinkmeter.task(...)`) -> task_spans: the totals of the calls made inside it.
TASK_SPAN_COLUMNS: tuple[SpanColumn, ...] = (
    SpanColumn(sc.TASK_ID, None, "task_id", _TEXT),
    SpanColumn(sc.TASK_CLASS, None, "task_class"),
    SpanColumn(sc.TASK_PARENT_ID, None, "parent_task_id", _TEXT),
    SpanColumn(sc.TASK_CALLS, None, "calls", _COUNT),
    SpanColumn(sc.TASK_ERRORS, None, "errors", _COUNT),
    SpanColumn(sc.TASK_INPUT_TOKENS, None, "input_tokens", _COUNT),
    SpanColumn(sc.TASK_OUTPUT_TOKENS, None, "output_tokens", _COUNT),
    SpanColumn(sc.TASK_REASONING_TOKENS, None, "reasoning_tokens", _COUNT),
    SpanColumn(sc.TASK_COST_USD, None, "cost_usd", _USD),
    SpanColumn(sc.TASK_UNPRICED_CALLS, None, "unpriced_calls", _COUNT),
    SpanColumn(sc.TASK_REASONING_UNKNOWN_CALLS, None, "reasoning_unknown_calls", _COUNT),
    SpanColumn(sc.TASK_OUTCOME_CORRECT, None, "outcome_correct", "Nullable(Bool)"),
    SpanColumn(sc.TASK_OUTCOME_SCORE, None, "outcome_score", "Nullable(Float64)"),
)
# An outcome span (`task.outcome()`, `thinkmeter.record_outcome()`) -> task_outcomes.
OUTCOME_COLUMNS: tuple[SpanColumn, ...] = (
    SpanColumn(sc.TASK_ID, None, "task_id", _TEXT),
    SpanColumn(sc.TASK_CLASS, None, "task_class"),
    SpanColumn(sc.TASK_OUTCOME_CORRECT, None, "correct", "Nullable(Bool)"),
    SpanColumn(sc.TASK_OUTCOME_SCORE, None, "score", "Nullable(Float64)"),
)

# Span attributes read off the call record, in table order.
RECORD_ATTRIBUTES: tuple[tuple[str, str], ...] = tuple((c.attribute, c.field) for c in SPAN_COLUMNS if c.field)
STORED_COLUMNS: tuple[SpanColumn, ...] = tuple(c for c in SPAN_COLUMNS if c.column)


def _conversion(column: SpanColumn) -> str:
    """The SELECT expression that turns the span's string attribute into the typed column."""
    value = f"SpanAttributes['{column.attribute}']"
    base = column.type.split(" CODEC")[0]
    if base == "Nullable(Bool)":  # a boolean attribute that may be absent
        return f"multiIf({value} = 'true', true, {value} = 'false', false, NULL)"
    if base.startswith("Nullable("):
        return f"to{base[len('Nullable('):-1]}OrNull({value})"
    if base == "UInt8":  # a boolean attribute, exported as 'true' / 'false'
        return f"{value} = 'true'"
    if base.startswith("Array("):  # a sequence attribute, exported as a JSON array
        return f"JSONExtract({value}, '{base}')"
    if base in ("String", "LowCardinality(String)"):
        return f"coalesce(nullIf({value}, ''), '{column.default}')" if column.default else value
    raise ValueError(f"no conversion from a span attribute to {column.type} (column {column.column})")


# Table -> its span attribute columns, for the DDL placeholders {{columns:<table>}} and {{select:<table>}}.
TABLE_COLUMNS: dict[str, tuple[SpanColumn, ...]] = {
    "llm_calls": STORED_COLUMNS,
    "task_spans": TASK_SPAN_COLUMNS,
    "task_outcomes": OUTCOME_COLUMNS,
}


def column_definitions(table: str, indent: str = "    ") -> str:
    return ",\n".join(f"{indent}{c.column} {c.type}" for c in TABLE_COLUMNS[table])


def select_list(table: str, indent: str = "    ") -> str:
    return ",\n".join(f"{indent}{_conversion(c)} AS {c.column}" for c in TABLE_COLUMNS[table])
