"""The alert rules, defined once: Grafana-managed rules are rendered from them (alerts/grafana.py) and the
built-in evaluator runs the same SQL (alerts/evaluator.py).

Every rule is one table-format ClickHouse query with a numeric `value` column and string label columns,
one row per alert instance, and fires where `value > threshold`. Grafana alerting turns such a table
into one series per row (labels from the string columns); the evaluator does the same. Queries use only
the datasource's backend macros ($__timeFilter, $__fromTime, $__toTime), which Grafana expands
server-side for alert rules, over the rule's window (`relativeTimeRange`, from = window_s, to = 0).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from thinkmeter.schemas import semconv as sc
from thinkmeter.schemas.ddl import quote_string
from thinkmeter.task_reports import SOLVED_SCORE, per_task_sql


class Quota(BaseModel):
    """A daily quota; a limit left out falls back to the default for its kind."""

    model_config = ConfigDict(extra="forbid")

    reasoning_tokens: float | None = Field(None, gt=0)
    spend_usd: float | None = Field(None, gt=0)


class AlertSettings(BaseModel):
    """Thresholds of the rules. Load from a YAML or JSON file with `AlertSettings.load(path)`."""

    model_config = ConfigDict(extra="forbid")

    # A single call above runaway_k x the p95 reasoning tokens of its task class over the trailing day
    # (classes with fewer than runaway_min_class_calls calls that day have no baseline yet).
    runaway_k: float = Field(2.0, gt=1)
    runaway_min_class_calls: int = Field(20, ge=1)
    # Daily quotas (UTC days), with per-tenant and per-user overrides.
    tenant_daily_reasoning_tokens: float = Field(50_000_000, gt=0)
    tenant_daily_spend_usd: float = Field(500.0, gt=0)
    user_daily_reasoning_tokens: float = Field(5_000_000, gt=0)
    user_daily_spend_usd: float = Field(50.0, gt=0)
    tenant_quotas: dict[str, Quota] = Field(default_factory=dict)
    user_quotas: dict[str, Quota] = Field(default_factory=dict)
    # Spend in the last hour against the hourly average of the 24 hours before it; a service with
    # less history is compared with spend_spike_min_usd_per_hour.
    spend_spike_factor: float = Field(3.0, gt=1)
    spend_spike_min_usd_per_hour: float = Field(1.0, gt=0)
    # p95 time to first visible token over 10 minutes, per service, model and task class.
    ttfvt_slo_s: float = Field(10.0, gt=0)
    ttfvt_slo_by_class: dict[str, float] = Field(default_factory=dict)
    ttfvt_min_calls: int = Field(5, ge=1)
    # Cost per solved task of a class over the last day against the 7 days before; both periods need
    # this many solved tasks (with a known cost) before the class is compared.
    cost_per_solved_k: float = Field(2.0, gt=1)
    cost_per_solved_min_solved: int = Field(5, ge=1)
    # Engines and GPUs over 5 minutes.
    # Calls cut off or refused by the budget policy (thinkmeter/budgets) in an hour, per policy line;
    # in observe mode the calls that would have been.
    budget_actions_per_hour: float = Field(0.0, ge=0)
    kv_cache_saturation: float = Field(0.9, gt=0, le=1)
    gpu_memory_pressure: float = Field(0.95, gt=0, le=1)
    # Calls per hour, per service, model and task class, that hit the output cap with no visible answer
    # (0: the first one fires).
    answer_lost_calls_per_hour: float = Field(0.0, ge=0)

    @classmethod
    def load(cls, path: Path) -> AlertSettings:
        """From YAML (.yaml/.yml, needs PyYAML) or JSON: a mapping of the fields above."""
        text = path.read_text(encoding="utf-8")
        if path.suffix in (".yaml", ".yml"):
            import yaml

            values = yaml.safe_load(text) or {}
        else:
            values = json.loads(text)
        try:
            return cls.model_validate(values)
        except ValidationError as error:
            raise ValueError(f"alert settings in {path}: {error}") from None


@dataclass(frozen=True)
class Rule:
    uid: str  # at most 40 characters (Grafana's limit for alert rule uids)
    title: str
    group: str
    sql: str
    labels: tuple[str, ...]  # the label columns the query returns, in order (then `value`)
    threshold: float
    window_s: int
    severity: str
    # Texts with {label} and {value} / {value:percent} placeholders, rendered for Grafana as Go
    # templates and by the evaluator in Python.
    summary: str
    description: str


GROUP_INTERVALS_S = {
    "thinkmeter-usage": 60, "thinkmeter-quotas": 300, "thinkmeter-latency": 60, "thinkmeter-engines": 60, "thinkmeter-tasks": 300,
}  # fmt: skip


def _float(value: float) -> str:
    return repr(float(value))


def _per_name(column: str, overrides: dict[str, float], default: float) -> str:
    """A per-name limit in SQL: transform() over the overrides, else the default."""
    if not overrides:
        return _float(default)
    names = ", ".join(map(quote_string, overrides))
    values = ", ".join(_float(v) for v in overrides.values())
    return f"transform({column}, [{names}], [{values}], {_float(default)})"


def _quota(settings: AlertSettings, kind: str, scope: str) -> str:
    quotas = settings.tenant_quotas if scope == "tenant" else settings.user_quotas
    default = getattr(settings, f"{scope}_daily_{kind}")
    overrides = {name: getattr(q, kind) for name, q in quotas.items() if getattr(q, kind) is not None}
    return _per_name(scope, overrides, default)


def _runaway(s: AlertSettings) -> Rule:
    sql = f"""WITH class_p95 AS (
    SELECT task_class,
           quantilesTDigestMerge(0.5, 0.9, 0.95, 0.99)(reasoning_tokens_q)[3] AS p95,
           sum(calls) - sum(unknown_reasoning_calls) AS class_calls
    FROM llm_calls_hourly
    WHERE hour >= toStartOfHour($__toTime - INTERVAL 1 DAY) AND hour <= $__toTime
    GROUP BY task_class
    HAVING class_calls >= {s.runaway_min_class_calls}
)
SELECT c.ServiceName AS service, c.task_class AS task_class, c.model AS model, c.tenant AS tenant,
       c.user AS user, c.TraceId AS trace_id, c.SpanId AS span_id,
       c.reasoning_tokens / p.p95 AS value
FROM llm_calls AS c INNER JOIN class_p95 AS p ON c.task_class = p.task_class
WHERE $__timeFilter(c.Timestamp) AND p.p95 > 0 AND c.reasoning_tokens > {_float(s.runaway_k)} * p.p95
ORDER BY value DESC
LIMIT 100"""
    return Rule(
        uid="thinkmeter-runaway-reasoning",
        title="Runaway reasoning: a call far above its task class",
        group="thinkmeter-usage",
        sql=sql,
        labels=("service", "task_class", "model", "tenant", "user", "trace_id", "span_id"),
        threshold=s.runaway_k,
        window_s=600,
        severity="warning",
        summary="A {model} call of {tenant}/{user} reasoned {value}x the p95 of task class {task_class}",
        description="Trace {trace_id} (service {service}) spent more hidden reasoning tokens than "
        f"{s.runaway_k:g} x the p95 of its task class over the last day. Open the trace from the "
        "Outliers dashboard; a lower effort, a thinking budget or max_tokens caps such calls.",
    )


def _quota_rule(s: AlertSettings, scope: str, kind: str) -> Rule:
    usage = {"reasoning_tokens": "sum(reasoning_tokens)", "spend_usd": "sum(cost_usd)"}[kind]
    if scope == "tenant":  # the hourly rollup has the tenant
        sql = f"""SELECT tenant, {usage} / {_quota(s, kind, 'tenant')} AS value
FROM llm_calls_hourly
WHERE hour >= toStartOfDay($__toTime) AND hour <= $__toTime AND tenant != ''
GROUP BY tenant"""
        labels: tuple[str, ...] = ("tenant",)
        who = "Tenant {tenant}"
    else:
        # the daily user rollup: its day bucket is exactly "since 00:00 UTC"
        sql = f"""SELECT tenant, user, {usage} / {_quota(s, kind, 'user')} AS value
FROM llm_calls_users_daily
WHERE day = toStartOfDay($__toTime) AND user != ''
GROUP BY tenant, user"""
        labels = ("tenant", "user")
        who = "User {user} of tenant {tenant}"
    what = {"reasoning_tokens": "reasoning-token", "spend_usd": "spend"}[kind]
    return Rule(
        uid=f"thinkmeter-{scope}-{kind.split('_')[0]}-quota",
        title=f"{scope.capitalize()} over the daily {what} quota",
        group="thinkmeter-quotas",
        sql=sql,
        labels=labels,
        threshold=1.0,
        window_s=86_400,
        severity="critical",
        summary=f"{who} has used {{value:percent}} of its daily {what} quota",
        description=f"Usage since 00:00 UTC divided by the {scope}'s daily {what} quota "
        f"({scope}_daily_{kind} or {scope}_quotas in the alert settings). "
        + ("Spend counts calls with a known price only." if kind == "spend_usd" else ""),
    )


def _spend_spike(s: AlertSettings) -> Rule:
    sql = f"""SELECT recent.service AS service,
       recent.usd_per_hour / greatest(baseline.usd_per_hour, {_float(s.spend_spike_min_usd_per_hour)}) AS value
FROM (
    SELECT ServiceName AS service, sum(cost_usd) * 3600 / ($__toTime - $__fromTime) AS usd_per_hour
    FROM llm_calls WHERE $__timeFilter(Timestamp)
    GROUP BY service
) AS recent
LEFT JOIN (
    SELECT ServiceName AS service, sum(cost_usd) / 24 AS usd_per_hour
    FROM llm_calls_hourly
    WHERE hour >= toStartOfHour($__fromTime) - INTERVAL 24 HOUR AND hour < toStartOfHour($__fromTime)
    GROUP BY service
) AS baseline ON recent.service = baseline.service"""
    return Rule(
        uid="thinkmeter-spend-spike",
        title="Spend rate spike against the trailing day",
        group="thinkmeter-usage",
        sql=sql,
        labels=("service",),
        threshold=s.spend_spike_factor,
        window_s=3600,
        severity="warning",
        summary="Spend of {service} in the last hour is {value}x its hourly average of the day before",
        description=f"Fires above {s.spend_spike_factor:g}x; with under "
        f"${s.spend_spike_min_usd_per_hour:g}/h of history the comparison uses that floor.",
    )


def _ttfvt_slo(s: AlertSettings) -> Rule:
    slo = _per_name("task_class", s.ttfvt_slo_by_class, s.ttfvt_slo_s)
    sql = f"""SELECT ServiceName AS service, model, task_class,
       quantileTDigest(0.95)(time_to_first_visible_token_s) / {slo} AS value
FROM llm_calls
WHERE $__timeFilter(Timestamp) AND time_to_first_visible_token_s IS NOT NULL
GROUP BY service, model, task_class
HAVING count() >= {s.ttfvt_min_calls}"""
    return Rule(
        uid="thinkmeter-ttfvt-slo",
        title="Time to first visible token over its SLO",
        group="thinkmeter-latency",
        sql=sql,
        labels=("service", "model", "task_class"),
        threshold=1.0,
        window_s=600,
        severity="warning",
        summary="p95 time to first visible token of {model} on {task_class} ({service}) is {value:percent} of its SLO",
        description=f"SLO {s.ttfvt_slo_s:g} s unless ttfvt_slo_by_class sets one for the class; hidden "
        "reasoning happens before the first visible token, so reasoning growth shows here first.",
    )


def _cost_per_solved(s: AlertSettings) -> Rule:
    period = "$__timeFilter(Timestamp) OR (Timestamp >= $__fromTime - INTERVAL 7 DAY AND Timestamp < $__fromTime)"
    recent, before = "started >= $__fromTime", "started < $__fromTime"
    solved = "is_solved AND cost IS NOT NULL"
    per_solved = "sumIf(cost, has_outcome AND cost IS NOT NULL AND {when}) / countIf({solved} AND {when})"
    sql = f"""WITH {per_task_sql(f"({period})", f"({period})", repr(SOLVED_SCORE))}
SELECT service, task_class,
       ({per_solved.format(when=recent, solved=solved)}) / ({per_solved.format(when=before, solved=solved)}) AS value
FROM graded
GROUP BY service, task_class
HAVING countIf({solved} AND {recent}) >= {s.cost_per_solved_min_solved}
   AND countIf({solved} AND {before}) >= {s.cost_per_solved_min_solved}
   AND sumIf(cost, has_outcome AND cost IS NOT NULL AND {before}) > 0"""
    return Rule(
        uid="thinkmeter-cost-per-solved-task",
        title="Cost per solved task above its trailing baseline",
        group="thinkmeter-tasks",
        sql=sql,
        labels=("service", "task_class"),
        threshold=s.cost_per_solved_k,
        window_s=86_400,
        severity="warning",
        summary="A solved {task_class} task of {service} cost {value}x its average of the week before",
        description=f"What graded tasks cost per solved one over the last day, against the 7 days before (fires "
        f"above {s.cost_per_solved_k:g}x; each period needs {s.cost_per_solved_min_solved} solved tasks). More "
        "thinking, wider best-of-N or lower accuracy all raise it: compare `thinkmeter budget-curve`.",
    )


def _kv_saturation(s: AlertSettings) -> Rule:
    sql = f"""SELECT kv.server AS server, kv.engine AS engine,
       if(kv.queue_growth > 0 OR ifNull(pre.preemptions, 0) > 0, kv.usage, 0) AS value
FROM (
    SELECT concat(Attributes['server.address'], ':', Attributes['server.port']) AS server,
           Attributes['thinkmeter.engine'] AS engine,
           avgIf(Value, MetricName = '{sc.METRIC_ENGINE_KV_CACHE_USAGE}') AS usage,
           argMaxIf(Value, TimeUnix, MetricName = '{sc.METRIC_ENGINE_REQUESTS_WAITING}')
             - argMinIf(Value, TimeUnix, MetricName = '{sc.METRIC_ENGINE_REQUESTS_WAITING}') AS queue_growth
    FROM otel_metrics_gauge
    WHERE $__timeFilter(TimeUnix) AND MetricName IN ('{sc.METRIC_ENGINE_KV_CACHE_USAGE}', '{sc.METRIC_ENGINE_REQUESTS_WAITING}')
    GROUP BY server, engine
    HAVING countIf(MetricName = '{sc.METRIC_ENGINE_KV_CACHE_USAGE}') > 0
) AS kv
LEFT JOIN (
    SELECT concat(Attributes['server.address'], ':', Attributes['server.port']) AS server,
           sum(Value) AS preemptions
    FROM otel_metrics_sum
    WHERE $__timeFilter(TimeUnix) AND MetricName = '{sc.METRIC_ENGINE_PREEMPTIONS}'
    GROUP BY server
) AS pre ON kv.server = pre.server"""
    return Rule(
        uid="thinkmeter-kv-cache-saturation",
        title="KV cache saturated with a growing queue or preemptions",
        group="thinkmeter-engines",
        sql=sql,
        labels=("server", "engine"),
        threshold=s.kv_cache_saturation,
        window_s=300,
        severity="warning",
        summary="KV cache of {engine} at {server} is {value:percent} full while requests queue up or are preempted",
        description="Mean KV-cache usage over 5 minutes, counted only while the waiting queue grew or the "
        "engine preempted requests; long reasoning holds KV blocks for the whole thinking phase.",
    )


def _gpu_memory(s: AlertSettings) -> Rule:
    sql = f"""SELECT ResourceAttributes['host.name'] AS host, Attributes['hw.name'] AS gpu, Attributes['hw.id'] AS gpu_id,
       avg(Value) AS value
FROM otel_metrics_gauge
WHERE $__timeFilter(TimeUnix) AND MetricName = '{sc.METRIC_HW_GPU_MEMORY_UTILIZATION}'
GROUP BY host, gpu, gpu_id"""
    return Rule(
        uid="thinkmeter-gpu-memory-pressure",
        title="GPU memory pressure",
        group="thinkmeter-engines",
        sql=sql,
        labels=("host", "gpu", "gpu_id"),
        threshold=s.gpu_memory_pressure,
        window_s=300,
        severity="warning",
        summary="GPU {gpu} on {host} used {value:percent} of its memory over the last 5 minutes",
        description="Mean of hw.gpu.memory.utilization (used / total device memory).",
    )


def _unpriced(_: AlertSettings) -> Rule:
    sql = """SELECT ServiceName AS service, provider, model,
       toFloat64(countIf(cost_usd IS NULL AND output_tokens IS NOT NULL)) AS value
FROM llm_calls
WHERE $__timeFilter(Timestamp)
GROUP BY service, provider, model"""
    return Rule(
        uid="thinkmeter-unpriced-model",
        title="Calls to a model without a price",
        group="thinkmeter-usage",
        sql=sql,
        labels=("service", "provider", "model"),
        threshold=0.0,
        window_s=3600,
        severity="info",
        summary="{value} calls of {service} to {provider}/{model} in the last hour have no price",
        description="Their spend is unknown (never counted as 0). Add the model to a price file "
        "(THINKMETER_PRICE_FILE) so spend and quotas include it.",
    )


def _answer_lost(s: AlertSettings) -> Rule:
    sql = """SELECT ServiceName AS service, model, task_class, toFloat64(count()) AS value
FROM llm_calls
WHERE $__timeFilter(Timestamp) AND answer_lost = true
GROUP BY service, model, task_class"""
    return Rule(
        uid="thinkmeter-answer-lost-to-reasoning",
        title="Answers lost to reasoning",
        group="thinkmeter-usage",
        sql=sql,
        labels=("service", "model", "task_class"),
        threshold=s.answer_lost_calls_per_hour,
        window_s=3600,
        severity="warning",
        summary="{value} calls of {service} to {model} ({task_class}) in the last hour hit the output cap while "
        "still thinking and returned no answer",
        description="They ended on the length cap (length / max_tokens / MAX_TOKENS) with no visible output "
        "tokens: every token was billed reasoning. Raise max_tokens (or the thinking budget's headroom) or "
        "lower the reasoning effort for this task class.",
    )


def _budget_actions(s: AlertSettings) -> Rule:
    sql = """SELECT ServiceName AS service, budget_line AS line,
       if(countIf(budget_cut OR budget_rejected) > 0, 'enforce', 'observe') AS mode,
       toFloat64(count()) AS value
FROM llm_calls
WHERE $__timeFilter(Timestamp) AND budget_line != '' AND (budget_cut OR budget_rejected OR budget_would_cut OR budget_would_reject)
GROUP BY service, line"""
    return Rule(
        uid="thinkmeter-budget-actions",
        title="Calls cut off or refused by the budget policy",
        group="thinkmeter-usage",
        sql=sql,
        labels=("service", "line", "mode"),
        threshold=s.budget_actions_per_hour,
        window_s=3600,
        severity="info",
        summary="{value} calls of {service} in the last hour hit budget line {line} ({mode} mode)",
        description=f"Fires above {s.budget_actions_per_hour:g} per hour and line. In observe mode these calls "
        "ran on and are what the policy would stop; `thinkmeter report` shows what they cost and would save.",
    )


def build_rules(settings: AlertSettings | None = None) -> list[Rule]:
    s = settings or AlertSettings()
    return [
        _runaway(s),
        _quota_rule(s, "tenant", "reasoning_tokens"),
        _quota_rule(s, "tenant", "spend_usd"),
        _quota_rule(s, "user", "reasoning_tokens"),
        _quota_rule(s, "user", "spend_usd"),
        _spend_spike(s),
        _ttfvt_slo(s),
        _cost_per_solved(s),
        _kv_saturation(s),
        _gpu_memory(s),
        _unpriced(s),
        _answer_lost(s),
        _budget_actions(s),
    ]


# ------------------------------------------------------------------------------------------------- texts

_PLACEHOLDER = re.compile(r"\{(\w+)(?::(\w+))?\}")


def grafana_template(text: str) -> str:
    """{label} -> {{ $labels.label }}; {value} -> humanize; {value:percent} -> humanizePercentage."""

    def replace(match: re.Match[str]) -> str:
        name, fmt = match.group(1), match.group(2)
        if name != "value":
            return "{{ $labels." + name + " }}"
        function = {"percent": "humanizePercentage", None: "humanize"}[fmt]
        return "{{ " + function + " $values.B.Value }}"

    return _PLACEHOLDER.sub(replace, text)


def _humanize(value: float) -> str:
    """Prometheus `humanize`: SI prefixes, 4 significant digits."""
    if value == 0 or abs(value) < 1e-3:
        return f"{value:.4g}"
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.4g}{prefix}"
    return f"{value:.4g}"


def render_text(text: str, labels: dict[str, str], value: float | None) -> str:
    def replace(match: re.Match[str]) -> str:
        name, fmt = match.group(1), match.group(2)
        if name != "value":
            return labels.get(name, "")
        if value is None:
            return "?"
        return f"{value * 100:.4g}%" if fmt == "percent" else _humanize(value)

    return _PLACEHOLDER.sub(replace, text)
