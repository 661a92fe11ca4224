"""Cost per solved task and accuracy against reasoning budget: queries over llm_calls, task_spans and
task_outcomes, joined by task id at query time. The CLI (`thinkmeter tasks`, `thinkmeter budget-curve`)
and the Tasks dashboard read these figures.

Definitions (every figure is per task class):
- A task is every call and task span with its id in the window, from any process. Its wall time runs
  from the first start to the last end among them.
- Its outcome is the latest `correct` and the latest `score` recorded for the id, at any time. It is
  solved when `correct` is true, or, with only a score, when the score is at least `solved_score`.
- Its cost is the sum of its calls' costs, unknown (and left out of cost figures) when any call has
  usage but no price; a call that failed before any usage costs nothing. Reasoning likewise.
- Cost per solved task: what the tasks with an outcome cost, divided by how many of them were solved.
- Budget: the largest thinking budget (else output cap) its calls asked for; without one, the largest
  reasoning one call used, rounded up to a power of two.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from thinkmeter.config import Settings

SOLVED_SCORE = 0.5
TASK_KEYS = (
    "task_class", "tasks", "with_outcome", "solved", "accuracy", "cost_usd", "cost_per_task_usd",
    "cost_per_solved_usd", "calls_per_task", "reasoning_tokens_per_task", "wall_p95_s",
)  # fmt: skip
BUCKET_KEYS = ("budget_max_tokens", "tasks", "accuracy", "cost_per_solved_usd", "wall_p95_s")


def per_task_sql(calls_where: str, spans_where: str, solved_score: str) -> str:
    """The WITH clauses ending in `graded`: one row per task (task_id, task_class, service, started, calls,
    cost, reasoning, budget_requested, reasoning_max, wall_s, has_outcome, is_solved). `calls_where` filters
    llm_calls rows, `spans_where` task_spans rows; `solved_score` is an SQL expression."""
    return f"""task_rows AS (
    SELECT task_id, task_class, ServiceName, toUInt8(0) AS is_task_span, toUInt32(1) AS is_call,
        toUnixTimestamp64Nano(Timestamp) AS start_ns, start_ns + toInt64(round(duration_s * 1e9)) AS end_ns,
        cost_usd, toUInt32(cost_usd IS NULL AND output_tokens IS NOT NULL) AS unpriced,
        reasoning_tokens, toUInt32(reasoning_tokens IS NULL AND output_tokens IS NOT NULL) AS reasoning_unknown,
        CAST(coalesce(thinking_budget_tokens, max_tokens), 'Nullable(UInt64)') AS budget
    FROM llm_calls WHERE task_id != '' AND {calls_where}
    UNION ALL
    SELECT task_id, task_class, ServiceName, toUInt8(1), toUInt32(0),
        toUnixTimestamp64Nano(Timestamp), toUnixTimestamp64Nano(Timestamp) + toInt64(round(duration_s * 1e9)),
        CAST(NULL, 'Nullable(Float64)'), toUInt32(0), CAST(NULL, 'Nullable(UInt64)'), toUInt32(0), CAST(NULL, 'Nullable(UInt64)')
    FROM task_spans WHERE {spans_where}
),
per_task AS (
    SELECT task_id,
        argMax(task_class, (is_task_span, task_class != '')) AS task_class,
        argMax(ServiceName, is_task_span) AS service,
        fromUnixTimestamp64Nano(min(start_ns)) AS started,
        sum(is_call) AS calls,
        if(sum(unpriced) = 0, ifNull(sum(cost_usd), 0), NULL) AS cost,
        if(sum(reasoning_unknown) = 0, ifNull(sum(reasoning_tokens), 0), NULL) AS reasoning,
        max(budget) AS budget_requested,
        max(reasoning_tokens) AS reasoning_max,
        (max(end_ns) - min(start_ns)) / 1e9 AS wall_s
    FROM task_rows GROUP BY task_id
),
outcomes AS (
    SELECT task_id,
        argMaxIf(correct, Timestamp, correct IS NOT NULL) AS correct,
        argMaxIf(score, Timestamp, score IS NOT NULL) AS score
    FROM task_outcomes WHERE task_id IN (SELECT task_id FROM per_task)
    GROUP BY task_id
),
graded AS (
    SELECT t.*, o.task_id != '' AS has_outcome,
        has_outcome AND if(o.correct IS NOT NULL, o.correct = 1, o.score >= {solved_score}) AS is_solved
    FROM per_task AS t LEFT JOIN outcomes AS o ON t.task_id = o.task_id
)"""


# Figures over the rows of `graded`, for a GROUP BY (the class, a budget bucket, a time bucket).
ACCURACY = "countIf(is_solved) / nullIf(countIf(has_outcome), 0)"
COST_PER_SOLVED = "sumIf(cost, has_outcome AND cost IS NOT NULL) / nullIf(countIf(is_solved AND cost IS NOT NULL), 0)"
BUDGET_BUCKET = "toUInt64(if(budget_requested IS NOT NULL, budget_requested, pow(2, ceil(log2(greatest(reasoning_max, 1))))))"
BUDGETED = "has_outcome AND (budget_requested IS NOT NULL OR reasoning_max IS NOT NULL)"

TASK_FIGURES = f"""task_class,
    count() AS tasks,
    countIf(has_outcome) AS with_outcome,
    countIf(is_solved) AS solved,
    {ACCURACY} AS accuracy,
    if(countIf(cost IS NOT NULL) > 0, sumIf(cost, cost IS NOT NULL), NULL) AS cost_usd,
    sumIf(cost, cost IS NOT NULL) / nullIf(countIf(cost IS NOT NULL), 0) AS cost_per_task_usd,
    {COST_PER_SOLVED} AS cost_per_solved_usd,
    sum(calls) / tasks AS calls_per_task,
    sumIf(reasoning, reasoning IS NOT NULL) / nullIf(countIf(reasoning IS NOT NULL), 0) AS reasoning_tokens_per_task,
    quantileExact(0.95)(wall_s) AS wall_p95_s"""
BUCKET_FIGURES = f"""count() AS tasks,
    {ACCURACY} AS accuracy,
    {COST_PER_SOLVED} AS cost_per_solved_usd,
    quantileExact(0.95)(wall_s) AS wall_p95_s"""

_WINDOW = "Timestamp >= now64(9) - toIntervalSecond({window_s:UInt64})"
_PER_TASK = per_task_sql(_WINDOW, _WINDOW, "{solved_score:Float64}")
_TASKS = f"WITH {_PER_TASK}\nSELECT {TASK_FIGURES}\nFROM graded GROUP BY task_class ORDER BY task_class"
_BUDGET_CURVE = f"""WITH {_PER_TASK}
SELECT task_class, {BUDGET_BUCKET} AS budget_max_tokens, {BUCKET_FIGURES}
FROM graded
WHERE {BUDGETED} AND ({{task_class:String}} = '' OR task_class = {{task_class:String}})
GROUP BY task_class, budget_max_tokens
ORDER BY task_class, budget_max_tokens"""


def tasks_report(settings: Settings, window_s: int, solved_score: float = SOLVED_SCORE) -> list[dict[str, Any]]:
    """One row per task class with exactly TASK_KEYS."""
    from thinkmeter.store import query_rows

    rows = query_rows(settings, _TASKS, {"window_s": window_s, "solved_score": solved_score})
    return [{key: row[key] for key in TASK_KEYS} for row in rows]


def budget_curve(
    settings: Settings,
    window_s: int,
    task_class: str | None = None,
    slo_p95_s: float | None = None,
    solved_score: float = SOLVED_SCORE,
) -> dict[str, dict[str, Any]]:
    """{task_class: {"buckets": [...], "recommended": {...} or None}} over the tasks with an outcome."""
    from thinkmeter.store import query_rows

    parameters = {"window_s": window_s, "solved_score": solved_score, "task_class": task_class or ""}
    rows = query_rows(settings, _BUDGET_CURVE, parameters)
    curves: dict[str, dict[str, Any]] = {}
    for row in rows:
        curve = curves.setdefault(row["task_class"], {"buckets": [], "recommended": None})
        curve["buckets"].append({key: row[key] for key in BUCKET_KEYS})
    for curve in curves.values():
        curve["recommended"] = recommend(curve["buckets"], slo_p95_s)
    return curves


def recommend(buckets: list[dict[str, Any]], slo_p95_s: float | None) -> dict[str, Any] | None:
    """The best accuracy among the buckets whose p95 wall time meets the SLO; ties go to the lower cost
    per solved task (unknown counts as the highest), then to the smaller budget. None if none meets it."""
    eligible = [b for b in buckets if slo_p95_s is None or b["wall_p95_s"] <= slo_p95_s]
    if not eligible:
        return None

    def rank(bucket: dict[str, Any]) -> tuple[float, float, int]:
        cost = bucket["cost_per_solved_usd"]
        return (-bucket["accuracy"], float("inf") if cost is None else cost, bucket["budget_max_tokens"])

    best = min(eligible, key=rank)
    return {key: best[key] for key in ("budget_max_tokens", "accuracy", "cost_per_solved_usd")}
