"""A small typed model of Grafana dashboards for the ClickHouse datasource, rendered to dashboard JSON.

Each query states the columns it returns, so the tests can check every frame's shape against the
store; the renderer lays panels out left to right in rows of 24 grid units.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Literal

from thinkmeter.schemas.grafana_sql import DATASOURCE_TYPE, DATASOURCE_UID

DATASOURCE_REF = {"type": DATASOURCE_TYPE, "uid": "${datasource}"}
PLUGIN_VERSION = "4.20.0"
SCHEMA_VERSION = 39
DASHBOARD_TAG = "thinkmeter"


class Format(IntEnum):
    """The plugin's query formats (src/data/utils.ts mapQueryTypeToGrafanaFormat)."""

    TIME_SERIES = 0
    TABLE = 1
    TRACES = 3


_QUERY_TYPES = {Format.TIME_SERIES: "timeseries", Format.TABLE: "table", Format.TRACES: "traces"}

PanelKind = Literal["timeseries", "stat", "table", "barchart", "heatmap", "bargauge"]


@dataclass(frozen=True)
class Query:
    sql: str
    columns: tuple[str, ...]  # the columns the query returns, in order
    format: Format = Format.TIME_SERIES
    ref_id: str = "A"
    # Reads llm_calls for ranges up to 2 days and a rollup beyond (see sql.by_range).
    picks_rollup: bool = False

    def target(self) -> dict[str, Any]:
        return {
            "refId": self.ref_id,
            "datasource": DATASOURCE_REF,
            "editorType": "sql",
            "format": int(self.format),
            "queryType": _QUERY_TYPES[self.format],
            "rawSql": self.sql,
            "pluginVersion": PLUGIN_VERSION,
        }


@dataclass(frozen=True)
class Threshold:
    value: float
    color: str = "red"


@dataclass(frozen=True)
class Panel:
    title: str
    kind: PanelKind
    queries: tuple[Query, ...]
    description: str = ""
    unit: str | None = None
    width: int = 12
    height: int = 8
    stacked: bool = False
    # Lines drawn at these values (SLOs); on stat panels they color the value instead.
    thresholds: tuple[Threshold, ...] = ()
    # Extra fieldConfig overrides and panel options, merged over the defaults of the panel kind.
    overrides: tuple[dict[str, Any], ...] = ()
    options: dict[str, Any] = field(default_factory=dict)
    field_defaults: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Row:
    title: str


@dataclass(frozen=True)
class QueryVariable:
    """A multi-value template variable whose options come from a query; "All" by default."""

    name: str
    label: str
    sql: str


@dataclass(frozen=True)
class CustomVariable:
    name: str
    label: str
    options: tuple[str, ...]
    default: str
    description: str = ""


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    items: tuple[Panel | Row, ...]
    variables: tuple[QueryVariable | CustomVariable, ...] = ()
    time_from: str = "now-24h"

    @property
    def panels(self) -> tuple[Panel, ...]:
        return tuple(item for item in self.items if isinstance(item, Panel))


# ------------------------------------------------------------------------------------------- rendering


def _thresholds(thresholds: tuple[Threshold, ...]) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [{"color": "green", "value": None}]
    steps += [{"color": t.color, "value": t.value} for t in thresholds]
    return {"mode": "absolute", "steps": steps}


def _field_config(panel: Panel) -> dict[str, Any]:
    defaults: dict[str, Any] = {"thresholds": _thresholds(panel.thresholds)}
    if panel.unit:
        defaults["unit"] = panel.unit
    if panel.kind in ("timeseries", "barchart"):
        custom: dict[str, Any] = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "spanNulls": False}
        if panel.kind == "barchart":
            custom = {"fillOpacity": 80, "lineWidth": 1}
        if panel.stacked:
            custom["stacking"] = {"mode": "normal", "group": "A"}
        if panel.thresholds and panel.kind == "timeseries":
            custom["thresholdsStyle"] = {"mode": "line+area"}
        defaults["custom"] = custom
        defaults["color"] = {"mode": "palette-classic"}
    defaults.update(panel.field_defaults)
    return {"defaults": defaults, "overrides": list(panel.overrides)}


def _options(panel: Panel) -> dict[str, Any]:
    base: dict[str, Any] = {}
    if panel.kind == "timeseries":
        base = {
            "legend": {"displayMode": "table", "placement": "bottom", "calcs": ["mean", "max"], "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    elif panel.kind == "stat":
        base = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "none",
            "textMode": "value_and_name",
            "justifyMode": "auto",
            "orientation": "auto",
        }
    elif panel.kind == "table":
        base = {"showHeader": True, "cellHeight": "sm", "footer": {"show": False, "reducer": ["sum"], "fields": ""}}
    elif panel.kind == "barchart":
        base = {
            "orientation": "horizontal",
            "showValue": "auto",
            "stacking": "normal" if panel.stacked else "none",
            "groupWidth": 0.7,
            "barWidth": 0.9,
            "xTickLabelRotation": 0,
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    elif panel.kind == "bargauge":
        base = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": True},
            "orientation": "horizontal",
            "displayMode": "gradient",
            "showUnfilled": True,
        }
    return {**base, **panel.options}


def _panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    return {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE_REF,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "targets": [query.target() for query in panel.queries],
        "fieldConfig": _field_config(panel),
        "options": _options(panel),
    }


def _variable_json(variable: QueryVariable | CustomVariable) -> dict[str, Any]:
    if isinstance(variable, CustomVariable):
        return {
            "type": "custom",
            "name": variable.name,
            "label": variable.label,
            "description": variable.description,
            "query": ",".join(variable.options),
            "current": {"selected": True, "text": variable.default, "value": variable.default},
            "options": [
                {"selected": option == variable.default, "text": option, "value": option} for option in variable.options
            ],
            "multi": False,
            "includeAll": False,
            "hide": 0,
        }
    return {
        "type": "query",
        "name": variable.name,
        "label": variable.label,
        "datasource": DATASOURCE_REF,
        "query": {"editorType": "sql", "rawSql": variable.sql},
        "definition": variable.sql,
        "refresh": 2,  # on time range change
        "sort": 1,
        "multi": True,
        "includeAll": True,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "hide": 0,
    }


def render(dashboard: Dashboard) -> dict[str, Any]:
    """The dashboard JSON Grafana stores (no `id`, so it imports into any instance)."""
    panels: list[dict[str, Any]] = []
    x = y = row_height = 0
    for panel_id, item in enumerate(dashboard.items, start=1):
        if isinstance(item, Row):
            y += row_height
            x = row_height = 0
            panels.append(
                {"id": panel_id, "type": "row", "title": item.title, "collapsed": False, "panels": [],
                 "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}}
            )
            y += 1
            continue
        if x + item.width > 24:
            y += row_height
            x = row_height = 0
        panels.append(_panel_json(item, panel_id, x, y))
        x += item.width
        row_height = max(row_height, item.height)
    datasource_variable = {
        "type": "datasource",
        "name": "datasource",
        "label": "ClickHouse",
        "query": DATASOURCE_TYPE,
        "current": {"selected": True, "text": "thinkmeter ClickHouse", "value": DATASOURCE_UID},
        "options": [],
        "refresh": 1,
        "hide": 0,
    }
    return {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": [DASHBOARD_TAG],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "time": {"from": dashboard.time_from, "to": "now"},
        "timepicker": {},
        "timezone": "",
        "refresh": "1m",
        "links": [
            {"type": "dashboards", "tags": [DASHBOARD_TAG], "asDropdown": False, "includeVars": True,
             "keepTime": True, "title": "thinkmeter"}
        ],
        "annotations": {"list": []},
        "templating": {"list": [datasource_variable, *(_variable_json(v) for v in dashboard.variables)]},
        "panels": panels,
    }
