"""The six thinkmeter dashboards: spend and tokens, reasoning, latency, engines and GPUs, outliers, tasks."""

from __future__ import annotations

from thinkmeter.alerts.rules import AlertSettings
from thinkmeter.dashboards.model import (
    CustomVariable,
    Dashboard,
    Format,
    Panel,
    Query,
    QueryVariable,
    Row,
    Threshold,
)
from thinkmeter.dashboards.sql import (
    CALL_VARIABLES,
    CALLS_CAP_S,
    CALLS_WHERE,
    DAILY_BUCKET,
    RAW_BUCKET,
    RAW_RANGE,
    RAW_WHERE,
    ROLLUP_BUCKET,
    ROLLUP_RANGE,
    ROLLUP_WHERE,
    by_range,
    call_filters,
    daily,
    trace_link,
    variable_query,
)
from thinkmeter.schemas import semconv as sc
from thinkmeter.task_reports import (
    BUCKET_FIGURES,
    BUCKET_KEYS,
    BUDGET_BUCKET,
    BUDGETED,
    COST_PER_SOLVED,
    SOLVED_SCORE,
    TASK_FIGURES,
    TASK_KEYS,
    per_task_sql,
)

TABLE = Format.TABLE


def _unit(field: str, unit: str) -> dict[str, object]:
    return {"matcher": {"id": "byName", "options": field}, "properties": [{"id": "unit", "value": unit}]}


def _right_axis(field: str, unit: str) -> dict[str, object]:
    return {
        "matcher": {"id": "byRegexp", "options": f".*{field}.*"},
        "properties": [{"id": "unit", "value": unit}, {"id": "custom.axisPlacement", "value": "right"}],
    }


CALL_VARIABLE_LIST = tuple(QueryVariable(name, label, variable_query(column)) for name, label, column in CALL_VARIABLES)

# Columns summed by both branches, so ratios are taken after the branches are combined. Raw: a share
# counts the calls whose reasoning (or reasoning cost) is known. Rollup: it counts the hourly groups
# in which every call's reasoning (and cost) is known. Unknown never counts as 0.
_RAW_SUMS = """sum(cost_usd) AS spend, sum(reasoning_cost_usd) AS reasoning_spend,
    sum(reasoning_cost_usd) AS spend_share_num, sumIf(cost_usd, reasoning_cost_usd IS NOT NULL) AS spend_share_den,
    sum(reasoning_tokens) AS token_share_num, sumIf(output_tokens, reasoning_tokens IS NOT NULL) AS token_share_den"""
_ROLLUP_SUMS = """sum(cost_usd) AS spend, sum(reasoning_cost_usd) AS reasoning_spend,
    sumIf(reasoning_cost_usd, unknown_cost_calls = 0 AND unknown_reasoning_calls = 0) AS spend_share_num,
    sumIf(cost_usd, unknown_cost_calls = 0 AND unknown_reasoning_calls = 0) AS spend_share_den,
    sumIf(reasoning_tokens, unknown_reasoning_calls = 0 AND unknown_output_calls = 0) AS token_share_num,
    sumIf(output_tokens, unknown_reasoning_calls = 0 AND unknown_output_calls = 0) AS token_share_den"""
_SHARES = """sum(spend_share_num) / nullIf(sum(spend_share_den), 0) AS reasoning_share_of_spend,
    sum(token_share_num) / nullIf(sum(token_share_den), 0) AS reasoning_share_of_output"""
# Calls with usage but no price. The rollup counts calls without a cost and calls without output
# tokens; a call without output tokens has no cost either.
_RAW_UNPRICED = "countIf(cost_usd IS NULL AND output_tokens IS NOT NULL)"
_ROLLUP_UNPRICED = "sum(toUInt64(if(unknown_cost_calls > unknown_output_calls, unknown_cost_calls - unknown_output_calls, 0)))"
_Q = "(0.5, 0.9, 0.95, 0.99)"  # the levels of the rollups' quantile states: [1] p50, [3] p95, [4] p99
_EFFORT_TABLES = ("llm_calls_effort_daily", "llm_calls_effort_daily_by_level")


# ------------------------------------------------------------------------------------------------ spend


def _spend_totals() -> Query:
    raw = f"SELECT {_RAW_SUMS},\n    count() AS calls, {_RAW_UNPRICED} AS unpriced\nFROM llm_calls WHERE {RAW_WHERE}"
    rollup = f"SELECT {_ROLLUP_SUMS},\n    sum(calls) AS calls, {_ROLLUP_UNPRICED} AS unpriced\nFROM llm_calls_hourly WHERE {ROLLUP_WHERE}"
    outer = f"""sum(spend) AS spend_usd, sum(reasoning_spend) AS reasoning_spend_usd,
    {_SHARES},
    sum(calls) AS calls, sum(unpriced) AS unpriced_calls"""
    return Query(
        by_range(raw, rollup, outer),
        ("spend_usd", "reasoning_spend_usd", "reasoning_share_of_spend", "reasoning_share_of_output", "calls", "unpriced_calls"),
        TABLE,
        picks_rollup=True,
    )


def _spend_by_model_over_time() -> Query:
    raw = f"SELECT {RAW_BUCKET} AS time, model, sum(cost_usd) AS spend FROM llm_calls WHERE {RAW_WHERE} GROUP BY time, model"
    rollup = f"SELECT {ROLLUP_BUCKET} AS time, model, sum(cost_usd) AS spend FROM llm_calls_hourly WHERE {ROLLUP_WHERE} GROUP BY time, model"
    return Query(
        by_range(raw, rollup, "time, model, sum(spend) AS spend_usd", "GROUP BY time, model ORDER BY time"),
        ("time", "model", "spend_usd"),
        picks_rollup=True,
    )


def _spend_by(column: str) -> Query:
    raw = f"SELECT {column}, sum(cost_usd) AS spend, sum(reasoning_cost_usd) AS reasoning_spend FROM llm_calls WHERE {RAW_WHERE} GROUP BY {column}"
    rollup = (
        f"SELECT {column}, sum(cost_usd) AS spend, sum(reasoning_cost_usd) AS reasoning_spend "
        f"FROM llm_calls_hourly WHERE {ROLLUP_WHERE} GROUP BY {column}"
    )
    outer = f"if({column} = '', '(none)', {column}) AS {column}, sum(spend) AS spend_usd, sum(reasoning_spend) AS reasoning_spend_usd"
    return Query(
        by_range(raw, rollup, outer, f"GROUP BY {column} ORDER BY spend_usd DESC LIMIT 15"),
        (column, "spend_usd", "reasoning_spend_usd"),
        TABLE,
        picks_rollup=True,
    )


def _tokens_over_time() -> Query:
    sums = (
        "sum(input_tokens) AS input, sum(cache_read_tokens) AS cache_read, "
        "sum(visible_output_tokens) AS visible, sum(reasoning_tokens) AS reasoning"
    )
    raw = f"SELECT {RAW_BUCKET} AS time, {sums} FROM llm_calls WHERE {RAW_WHERE} GROUP BY time"
    rollup = f"SELECT {ROLLUP_BUCKET} AS time, {sums} FROM llm_calls_hourly WHERE {ROLLUP_WHERE} GROUP BY time"
    outer = (
        "time, sum(input) AS input_tokens, sum(cache_read) AS cache_read_tokens, "
        "sum(visible) AS visible_output_tokens, sum(reasoning) AS reasoning_tokens"
    )
    return Query(
        by_range(raw, rollup, outer, "GROUP BY time ORDER BY time"),
        ("time", "input_tokens", "cache_read_tokens", "visible_output_tokens", "reasoning_tokens"),
        picks_rollup=True,
    )


def _shares_over_time() -> Query:
    raw = f"SELECT {RAW_BUCKET} AS time, {_RAW_SUMS} FROM llm_calls WHERE {RAW_WHERE} GROUP BY time"
    rollup = f"SELECT {ROLLUP_BUCKET} AS time, {_ROLLUP_SUMS} FROM llm_calls_hourly WHERE {ROLLUP_WHERE} GROUP BY time"
    return Query(
        by_range(raw, rollup, f"time, {_SHARES}", "GROUP BY time ORDER BY time"),
        ("time", "reasoning_share_of_spend", "reasoning_share_of_output"),
        picks_rollup=True,
    )


def _unpriced_over_time() -> Query:
    raw = (
        f"SELECT {RAW_BUCKET} AS time, model, count() AS unpriced FROM llm_calls "
        f"WHERE {RAW_WHERE} AND cost_usd IS NULL AND output_tokens IS NOT NULL GROUP BY time, model"
    )
    rollup = (
        f"SELECT {ROLLUP_BUCKET} AS time, model, {_ROLLUP_UNPRICED} AS unpriced FROM llm_calls_hourly "
        f"WHERE {ROLLUP_WHERE} AND unknown_cost_calls > unknown_output_calls GROUP BY time, model"
    )
    return Query(
        by_range(raw, rollup, "time, model, sum(unpriced) AS unpriced_calls", "GROUP BY time, model ORDER BY time"),
        ("time", "model", "unpriced_calls"),
        picks_rollup=True,
    )


def _unpriced_models() -> Query:
    raw = (
        f"SELECT provider, model, {_RAW_UNPRICED} AS unpriced, sumIf(output_tokens, cost_usd IS NULL) AS output "
        f"FROM llm_calls WHERE {RAW_WHERE} GROUP BY provider, model"
    )
    rollup = (
        f"SELECT provider, model, {_ROLLUP_UNPRICED} AS unpriced, sumIf(output_tokens, unknown_cost_calls > 0) AS output "
        f"FROM llm_calls_hourly WHERE {ROLLUP_WHERE} GROUP BY provider, model"
    )
    outer = "provider, model, sum(unpriced) AS unpriced_calls, sum(output) AS output_tokens"
    return Query(
        by_range(raw, rollup, outer, "GROUP BY provider, model HAVING unpriced_calls > 0 ORDER BY unpriced_calls DESC"),
        ("provider", "model", "unpriced_calls", "output_tokens"),
        TABLE,
        picks_rollup=True,
    )


def _top_spenders() -> Query:
    raw = f"""SELECT tenant, user, count() AS calls, sum(cost_usd) AS spend, sum(reasoning_cost_usd) AS reasoning_spend,
    sum(reasoning_tokens) AS reasoning, sumIf(output_tokens, reasoning_tokens IS NOT NULL) AS known_output
FROM llm_calls WHERE {RAW_WHERE} GROUP BY tenant, user"""
    rollup = daily(
        """SELECT tenant, user, sum(calls) AS calls, sum(cost_usd) AS spend, sum(reasoning_cost_usd) AS reasoning_spend,
    sum(reasoning_tokens) AS reasoning, sum(reasoning_known_output_tokens) AS known_output""",
        " GROUP BY tenant, user",
        "llm_calls_users_daily",
        "llm_calls_users_daily_by_user",
    )
    outer = """tenant, user, sum(calls) AS calls, sum(spend) AS spend_usd, sum(reasoning_spend) AS reasoning_spend_usd,
    sum(reasoning) AS total_reasoning_tokens, sum(reasoning) / nullIf(sum(known_output), 0) AS reasoning_share_of_output"""
    return Query(
        by_range(raw, rollup, outer, "GROUP BY tenant, user ORDER BY spend_usd DESC LIMIT 20"),
        ("tenant", "user", "calls", "spend_usd", "reasoning_spend_usd", "total_reasoning_tokens", "reasoning_share_of_output"),
        TABLE,
        picks_rollup=True,
    )


_BUDGET_ACTIONS = """countIf(budget_cut) AS cuts, countIf(budget_rejected) AS rejected,
    countIf(budget_would_cut) AS would_cut, countIf(budget_would_reject) AS would_reject"""


def _budget_actions_over_time() -> Query:
    sql = f"""SELECT {RAW_BUCKET} AS time, {_BUDGET_ACTIONS}
FROM llm_calls WHERE {CALLS_WHERE} AND budget_line != ''
GROUP BY time ORDER BY time"""
    return Query(sql, ("time", "cuts", "rejected", "would_cut", "would_reject"))


def _budget_lines() -> Query:
    sql = f"""SELECT budget_line AS line, {_BUDGET_ACTIONS},
    sumIf(reasoning_tokens, budget_cut) AS reasoning_tokens_at_cuts,
    sumIf(cost_usd, budget_cut) AS cost_of_cut_calls_usd,
    sumIf(cost_usd - budget_cut_cost_usd, budget_would_cut) AS would_save_usd
FROM llm_calls WHERE {CALLS_WHERE} AND budget_line != ''
GROUP BY line ORDER BY cuts + rejected DESC, would_cut + would_reject DESC"""
    return Query(
        sql,
        ("line", "cuts", "rejected", "would_cut", "would_reject", "reasoning_tokens_at_cuts", "cost_of_cut_calls_usd", "would_save_usd"),
        TABLE,
    )


def spend_dashboard() -> Dashboard:
    usd, share = "currencyUSD", "percentunit"
    bars = [
        Panel(
            f"Spend by {label.lower()}",
            "barchart",
            (_spend_by(column),),
            description=f"Spend and the part of it paid for hidden reasoning, per {label.lower()}. Calls without a price are not counted here.",
            unit=usd,
            width=6,
            options={"xField": column},
        )
        for label, column in (("Model", "model"), ("Feature", "feature"), ("Tenant", "tenant"), ("Task class", "task_class"))
    ]
    return Dashboard(
        uid="thinkmeter-spend",
        title="thinkmeter / Spend and tokens",
        description="What LLM calls cost and how much of it is hidden reasoning. Ranges over 2 days read the hourly rollup.",
        variables=CALL_VARIABLE_LIST,
        items=(
            Panel(
                "Totals",
                "stat",
                (_spend_totals(),),
                description="Spend of calls with a known price; reasoning shares count only calls (or hourly groups) whose reasoning is known; unpriced calls have usage but no price.",
                width=24,
                height=4,
                overrides=(
                    _unit("spend_usd", usd),
                    _unit("reasoning_spend_usd", usd),
                    _unit("reasoning_share_of_spend", share),
                    _unit("reasoning_share_of_output", share),
                    _unit("calls", "short"),
                    _unit("unpriced_calls", "short"),
                ),
            ),
            Row("Over time"),
            Panel("Spend by model", "timeseries", (_spend_by_model_over_time(),), unit=usd, stacked=True),
            Panel(
                "Hidden reasoning share",
                "timeseries",
                (_shares_over_time(),),
                description="Reasoning tokens / output tokens, and reasoning cost / cost.",
                unit=share,
                field_defaults={"min": 0, "max": 1},
            ),
            Panel(
                "Tokens",
                "timeseries",
                (_tokens_over_time(),),
                description="Input tokens include cache reads; output = visible + reasoning.",
                unit="short",
            ),
            Panel(
                "Calls to models without a price",
                "timeseries",
                (_unpriced_over_time(),),
                description="Their spend is unknown, not 0: add the model to a price file.",
                unit="short",
                stacked=True,
            ),
            Row("Breakdowns"),
            *bars,
            Panel("Models without a price", "table", (_unpriced_models(),), width=12),
            Panel(
                "Top spenders",
                "table",
                (_top_spenders(),),
                description="Tenants and users by spend. Ranges over 2 days read the daily per-user rollup, from the start of the first day.",
                width=12,
                overrides=(_unit("spend_usd", usd), _unit("reasoning_spend_usd", usd), _unit("reasoning_share_of_output", share)),
            ),
            Row("Budgets"),
            Panel(
                "Budget actions",
                "timeseries",
                (_budget_actions_over_time(),),
                description="Streams cut off past a task-class cap and calls refused over a tenant window; would_*: the same in observe mode, where nothing is stopped.",
                unit="short",
                stacked=True,
            ),
            Panel(
                "Budget actions by policy line",
                "table",
                (_budget_lines(),),
                description="would_save_usd: what observe-mode calls cost past the point where they would have been cut (measured: they ran on). A cut stream's rest was never generated, so its saving is not in the store.",
                overrides=(_unit("cost_of_cut_calls_usd", usd), _unit("would_save_usd", usd)),
            ),
        ),
    )


# -------------------------------------------------------------------------------------------- reasoning


def _class_percentiles() -> Query:
    raw = f"""SELECT task_class, countIf(reasoning_tokens IS NOT NULL) AS known,
    quantilesTDigest{_Q}(reasoning_tokens) AS q, max(reasoning_tokens) AS top
FROM llm_calls WHERE {RAW_WHERE} GROUP BY task_class"""
    rollup = daily(
        f"""SELECT task_class, toUInt64(sum(calls) - sum(unknown_reasoning_calls)) AS known,
    quantilesTDigestMerge{_Q}(reasoning_tokens_q) AS q, NULL AS top""",
        " GROUP BY task_class",
    )
    outer = """if(task_class = '', '(none)', task_class) AS task_class, known AS calls_with_reasoning,
    round(q[1]) AS reasoning_p50, round(q[3]) AS reasoning_p95, round(q[4]) AS reasoning_p99, top AS reasoning_max"""
    return Query(
        by_range(raw, rollup, outer, "WHERE known > 0 ORDER BY reasoning_p95 DESC"),
        ("task_class", "calls_with_reasoning", "reasoning_p50", "reasoning_p95", "reasoning_p99", "reasoning_max"),
        TABLE,
        picks_rollup=True,
    )


def _class_p95_over_time() -> Query:
    raw = f"SELECT {RAW_BUCKET} AS time, task_class, quantileTDigest(0.95)(reasoning_tokens) AS p95 FROM llm_calls WHERE {RAW_WHERE} AND reasoning_tokens IS NOT NULL GROUP BY time, task_class"
    rollup = daily(
        f"SELECT {DAILY_BUCKET} AS time, task_class, quantilesTDigestMerge{_Q}(reasoning_tokens_q)[3] AS p95",
        " AND calls > unknown_reasoning_calls GROUP BY time, task_class",
    )
    return Query(
        by_range(raw, rollup, "time, task_class, round(p95) AS reasoning_p95", "ORDER BY time"),
        ("time", "task_class", "reasoning_p95"),
        picks_rollup=True,
    )


def _reasoning_heatmap() -> Query:
    # Buckets are powers of two; each bucket is named by its upper bound, as the heatmap reads it.
    raw = f"""SELECT {RAW_BUCKET} AS time, toUInt64(pow(2, ceil(log2(greatest(reasoning_tokens, 1))))) AS bucket, count() AS n
FROM llm_calls WHERE {RAW_WHERE} AND reasoning_tokens IS NOT NULL GROUP BY time, bucket"""
    per_day = daily(f"SELECT {DAILY_BUCKET} AS time, sumMap(reasoning_tokens_buckets) AS buckets", " GROUP BY time")
    rollup = f"""SELECT time, bucket, n FROM (
{per_day}
) ARRAY JOIN mapKeys(buckets) AS bucket, mapValues(buckets) AS n"""
    return Query(
        by_range(raw, rollup, "time, toString(bucket) AS le, sum(n) AS calls", "GROUP BY time, bucket ORDER BY time, bucket"),
        ("time", "le", "calls"),
        picks_rollup=True,
    )


def _effort_vs_reasoning() -> Query:
    raw = f"""SELECT reasoning_level, thinking_budget_tokens, count() AS calls,
    quantilesTDigest{_Q}(reasoning_tokens) AS reasoning_q, quantilesTDigest{_Q}(reasoning_tokens / thinking_budget_tokens) AS budget_q,
    countIf(has(finish_reasons, 'length')) AS stopped
FROM llm_calls WHERE {RAW_WHERE} GROUP BY reasoning_level, thinking_budget_tokens"""
    rollup = daily(
        f"""SELECT reasoning_level, thinking_budget_tokens, sum(calls) AS calls,
    quantilesTDigestMerge{_Q}(reasoning_tokens_q) AS reasoning_q, quantilesTDigestMerge{_Q}(budget_used_q) AS budget_q,
    sum(stopped_by_length) AS stopped""",
        " GROUP BY reasoning_level, thinking_budget_tokens",
        *_EFFORT_TABLES,
    )
    outer = """if(reasoning_level = '', '(not set)', reasoning_level) AS effort,
    ifNull(toString(thinking_budget_tokens), '(none)') AS thinking_budget,
    calls, round(reasoning_q[1]) AS reasoning_p50, round(reasoning_q[3]) AS reasoning_p95,
    budget_q[3] AS budget_used_p95, stopped / calls AS stopped_by_length"""
    return Query(
        by_range(raw, rollup, outer, "ORDER BY effort, thinking_budget"),
        ("effort", "thinking_budget", "calls", "reasoning_p50", "reasoning_p95", "budget_used_p95", "stopped_by_length"),
        TABLE,
        picks_rollup=True,
    )


def _effort_over_time() -> Query:
    raw = f"""SELECT {RAW_BUCKET} AS time, reasoning_level, quantileTDigest(0.95)(reasoning_tokens) AS p95
FROM llm_calls WHERE {RAW_WHERE} AND reasoning_tokens IS NOT NULL GROUP BY time, reasoning_level"""
    rollup = daily(
        f"SELECT {DAILY_BUCKET} AS time, reasoning_level, quantilesTDigestMerge{_Q}(reasoning_tokens_q)[3] AS p95",
        " AND calls > unknown_reasoning_calls GROUP BY time, reasoning_level",
        *_EFFORT_TABLES,
    )
    outer = "time, if(reasoning_level = '', '(not set)', reasoning_level) AS effort, round(p95) AS reasoning_p95"
    return Query(by_range(raw, rollup, outer, "ORDER BY time"), ("time", "effort", "reasoning_p95"), picks_rollup=True)


def _overthinking() -> Query:
    raw = f"""SELECT task_class, model, count() AS calls,
    quantilesTDigest{_Q}(reasoning_tokens) AS reasoning_q, quantilesTDigest{_Q}(visible_output_tokens) AS visible_q,
    sum(reasoning_tokens) AS reasoning, sum(visible_output_tokens) AS visible,
    sum(reasoning_cost_usd) AS reasoning_spend, sumIf(cost_usd, reasoning_cost_usd IS NOT NULL) AS spend
FROM llm_calls WHERE {RAW_WHERE} AND reasoning_tokens IS NOT NULL GROUP BY task_class, model"""
    rollup = daily(
        f"""SELECT task_class, model, toUInt64(sum(calls) - sum(unknown_reasoning_calls)) AS calls,
    quantilesTDigestMerge{_Q}(reasoning_tokens_q) AS reasoning_q, quantilesTDigestMerge{_Q}(visible_output_tokens_q) AS visible_q,
    sum(reasoning_tokens) AS reasoning, sum(reasoning_known_visible_tokens) AS visible,
    sum(reasoning_cost_usd) AS reasoning_spend, sum(reasoning_cost_known_cost_usd) AS spend""",
        " GROUP BY task_class, model",
    )
    outer = """task_class, model, calls, round(reasoning_q[1]) AS reasoning_p50, round(visible_q[1]) AS visible_p50,
    reasoning / nullIf(visible, 0) AS reasoning_per_visible_token, reasoning_spend / nullIf(spend, 0) AS reasoning_share_of_spend"""
    return Query(
        by_range(raw, rollup, outer, "WHERE calls > 0 ORDER BY reasoning_per_visible_token DESC LIMIT 30"),
        ("task_class", "model", "calls", "reasoning_p50", "visible_p50", "reasoning_per_visible_token", "reasoning_share_of_spend"),
        TABLE,
        picks_rollup=True,
    )


def _cost_tail() -> Query:
    raw = f"""SELECT task_class, countIf(cost_usd IS NOT NULL) AS priced, quantilesTDigest{_Q}(cost_usd) AS q
FROM llm_calls WHERE {RAW_WHERE} GROUP BY task_class"""
    rollup = daily(
        f"""SELECT task_class, toUInt64(sum(calls) - sum(unknown_cost_calls)) AS priced,
    quantilesTDigestMerge{_Q}(cost_usd_q) AS q""",
        " GROUP BY task_class",
    )
    outer = """if(task_class = '', '(none)', task_class) AS task_class, priced AS priced_calls,
    q[1] AS cost_p50_usd, q[3] AS cost_p95_usd, q[4] AS cost_p99_usd, q[4] / nullIf(q[1], 0) AS p99_over_p50"""
    return Query(
        by_range(raw, rollup, outer, "WHERE priced > 0 ORDER BY cost_p99_usd DESC"),
        ("task_class", "priced_calls", "cost_p50_usd", "cost_p95_usd", "cost_p99_usd", "p99_over_p50"),
        TABLE,
        picks_rollup=True,
    )


def _cost_p99_over_time() -> Query:
    raw = f"SELECT {RAW_BUCKET} AS time, task_class, quantileTDigest(0.99)(cost_usd) AS p99 FROM llm_calls WHERE {RAW_WHERE} AND cost_usd IS NOT NULL GROUP BY time, task_class"
    rollup = daily(
        f"SELECT {DAILY_BUCKET} AS time, task_class, quantilesTDigestMerge{_Q}(cost_usd_q)[4] AS p99",
        " AND calls > unknown_cost_calls GROUP BY time, task_class",
    )
    return Query(
        by_range(raw, rollup, "time, task_class, p99 AS cost_p99_usd", "ORDER BY time"),
        ("time", "task_class", "cost_p99_usd"),
        picks_rollup=True,
    )


def _answers_lost() -> Query:
    raw = f"""SELECT model, task_class, count() AS lost, sum(ifNull(cost_usd, 0)) AS cost
FROM llm_calls WHERE {RAW_WHERE} AND answer_lost = true GROUP BY model, task_class"""
    rollup = f"""SELECT model, task_class, sum(answer_lost_calls) AS lost, sum(answer_lost_cost_usd) AS cost
FROM llm_calls_hourly WHERE {ROLLUP_WHERE} GROUP BY model, task_class"""
    outer = "model, if(task_class = '', '(none)', task_class) AS task_class, sum(lost) AS answers_lost, sum(cost) AS cost_usd"
    return Query(
        by_range(raw, rollup, outer, "GROUP BY model, task_class HAVING answers_lost > 0 ORDER BY answers_lost DESC LIMIT 30"),
        ("model", "task_class", "answers_lost", "cost_usd"),
        TABLE,
        picks_rollup=True,
    )


def reasoning_dashboard() -> Dashboard:
    usd = "currencyUSD"
    return Dashboard(
        uid="thinkmeter-reasoning",
        title="thinkmeter / Reasoning",
        description="How many hidden reasoning tokens each kind of task takes, what was asked for, and where it overthinks. Ranges over 2 days read the daily rollups: percentiles and points per whole day.",
        variables=CALL_VARIABLE_LIST,
        items=(
            Panel(
                "Reasoning tokens per task class",
                "table",
                (_class_percentiles(),),
                description="Percentiles over calls whose reasoning is known (t-digest; the rollup keeps no maximum).",
                width=12,
            ),
            Panel("Reasoning tokens p95 by task class", "timeseries", (_class_p95_over_time(),), unit="short", width=12),
            Panel(
                "Reasoning tokens per call",
                "heatmap",
                (_reasoning_heatmap(),),
                description="Calls per power-of-two bucket of reasoning tokens (bucket named by its upper bound).",
                width=24,
                options={
                    "calculate": False,
                    "rowsFrame": {"layout": "le"},
                    "yAxis": {"axisPlacement": "left", "unit": "short", "axisLabel": "reasoning tokens"},
                    "color": {"mode": "scheme", "scheme": "Oranges", "exponent": 0.5, "steps": 64, "fill": "dark"},
                    "cellGap": 1,
                    "tooltip": {"mode": "single", "yHistogram": True},
                    "legend": {"show": True},
                },
                field_defaults={"displayName": "${__field.labels.le}"},
            ),
            Row("Asked vs used"),
            Panel(
                "Effort or budget asked vs reasoning used",
                "table",
                (_effort_vs_reasoning(),),
                description="Requested reasoning effort / thinking budget against the reasoning tokens spent; budget_used_p95 is reasoning / budget.",
                width=14,
                overrides=(_unit("budget_used_p95", "percentunit"), _unit("stopped_by_length", "percentunit")),
            ),
            Panel("Reasoning p95 by effort", "timeseries", (_effort_over_time(),), unit="short", width=10),
            Panel(
                "Answers lost to reasoning",
                "table",
                (_answers_lost(),),
                description="Calls that hit their output cap while still thinking (finish reason length / max_tokens "
                "and no visible output tokens): billed for reasoning, no answer. cost_usd counts priced calls only.",
                width=24,
                overrides=(_unit("cost_usd", usd),),
            ),
            Panel(
                "Overthinking signals",
                "table",
                (_overthinking(),),
                description="Classes with short visible answers but many reasoning tokens per visible token are overthinking: "
                "try a lower effort or a thinking budget for them.",
                width=24,
                overrides=(_unit("reasoning_share_of_spend", "percentunit"),),
            ),
            Row("Cost tail"),
            Panel("Cost per request tail by task class", "table", (_cost_tail(),), width=12,
                  overrides=tuple(_unit(f"cost_{q}_usd", usd) for q in ("p50", "p95", "p99"))),
            Panel("Cost per request p99 by task class", "timeseries", (_cost_p99_over_time(),), unit=usd, width=12),
        ),
    )


# ---------------------------------------------------------------------------------------------- latency


def _latency_table() -> Query:
    raw = f"""SELECT model, task_class, count() AS calls,
    quantilesTDigest{_Q}(time_to_first_token_s) AS ttft, quantilesTDigest{_Q}(time_to_first_visible_token_s) AS ttfvt,
    quantilesTDigest{_Q}(duration_s) AS total, quantilesTDigest{_Q}(time_to_first_visible_token_s - time_to_first_token_s) AS thinking
FROM llm_calls WHERE {RAW_WHERE} AND stream = 1 GROUP BY model, task_class"""
    rollup = daily(
        f"""SELECT model, task_class, sum(streamed_calls) AS calls,
    quantilesTDigestMerge{_Q}(ttft_s_q) AS ttft, quantilesTDigestMerge{_Q}(ttfvt_s_q) AS ttfvt,
    quantilesTDigestMerge{_Q}(streamed_duration_s_q) AS total, quantilesTDigestMerge{_Q}(thinking_s_q) AS thinking""",
        " GROUP BY model, task_class",
    )
    outer = """model, task_class, calls AS streamed_calls, ttft[1] AS ttft_p50_s, ttft[3] AS ttft_p95_s,
    ttfvt[1] AS ttfvt_p50_s, ttfvt[3] AS ttfvt_p95_s, total[3] AS total_p95_s, thinking[3] AS thinking_p95_s"""
    return Query(
        by_range(raw, rollup, outer, "WHERE calls > 0 ORDER BY ttfvt_p95_s DESC"),
        ("model", "task_class", "streamed_calls", "ttft_p50_s", "ttft_p95_s", "ttfvt_p50_s", "ttfvt_p95_s", "total_p95_s", "thinking_p95_s"),
        TABLE,
        picks_rollup=True,
    )


def _first_tokens_over_time() -> Query:
    raw = f"""SELECT {RAW_BUCKET} AS time, model,
    quantileTDigest(0.95)(time_to_first_token_s) AS ttft, quantileTDigest(0.95)(time_to_first_visible_token_s) AS ttfvt
FROM llm_calls WHERE {RAW_WHERE} AND stream = 1 GROUP BY time, model"""
    rollup = daily(
        f"""SELECT {DAILY_BUCKET} AS time, model,
    quantilesTDigestMerge{_Q}(ttft_s_q)[3] AS ttft, quantilesTDigestMerge{_Q}(ttfvt_s_q)[3] AS ttfvt""",
        " GROUP BY time, model",
    )
    return Query(
        by_range(raw, rollup, "time, model, ttft AS ttft_p95_s, ttfvt AS ttfvt_p95_s", "WHERE ttfvt > 0 ORDER BY time"),
        ("time", "model", "ttft_p95_s", "ttfvt_p95_s"),
        picks_rollup=True,
    )


def _ttfvt_by_class() -> Query:
    raw = f"""SELECT {RAW_BUCKET} AS time, task_class, quantileTDigest(0.95)(time_to_first_visible_token_s) AS ttfvt
FROM llm_calls WHERE {RAW_WHERE} AND time_to_first_visible_token_s IS NOT NULL GROUP BY time, task_class"""
    rollup = daily(
        f"""SELECT {DAILY_BUCKET} AS time, task_class, quantilesTDigestMerge{_Q}(ttfvt_s_q)[3] AS ttfvt""",
        " GROUP BY time, task_class",
    )
    return Query(
        by_range(raw, rollup, "time, task_class, ttfvt AS ttfvt_p95_s", "WHERE ttfvt > 0 ORDER BY time"),
        ("time", "task_class", "ttfvt_p95_s"),
        picks_rollup=True,
    )


def _total_by_model() -> Query:
    raw = f"SELECT {RAW_BUCKET} AS time, model, quantileTDigest(0.95)(duration_s) AS p95 FROM llm_calls WHERE {RAW_WHERE} GROUP BY time, model"
    rollup = daily(
        f"SELECT {DAILY_BUCKET} AS time, model, quantilesTDigestMerge{_Q}(duration_s_q)[3] AS p95",
        " GROUP BY time, model",
    )
    return Query(by_range(raw, rollup, "time, model, p95 AS total_p95_s", "ORDER BY time"), ("time", "model", "total_p95_s"), picks_rollup=True)


def _thinking_time() -> Query:
    raw = f"""SELECT {RAW_BUCKET} AS time, task_class, quantilesTDigest{_Q}(time_to_first_visible_token_s - time_to_first_token_s) AS q
FROM llm_calls WHERE {RAW_WHERE} AND time_to_first_token_s IS NOT NULL AND time_to_first_visible_token_s IS NOT NULL
GROUP BY time, task_class"""
    rollup = daily(
        f"""SELECT {DAILY_BUCKET} AS time, task_class, quantilesTDigestMerge{_Q}(thinking_s_q) AS q""",
        " GROUP BY time, task_class",
    )
    return Query(
        by_range(raw, rollup, "time, task_class, q[1] AS thinking_p50_s, q[3] AS thinking_p95_s", "WHERE NOT isNaN(q[3]) ORDER BY time"),
        ("time", "task_class", "thinking_p50_s", "thinking_p95_s"),
        picks_rollup=True,
    )


def _tokens_per_second() -> Query:
    raw = f"""SELECT {RAW_BUCKET} AS time, model,
    quantileTDigest(0.5)(1 / time_per_output_token_s) AS decode, quantileTDigest(0.5)(output_tokens / duration_s) AS end_to_end
FROM llm_calls WHERE {RAW_WHERE} AND time_per_output_token_s > 0 AND duration_s > 0
GROUP BY time, model"""
    rollup = daily(
        f"""SELECT {DAILY_BUCKET} AS time, model,
    quantilesTDigestMerge{_Q}(decode_tokens_per_s_q)[1] AS decode, quantilesTDigestMerge{_Q}(end_to_end_tokens_per_s_q)[1] AS end_to_end""",
        " GROUP BY time, model",
    )
    return Query(
        by_range(raw, rollup, "time, model, decode AS decode_tokens_per_s, end_to_end AS end_to_end_tokens_per_s",
                 "WHERE NOT isNaN(decode) ORDER BY time"),
        ("time", "model", "decode_tokens_per_s", "end_to_end_tokens_per_s"),
        picks_rollup=True,
    )


def latency_dashboard(settings: AlertSettings) -> Dashboard:
    slo = (Threshold(settings.ttfvt_slo_s),)
    return Dashboard(
        uid="thinkmeter-latency",
        title="thinkmeter / Latency",
        description="Time to first token vs time to first visible token (hidden reasoning sits in between) vs total. "
        "Ranges over 2 days read the daily rollup: percentiles and points per whole day. "
        f"The red line is the time-to-first-visible SLO of the alert rules ({settings.ttfvt_slo_s:g} s).",
        variables=CALL_VARIABLE_LIST,
        items=(
            Panel(
                "TTFT vs first visible vs total, by model and class",
                "table",
                (_latency_table(),),
                description="Streamed calls; thinking = first visible token - first token.",
                width=24,
                unit="s",
                overrides=(_unit("streamed_calls", "short"),),
            ),
            Panel("p95 time to first token and to first visible token", "timeseries", (_first_tokens_over_time(),), unit="s", thresholds=slo),
            Panel("p95 time to first visible token by task class", "timeseries", (_ttfvt_by_class(),), unit="s", thresholds=slo),
            Panel("p95 total duration by model", "timeseries", (_total_by_model(),), unit="s"),
            Panel("Thinking time by task class", "timeseries", (_thinking_time(),), unit="s",
                  description="First visible token - first token: how long the model thinks before it answers."),
            Panel(
                "Tokens per second by model",
                "timeseries",
                (_tokens_per_second(),),
                description="Median decode rate (1 / time per output token) and output tokens / total duration.",
                unit="short",
                width=24,
            ),
        ),
    )


# ------------------------------------------------------------------------------------- engines and GPUs

_SERVER = "concat(Attributes['server.address'], ':', Attributes['server.port'])"
_SERVER_FILTER = f"$__conditionalAll({_SERVER} IN (${{server:singlequote}}), $server)"
_GPU = "concat(ResourceAttributes['host.name'], '/', Attributes['hw.name'])"
_HOST_FILTER = "$__conditionalAll(ResourceAttributes['host.name'] IN (${host:singlequote}), $host)"


def _engine_gauges(names: dict[str, str]) -> Query:
    columns = ",\n    ".join(f"avgIf(Value, MetricName = '{metric}') AS {alias}" for alias, metric in names.items())
    metric_list = ", ".join(f"'{metric}'" for metric in names.values())
    sql = f"""SELECT $__timeInterval(TimeUnix) AS time, {_SERVER} AS server,
    {columns}
FROM otel_metrics_gauge WHERE $__timeFilter(TimeUnix) AND MetricName IN ({metric_list}) AND {_SERVER_FILTER}
GROUP BY time, server ORDER BY time"""
    return Query(sql, ("time", "server", *names))


def _preemptions() -> Query:
    sql = f"""SELECT $__timeInterval(TimeUnix) AS time, {_SERVER} AS server, sum(Value) AS preemptions
FROM otel_metrics_sum WHERE $__timeFilter(TimeUnix) AND MetricName = '{sc.METRIC_ENGINE_PREEMPTIONS}' AND {_SERVER_FILTER}
GROUP BY time, server ORDER BY time"""
    return Query(sql, ("time", "server", "preemptions"))


def _gpu_gauge(metric: str, alias: str) -> Query:
    sql = f"""SELECT $__timeInterval(TimeUnix) AS time, {_GPU} AS gpu, avg(Value) AS {alias}
FROM otel_metrics_gauge WHERE $__timeFilter(TimeUnix) AND MetricName = '{metric}' AND Attributes['hw.type'] = 'gpu' AND {_HOST_FILTER}
GROUP BY time, gpu ORDER BY time"""
    return Query(sql, ("time", "gpu", alias))


def _gpu_memory() -> Query:
    sql = f"""SELECT $__timeInterval(TimeUnix) AS time, {_GPU} AS gpu,
    avgIf(Value, MetricName = '{sc.METRIC_HW_GPU_MEMORY_USAGE}') AS memory_used_bytes,
    avgIf(Value, MetricName = '{sc.METRIC_HW_GPU_MEMORY_LIMIT}') AS memory_limit_bytes
FROM otel_metrics_sum
WHERE $__timeFilter(TimeUnix) AND MetricName IN ('{sc.METRIC_HW_GPU_MEMORY_USAGE}', '{sc.METRIC_HW_GPU_MEMORY_LIMIT}') AND NOT mapContains(Attributes, 'process.pid') AND {_HOST_FILTER}
GROUP BY time, gpu ORDER BY time"""
    return Query(sql, ("time", "gpu", "memory_used_bytes", "memory_limit_bytes"))


def _reasoning_vs_kv() -> Query:
    # The KV-cache usage a call started under is a span attribute (set while `thinkmeter collect` or
    # start_collectors() watches the engine), so this reads otel_traces.
    kv = f"toFloat64OrNull(SpanAttributes['{sc.ENGINE_KV_CACHE_USAGE}'])"
    reasoning = "toUInt64OrNull(SpanAttributes['gen_ai.usage.reasoning.output_tokens'])"
    sql = f"""SELECT concat(toString(toUInt8(floor(least({kv}, 0.999) * 10) * 10)), '%') AS kv_cache_usage_at_start,
    count() AS calls,
    round(quantileTDigest(0.5)({reasoning})) AS reasoning_p50,
    round(quantileTDigest(0.95)({reasoning})) AS reasoning_p95
FROM otel_traces
WHERE $__timeFilter(Timestamp) AND mapContains(SpanAttributes, '{sc.ENGINE_KV_CACHE_USAGE}')
  AND $__conditionalAll(ServiceName IN (${{service:singlequote}}), $service)
GROUP BY kv_cache_usage_at_start ORDER BY min({kv})"""
    return Query(sql, ("kv_cache_usage_at_start", "calls", "reasoning_p50", "reasoning_p95"), TABLE)


def engines_dashboard(settings: AlertSettings) -> Dashboard:
    # The alert rule's saturation level, drawn on the KV-cache usage axis.
    kv_saturation = {
        "matcher": {"id": "byRegexp", "options": ".*kv_cache_usage.*"},
        "properties": [
            {"id": "thresholds", "value": {"mode": "absolute", "steps": [
                {"color": "green", "value": None}, {"color": "red", "value": settings.kv_cache_saturation}]}},
            {"id": "custom.thresholdsStyle", "value": {"mode": "line"}},
        ],
    }
    return Dashboard(
        uid="thinkmeter-engines",
        title="thinkmeter / Engines and GPUs",
        description="Inference-engine and GPU state from `thinkmeter collect` (otel_metrics_* tables), next to the reasoning it serves.",
        variables=(
            QueryVariable(
                "server",
                "Engine",
                f"SELECT DISTINCT {_SERVER} FROM otel_metrics_gauge "
                f"WHERE $__timeFilter(TimeUnix) AND MetricName = '{sc.METRIC_ENGINE_UP}' ORDER BY 1",
            ),
            QueryVariable(
                "host",
                "GPU host",
                f"SELECT DISTINCT ResourceAttributes['host.name'] FROM otel_metrics_gauge "
                f"WHERE $__timeFilter(TimeUnix) AND MetricName = '{sc.METRIC_HW_GPU_UTILIZATION}' ORDER BY 1",
            ),
            CALL_VARIABLE_LIST[0],
        ),
        items=(
            Row("Engines"),
            Panel(
                "KV-cache usage vs running / waiting requests",
                "timeseries",
                (_engine_gauges({
                    "kv_cache_usage": sc.METRIC_ENGINE_KV_CACHE_USAGE,
                    "requests_running": sc.METRIC_ENGINE_REQUESTS_RUNNING,
                    "requests_waiting": sc.METRIC_ENGINE_REQUESTS_WAITING,
                }),),
                description="KV-cache usage (right axis) against the requests the engine runs and queues.",
                unit="short",
                width=24,
                overrides=(_right_axis("kv_cache_usage", "percentunit"), kv_saturation),
            ),
            Panel("Preemptions", "timeseries", (_preemptions(),), unit="short", stacked=True,
                  description="Requests the engine preempted (KV cache exhausted) per interval."),
            Panel(
                "Prefix-cache hits and generation rate",
                "timeseries",
                (_engine_gauges({
                    "prefix_cache_hit_rate": sc.METRIC_ENGINE_PREFIX_CACHE_HIT_RATE,
                    "generation_tokens_per_s": sc.METRIC_ENGINE_GENERATION_TOKENS_RATE,
                }),),
                unit="short",
                overrides=(_right_axis("prefix_cache_hit_rate", "percentunit"),),
            ),
            Panel(
                "Reasoning length against KV pressure",
                "barchart",
                (_reasoning_vs_kv(),),
                description="Reasoning tokens of calls by the engine's KV-cache usage when they started.",
                unit="short",
                width=24,
                options={"xField": "kv_cache_usage_at_start", "orientation": "vertical"},
            ),
            Row("GPUs"),
            Panel("GPU utilization", "timeseries", (_gpu_gauge(sc.METRIC_HW_GPU_UTILIZATION, "utilization"),), unit="percentunit", width=8,
                  field_defaults={"min": 0, "max": 1}),
            Panel("GPU memory used / limit", "timeseries", (_gpu_memory(),), unit="bytes", width=8),
            Panel("GPU power", "timeseries", (_gpu_gauge(sc.METRIC_HW_POWER, "power_watts"),), unit="watt", width=8),
        ),
    )


# --------------------------------------------------------------------------------------------- outliers

_K = "greatest(toFloat64OrZero(${k:singlequote}), 1)"
# The p95 of each task class over every call of the class in the range (no call filters): from
# llm_calls up to 2 days, from llm_calls_daily_by_class beyond. A call is an outlier above k x its class p95.
_CLASS_P95_RAW = """SELECT task_class, quantileTDigest(0.95)(reasoning_tokens) AS p95
    FROM llm_calls WHERE $__timeFilter(Timestamp) AND {raw_range} AND reasoning_tokens IS NOT NULL GROUP BY task_class"""
_CLASS_P95_DAILY = """SELECT task_class, quantilesTDigestMerge(0.5, 0.9, 0.95, 0.99)(reasoning_tokens_q)[3] AS p95
    FROM llm_calls_daily_by_class WHERE day >= toStartOfDay($__fromTime) AND day <= $__toTime AND {rollup_range}
      AND calls > unknown_reasoning_calls GROUP BY task_class"""
_CLASS_P95 = f"""WITH class_p95 AS (
    {_CLASS_P95_RAW.format(raw_range=RAW_RANGE)}
    UNION ALL
    {_CLASS_P95_DAILY.format(rollup_range=ROLLUP_RANGE)}
)"""
# Calls above k x the smallest class p95: a plain column bound, so the scan skips most rows before the join.
_OUTLIER_WHERE = f"""WHERE $__timeFilter(c.Timestamp) AND {call_filters('c.')} AND p.p95 > 0 AND c.reasoning_tokens > {_K} * p.p95
  AND c.reasoning_tokens > {_K} * (SELECT min(p95) FROM class_p95 WHERE p95 > 0)"""
_CAP = f"$__toTime - INTERVAL {CALLS_CAP_S} SECOND"


def _outlier_calls() -> Query:
    sql = f"""{_CLASS_P95}
SELECT c.Timestamp AS time, c.TraceId AS trace_id, c.ServiceName AS service, c.model AS model, c.task_class AS task_class,
    c.tenant AS tenant, c.user AS user, c.reasoning_tokens AS reasoning_tokens, round(p.p95) AS class_p95,
    round(c.reasoning_tokens / p.p95, 1) AS times_class_p95, c.cost_usd AS cost_usd, c.duration_s AS duration_s
FROM llm_calls AS c INNER JOIN class_p95 AS p ON c.task_class = p.task_class
{_OUTLIER_WHERE} AND c.Timestamp >= {_CAP}
ORDER BY times_class_p95 DESC LIMIT 200"""
    return Query(
        sql,
        ("time", "trace_id", "service", "model", "task_class", "tenant", "user", "reasoning_tokens", "class_p95",
         "times_class_p95", "cost_usd", "duration_s"),
        TABLE,
    )


def _outliers_over_time() -> Query:
    sql = f"""{_CLASS_P95}
SELECT $__timeInterval(c.Timestamp) AS time, c.task_class AS task_class, count() AS outlier_calls
FROM llm_calls AS c INNER JOIN class_p95 AS p ON c.task_class = p.task_class
{_OUTLIER_WHERE} AND c.Timestamp >= {_CAP}
GROUP BY time, task_class ORDER BY time"""
    return Query(sql, ("time", "task_class", "outlier_calls"))


def _costliest_calls() -> Query:
    sql = f"""SELECT Timestamp AS time, TraceId AS trace_id, ServiceName AS service, model, task_class, tenant, user,
    cost_usd, reasoning_cost_usd, reasoning_tokens, duration_s
FROM llm_calls WHERE {CALLS_WHERE} AND Timestamp >= {_CAP} AND cost_usd IS NOT NULL
ORDER BY cost_usd DESC LIMIT 50"""
    return Query(
        sql,
        ("time", "trace_id", "service", "model", "task_class", "tenant", "user", "cost_usd", "reasoning_cost_usd",
         "reasoning_tokens", "duration_s"),
        TABLE,
    )


def outliers_dashboard() -> Dashboard:
    link = {"matcher": {"id": "byName", "options": "trace_id"}, "properties": [{"id": "links", "value": [trace_link()]}]}
    usd = ("cost_usd", "reasoning_cost_usd")
    return Dashboard(
        uid="thinkmeter-outliers",
        title="thinkmeter / Outliers",
        description="Calls whose hidden reasoning runs far beyond their task class, with links into the trace view.",
        variables=(
            *CALL_VARIABLE_LIST,
            CustomVariable("k", "k x p95", ("1.5", "2", "3", "5", "10"), "2",
                           "A call is an outlier above k x the p95 reasoning tokens of its task class in the range."),
        ),
        items=(
            Panel(
                "Calls above k x p95 reasoning tokens of their class",
                "table",
                (_outlier_calls(),),
                description="The class p95 is taken over every call of the class in the range (whole days beyond 2 days); the table lists the outliers of the last 24 h of the range at most. Click a trace id to open the trace.",
                width=24,
                height=10,
                overrides=(link, *(_unit(field, "currencyUSD") for field in usd), _unit("duration_s", "s")),
            ),
            Panel("Outliers per task class", "timeseries", (_outliers_over_time(),), unit="short", stacked=True, width=12,
                  description="Outliers of the last 24 h of the range at most, per interval."),
            Panel(
                "Most expensive calls",
                "table",
                (_costliest_calls(),),
                description="The 50 most expensive calls of the last 24 h of the range at most.",
                width=12,
                overrides=(link, *(_unit(field, "currencyUSD") for field in usd), _unit("duration_s", "s")),
            ),
        ),
    )


# ------------------------------------------------------------------------------------------------ tasks

# Task spans carry no model, provider, feature or tenant: they count only while those variables are All.
_SPANS_WHERE = (
    f"$__timeFilter(Timestamp) AND {call_filters(skip=('model', 'provider', 'feature', 'tenant'))} AND "
    + " AND ".join(f"$__conditionalAll(0, ${name})" for name in ("model", "provider", "feature", "tenant"))
)
_GRADED = f"WITH {per_task_sql(CALLS_WHERE, _SPANS_WHERE, repr(SOLVED_SCORE))}"


def _tasks_by_class() -> Query:
    return Query(
        f"{_GRADED}\nSELECT {TASK_FIGURES}\nFROM graded GROUP BY task_class ORDER BY task_class",
        TASK_KEYS,
        TABLE,
    )


def _cost_per_solved_over_time() -> Query:
    sql = f"""{_GRADED}
SELECT $__timeInterval(started) AS time, task_class, {COST_PER_SOLVED} AS cost_per_solved_usd
FROM graded WHERE has_outcome GROUP BY time, task_class HAVING cost_per_solved_usd IS NOT NULL ORDER BY time"""
    return Query(sql, ("time", "task_class", "cost_per_solved_usd"))


def _accuracy_by_budget() -> Query:
    sql = f"""{_GRADED}
SELECT concat(task_class, ' @ ', toString({BUDGET_BUCKET})) AS budget, {BUCKET_FIGURES}
FROM graded WHERE {BUDGETED}
GROUP BY task_class, {BUDGET_BUCKET} ORDER BY task_class, {BUDGET_BUCKET}"""
    return Query(sql, ("budget", *BUCKET_KEYS[1:]), TABLE)


def _accuracy_by_width() -> Query:
    sql = f"""{_GRADED}
SELECT concat(task_class, ' x', toString(calls)) AS width, {BUCKET_FIGURES}
FROM graded WHERE has_outcome
GROUP BY task_class, calls ORDER BY task_class, calls"""
    return Query(sql, ("width", *BUCKET_KEYS[1:]), TABLE)


def tasks_dashboard() -> Dashboard:
    usd = "currencyUSD"
    bar_overrides = (_unit("accuracy", "percentunit"), _right_axis("cost_per_solved_usd", usd), _unit("wall_p95_s", "s"))
    bar_options = {"xTickLabelRotation": -45, "xTickLabelSpacing": 0}
    return Dashboard(
        uid="thinkmeter-tasks",
        title="thinkmeter / Tasks",
        description="What a solved task costs, and which reasoning budget gives the best accuracy, per task class "
        "(`thinkmeter.task(...)` and recorded outcomes). Accuracy and cost per solved task count graded tasks only.",
        variables=CALL_VARIABLE_LIST,
        items=(
            Panel(
                "Tasks by class",
                "table",
                (_tasks_by_class(),),
                description="Cost per solved task = what the graded tasks cost / how many were solved. Tasks with a call "
                "to an unpriced model are left out of cost figures.",
                width=24,
                overrides=(
                    _unit("accuracy", "percentunit"),
                    *(_unit(f, usd) for f in ("cost_usd", "cost_per_task_usd", "cost_per_solved_usd")),
                    _unit("wall_p95_s", "s"),
                ),
            ),
            Panel(
                "Cost per solved task",
                "timeseries",
                (_cost_per_solved_over_time(),),
                description="Per class, by the interval the task started in.",
                unit=usd,
                width=24,
            ),
            Panel(
                "Accuracy by reasoning budget",
                "barchart",
                (_accuracy_by_budget(),),
                description="Graded tasks by the thinking budget (else output cap) they asked for, or the reasoning they "
                "used rounded up to a power of two: accuracy rises, then falls. `thinkmeter budget-curve --slo-p95-s S` "
                "recommends one.",
                options={"xField": "budget", **bar_options},
                overrides=bar_overrides,
            ),
            Panel(
                "Best-of-N width vs accuracy",
                "barchart",
                (_accuracy_by_width(),),
                description="Graded tasks by how many calls they made (samples, votes, verifier steps).",
                options={"xField": "width", **bar_options},
                overrides=bar_overrides,
            ),
        ),
    )


def dashboards(settings: AlertSettings | None = None) -> list[Dashboard]:
    settings = settings or AlertSettings()
    return [
        spend_dashboard(),
        reasoning_dashboard(),
        latency_dashboard(settings),
        engines_dashboard(settings),
        outliers_dashboard(),
        tasks_dashboard(),
    ]
