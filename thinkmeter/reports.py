"""Report and outlier queries over llm_calls; the CLI formats what these return."""

from __future__ import annotations

from typing import Any

WINDOW = "Timestamp >= now64(9) - toIntervalSecond({window_s:UInt64})"
GROUPINGS = ("provider", "model", "feature", "tenant", "task_class")

_TOTALS = """
SELECT
    count() AS calls,
    countIf(error_type != '') AS errors,
    sum(input_tokens) AS total_input_tokens,
    sum(output_tokens) AS total_output_tokens,
    sum(reasoning_tokens) AS total_reasoning_tokens,
    sum(visible_output_tokens) AS total_visible_output_tokens,
    countIf(reasoning_source = 'unknown' AND output_tokens IS NOT NULL) AS calls_reasoning_unknown,
    round(sum(reasoning_tokens) / nullIf(sumIf(output_tokens, reasoning_tokens IS NOT NULL), 0), 4) AS hidden_reasoning_share,
    sum(cost_usd) AS total_cost_usd,
    sum(reasoning_cost_usd) AS total_reasoning_cost_usd,
    round(sum(reasoning_cost_usd) / nullIf(sumIf(cost_usd, reasoning_cost_usd IS NOT NULL), 0), 4) AS reasoning_cost_share,
    countIf(cost_source = 'unknown_price') AS calls_without_price
FROM llm_calls WHERE {window}
"""

_BY = """
SELECT
    {column} AS {column},
    count() AS calls,
    sum(output_tokens) AS total_output_tokens,
    sum(reasoning_tokens) AS total_reasoning_tokens,
    round(sum(reasoning_tokens) / nullIf(sumIf(output_tokens, reasoning_tokens IS NOT NULL), 0), 4) AS hidden_reasoning_share,
    round(sum(cost_usd), 6) AS total_cost_usd,
    round(sum(reasoning_cost_usd), 6) AS total_reasoning_cost_usd,
    countIf(cost_source = 'unknown_price') AS calls_without_price
FROM llm_calls WHERE {window}
GROUP BY {column} ORDER BY total_cost_usd DESC, calls DESC
"""

# Calls that hit their output cap while still thinking: billed, no visible answer (unknown: not counted).
_ANSWER_LOST = """
SELECT
    model,
    task_class,
    count() AS answers_lost,
    round(sum(cost_usd), 6) AS total_cost_usd,
    countIf(cost_usd IS NULL) AS calls_without_price
FROM llm_calls WHERE {window} AND answer_lost = true
GROUP BY model, task_class ORDER BY answers_lost DESC, total_cost_usd DESC
"""

# Streamed calls only: a non-streamed call has no first token to time.
_LATENCY = """
SELECT
    model,
    count() AS streamed_calls,
    round(quantileExact(0.50)(time_to_first_token_s), 3) AS ttft_p50_s,
    round(quantileExact(0.95)(time_to_first_token_s), 3) AS ttft_p95_s,
    round(quantileExact(0.99)(time_to_first_token_s), 3) AS ttft_p99_s,
    round(quantileExact(0.50)(time_to_first_visible_token_s), 3) AS ttfvt_p50_s,
    round(quantileExact(0.95)(time_to_first_visible_token_s), 3) AS ttfvt_p95_s,
    round(quantileExact(0.99)(time_to_first_visible_token_s), 3) AS ttfvt_p99_s
FROM llm_calls WHERE {window} AND stream = 1
GROUP BY model ORDER BY model
"""

_OUTLIERS = """
WITH per_class AS (
    SELECT task_class, quantileExact({quantile:Float64})(reasoning_tokens) AS class_quantile, count() AS class_calls
    FROM llm_calls WHERE {window} AND reasoning_tokens IS NOT NULL
    GROUP BY task_class
)
SELECT
    c.Timestamp AS timestamp, c.TraceId AS trace_id, c.SpanId AS span_id, c.model AS model,
    c.task_class AS task_class, c.tenant AS tenant, c.user AS user, c.feature AS feature,
    c.reasoning_tokens AS reasoning_tokens, per_class.class_quantile AS class_quantile,
    round(c.reasoning_tokens / per_class.class_quantile, 2) AS times_quantile,
    c.cost_usd AS cost_usd
FROM llm_calls AS c INNER JOIN per_class ON c.task_class = per_class.task_class
WHERE {window} AND per_class.class_quantile > 0
  AND c.reasoning_tokens > {k:Float64} * per_class.class_quantile
ORDER BY times_quantile DESC
LIMIT {limit:UInt32}
"""


# Budget actions by policy line. What a cut saves cannot be seen once a stream is cut (the rest was never
# generated), so it is estimated from the same line's observe-mode calls of the trailing 7 days, which
# ran to the end: their cost minus their running cost at the point of the cut (NULL without any). A
# refused call is estimated at the mean cost of its tenant's calls that went through in the window.
# (The joined figures are Nullable, so a line or tenant without any joins as NULL, not 0.)
_BUDGETS = """
WITH observed AS (
    SELECT budget_line, CAST(avg(cost_usd - budget_cut_cost_usd) AS Nullable(Float64)) AS saved_per_cut
    FROM llm_calls WHERE Timestamp >= now64(9) - toIntervalDay(7) AND budget_would_cut AND budget_cut_cost_usd IS NOT NULL
    GROUP BY budget_line
),
tenant_calls AS (
    SELECT tenant, CAST(avg(cost_usd) AS Nullable(Float64)) AS cost_per_call FROM llm_calls WHERE {window} AND NOT budget_rejected GROUP BY tenant
)
SELECT
    c.budget_line AS line,
    countIf(c.budget_cut) AS cuts,
    countIf(c.budget_would_cut) AS would_cut,
    countIf(c.budget_rejected) AS rejected,
    countIf(c.budget_would_reject) AS would_reject,
    sumIf(c.reasoning_tokens, c.budget_cut) AS reasoning_tokens_at_cuts,
    round(sumIf(c.cost_usd, c.budget_cut), 6) AS cost_of_cut_calls_usd,
    round(sumIf(c.cost_usd - c.budget_cut_cost_usd, c.budget_would_cut), 6) AS would_save_usd,
    round(
        if(cuts = 0, 0, cuts * any(observed.saved_per_cut)) + if(rejected = 0, 0, sumIf(tenant_calls.cost_per_call, c.budget_rejected)), 6
    ) AS est_saved_usd
FROM llm_calls AS c
LEFT JOIN observed ON c.budget_line = observed.budget_line
LEFT JOIN tenant_calls ON c.tenant = tenant_calls.tenant
WHERE {window} AND c.budget_line != ''
GROUP BY line ORDER BY cuts + rejected DESC, would_cut + would_reject DESC, line
"""

_INJECTED = """
SELECT countIf(notEmpty(budget_injected)) AS calls_with_injected_caps FROM llm_calls WHERE {window}
"""


def _rows(client: Any, sql: str, parameters: dict[str, Any]) -> list[dict[str, Any]]:
    result = client.query(sql.replace("{window}", WINDOW), parameters=parameters)
    return [dict(zip(result.column_names, row)) for row in result.result_rows]


def spend_report(client: Any, window_s: int) -> dict[str, Any]:
    """Totals, breakdowns by provider / model / feature / tenant / task class, and latency percentiles."""
    params = {"window_s": window_s}
    report: dict[str, Any] = {"window_s": window_s, "totals": _rows(client, _TOTALS, params)[0]}
    report["by"] = {column: _rows(client, _BY.replace("{column}", column), params) for column in GROUPINGS}
    report["latency"] = _rows(client, _LATENCY, params)
    report["answer_lost"] = _rows(client, _ANSWER_LOST, params)
    report["budgets"] = budget_report(client, window_s)
    return report


def budget_report(client: Any, window_s: int) -> dict[str, Any]:
    """Calls that had caps injected, and per policy line the cuts and refusals (and, in observe mode,
    what would have been) with what they cost and saved."""
    params = {"window_s": window_s}
    return {**_rows(client, _INJECTED, params)[0], "by_line": _rows(client, _BUDGETS, params)}


def outliers(client: Any, window_s: int, k: float = 2.0, quantile: float = 0.95, limit: int = 50) -> list[dict[str, Any]]:
    """Calls whose reasoning tokens exceed k x the quantile of their task class."""
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must be between 0 and 1, got {quantile}")
    params = {"window_s": window_s, "k": k, "quantile": quantile, "limit": limit}
    return _rows(client, _OUTLIERS, params)
