"""What the built-in view shows: a selection of the Grafana panels (dashboards/boards.py), by dashboard and
title, with their SQL expanded exactly as the Grafana datasource expands it (schemas/grafana_sql.py).

Nothing here writes SQL of its own: a panel's query, the options of a filter (the dashboards' template
variables) and one call's spans (the query Grafana's trace view runs) all come from the dashboard code.
`run` is any function that runs one read query and returns its rows as dicts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

from thinkmeter.dashboards.boards import dashboards
from thinkmeter.schemas.grafana_sql import ALL, TimeRange, Variable, expand_panel_query
from thinkmeter.dashboards.model import CustomVariable, Dashboard, Format, Panel, Query, QueryVariable
from thinkmeter.dashboards.sql import trace_id_query

Run = Callable[[str], list[dict[str, Any]]]

# (section, dashboard uid, panel titles). Sections marked optional are shown only when they have data.
SECTIONS: tuple[tuple[str, str, tuple[str, ...], bool], ...] = (
    ("Spend and tokens", "thinkmeter-spend",
     ("Totals", "Spend by model", "Tokens", "Hidden reasoning share", "Spend by task class", "Top spenders"), False),
    ("Reasoning", "thinkmeter-reasoning",
     ("Reasoning tokens per task class", "Reasoning tokens p95 by task class", "Reasoning tokens per call",
      "Cost per request tail by task class", "Cost per request p99 by task class"), False),
    ("Latency", "thinkmeter-latency",
     ("p95 time to first token and to first visible token", "p95 time to first visible token by task class",
      "Thinking time by task class", "TTFT vs first visible vs total, by model and class"), False),
    ("Outliers", "thinkmeter-outliers",
     ("Calls above k x p95 reasoning tokens of their class", "Most expensive calls"), False),
    ("Engines and GPUs", "thinkmeter-engines",
     ("KV-cache usage vs running / waiting requests", "Preemptions", "GPU utilization", "GPU memory used / limit",
      "GPU power"), True),
    ("Tasks", "thinkmeter-tasks",
     ("Tasks by class", "Cost per solved task", "Accuracy by reasoning budget", "Best-of-N width vs accuracy"), True),
)
RANGES = {"15m": 900, "1h": 3600, "6h": 6 * 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
DEFAULT_RANGE = "24h"
# Points a time series gets at most; Grafana asks for about one per pixel of the panel's width.
MAX_POINTS = 300
CALL_LINK_COLUMN = "trace_id"


@dataclass(frozen=True)
class ViewPanel:
    id: str
    section: str
    dashboard: Dashboard
    panel: Panel
    optional: bool  # hidden while it has no rows

    @property
    def query(self) -> Query:
        return self.panel.queries[0]

    def describe(self) -> dict[str, Any]:
        """What the page needs to draw the panel (its data comes separately)."""
        query = self.query
        return {
            "id": self.id,
            "section": self.section,
            "title": self.panel.title,
            "description": self.panel.description,
            "kind": self.panel.kind,
            "columns": list(query.columns),
            "units": {column: unit for column in query.columns if (unit := column_unit(self.panel, column))},
            "stacked": self.panel.stacked,
            "options": self.panel.options,
            "thresholds": [t.value for t in self.panel.thresholds],
            "link": CALL_LINK_COLUMN if CALL_LINK_COLUMN in query.columns else None,
            "optional": self.optional,
            "time_series": query.format == Format.TIME_SERIES and self.panel.kind != "barchart",
        }


def _slug(text: str) -> str:
    return "-".join("".join(c if c.isalnum() else " " for c in text.lower()).split())


def view_panels(boards: Sequence[Dashboard] | None = None) -> list[ViewPanel]:
    by_uid = {board.uid: board for board in (boards or dashboards())}
    panels = []
    for section, uid, titles, optional in SECTIONS:
        board = by_uid[uid]
        by_title: dict[str, Panel] = {}
        for panel in board.panels:  # the first panel of a title ("Spend by model": the time series, not the bars)
            by_title.setdefault(panel.title, panel)
        for title in titles:
            if title not in by_title:
                raise KeyError(f"dashboard {uid} has no panel {title!r}; update thinkmeter/ui/view.py SECTIONS")
            panels.append(ViewPanel(f"{uid.removeprefix('thinkmeter-')}--{_slug(title)}", section, board, by_title[title], optional))
    return panels


def column_unit(panel: Panel, column: str) -> str | None:
    """The unit Grafana shows a column in: a byName / byRegexp override, else the panel's unit."""
    for override in panel.overrides:
        matcher = override.get("matcher", {})
        options = matcher.get("options", "")
        matched = (matcher.get("id") == "byName" and options == column) or (
            matcher.get("id") == "byRegexp" and re.fullmatch(options, column) is not None
        )
        if matched:
            for prop in override.get("properties", ()):
                if prop.get("id") == "unit":
                    return prop["value"]
    return panel.unit


# ------------------------------------------------------------------------------------------ variables


@dataclass(frozen=True)
class Filter:
    name: str
    label: str
    sql: str | None  # the options query (None for a fixed list)
    options: tuple[str, ...] = ()
    default: str = ALL
    description: str = ""

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "label": self.label, "options": list(self.options), "default": self.default,
                "fixed": self.sql is None, "description": self.description}


def filters(panels: Sequence[ViewPanel]) -> list[Filter]:
    """The template variables of the dashboards the panels come from, each once, in dashboard order."""
    seen: dict[str, Filter] = {}
    for view_panel in panels:
        for variable in view_panel.dashboard.variables:
            if variable.name in seen:
                continue
            if isinstance(variable, QueryVariable):
                seen[variable.name] = Filter(variable.name, variable.label, variable.sql)
            elif isinstance(variable, CustomVariable):
                seen[variable.name] = Filter(variable.name, variable.label, None, variable.options, variable.default,
                                             variable.description)
    return list(seen.values())


@dataclass(frozen=True)
class Selection:
    """The page's state: a time range and the chosen value(s) of each filter (none chosen: All)."""

    time_range: TimeRange
    chosen: Mapping[str, Sequence[str]]

    def variables(self, available: Sequence[Filter]) -> list[Variable]:
        result = []
        for item in available:
            values = [v for v in self.chosen.get(item.name, ()) if v and v != ALL]
            if item.sql is None:  # a single-valued custom variable
                value = values[0] if values and values[0] in item.options else item.default
                result.append(Variable(item.name, value))
            else:
                result.append(Variable(item.name, values or [ALL]))
        return result


def interval_ms(seconds: float) -> int:
    """Grafana's interval for MAX_POINTS points over the range, rounded to a step it would pick."""
    raw = seconds * 1000 / MAX_POINTS
    steps_s = (1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
    for step in steps_s:
        if raw <= step * 1000:
            return step * 1000
    return 86400 * 1000


def time_range(range_name: str | None = None, start: datetime | None = None, end: datetime | None = None) -> TimeRange:
    """A preset range ending now ('24h'), or start/end (timezone-aware)."""
    if start is not None and end is not None:
        if end <= start:
            raise ValueError("the time range must end after it starts")
        return TimeRange(start, end, interval_ms((end - start).total_seconds()))
    name = range_name or DEFAULT_RANGE
    if name not in RANGES:
        raise ValueError(f"unknown range {name!r}; one of {', '.join(RANGES)}")
    seconds = RANGES[name]
    return TimeRange.last(seconds, datetime.now(timezone.utc), interval_ms(seconds))


# ------------------------------------------------------------------------------------------- queries


def panel_sql(view_panel: ViewPanel, selection: Selection, available: Sequence[Filter]) -> str:
    return expand_panel_query(view_panel.query.sql, selection.time_range, selection.variables(available))


def panel_data(run: Run, view_panel: ViewPanel, selection: Selection, available: Sequence[Filter]) -> dict[str, Any]:
    rows = run(panel_sql(view_panel, selection, available))
    columns = list(view_panel.query.columns)
    span = selection.time_range
    return {"id": view_panel.id, "columns": columns, "rows": [[json_value(row.get(c)) for c in columns] for row in rows],
            "range": [json_value(span.start), json_value(span.end)], "interval_ms": span.interval_ms}


def filter_options(run: Run, available: Sequence[Filter], selection: Selection) -> dict[str, list[str]]:
    options = {}
    for item in available:
        if item.sql is None:
            options[item.name] = list(item.options)
        else:
            sql = expand_panel_query(item.sql, selection.time_range)
            options[item.name] = [str(next(iter(row.values()))) for row in run(sql)]
    return options


def call_spans(run: Run, trace_id: str) -> list[dict[str, Any]]:
    """One call's spans with every attribute: the query Grafana's trace view runs for the outlier links."""
    if not trace_id or not all(c in "0123456789abcdefABCDEF" for c in trace_id):
        raise ValueError("a trace id is hexadecimal")
    spans = []
    for row in run(trace_id_query(trace_id)):
        spans.append({
            "trace_id": row["traceID"],
            "span_id": row["spanID"],
            "parent_span_id": row["parentSpanID"],
            "service": row["serviceName"],
            "operation": row["operationName"],
            "start_ms": json_value(row["startTime"]),
            "duration_ms": json_value(row["duration"]),
            "status": "error" if row["statusCode"] == 2 else "ok",
            "status_message": row["statusMessage"],
            "attributes": sorted(((tag["key"], tag["value"]) for tag in row["tags"]), key=lambda kv: kv[0]),
            "resource": sorted(((tag["key"], tag["value"]) for tag in row["serviceTags"]), key=lambda kv: kv[0]),
            "events": [event["name"] for event in row["logs"]] if row.get("logs") else [],
        })
    return spans


def json_value(value: Any) -> Any:
    """A cell as JSON: times as UTC 'YYYY-MM-DD HH:MM:SS(.ffffff)', NaN and infinities as null."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (UUID, bytes)):
        return value.hex() if isinstance(value, bytes) else str(value)
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    return value
