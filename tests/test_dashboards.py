"""Dashboards: every panel query, with the datasource's macros and template variables expanded exactly as
the Grafana ClickHouse plugin expands them, runs against the shared store seeded through the simulator
(openai SDK + thinkmeter.instrument() + the ClickHouse exporter) and the collectors, and returns a
non-empty frame with the columns the panel expects. The generated JSON and provisioning files must
match the generator."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from clickhouse_connect.driver.client import Client
from thinkmeter.alerts.rules import build_rules
from thinkmeter.dashboards.boards import dashboards
from thinkmeter.dashboards.build import generated_files
from thinkmeter.schemas.grafana_sql import (
    ALL,
    TimeRange,
    Variable,
    apply_conditional_all,
    expand_backend,
    expand_panel_query,
    interpolate_variables,
)
from thinkmeter.dashboards.model import (
    DATASOURCE_TYPE,
    DATASOURCE_UID,
    Format,
    QueryVariable,
    render,
)
from thinkmeter.dashboards.sql import TRACE_VIEW_COLUMNS

from tests.engine_servers import vllm_metrics
from tests.grafana_seed import (
    Call,
    mixed_calls,
    seed_budget_actions,
    seed_calls,
    seed_engine_context_spans,
    seed_engine_metrics,
    seed_gpu_metrics,
    seed_tasks,
)
from tests.nvml_stand_in import StandInGpu
from thinkmeter.config import Settings
from thinkmeter.simulator import Scenario
from thinkmeter.store import store_session

DASHBOARDS = dashboards()
RANGES = {"1h": 3600, "7d": 7 * 86400}
PANEL_QUERIES = [
    pytest.param(dashboard, panel, query, range_name, id=f"{dashboard.uid}/{panel.title}/{query.ref_id}/{range_name}")
    for dashboard in DASHBOARDS
    for panel in dashboard.panels
    for query in panel.queries
    for range_name in RANGES
    if range_name == "1h" or query.picks_rollup
]
RUNAWAY = Scenario(model="o4-mini", input_tokens=400, reasoning_tokens=60_000, visible_tokens=10, prefill_s=0.2, thinking_s=350)
# Hit its output cap while still thinking: all billed reasoning, no answer.
ANSWER_LOST = Scenario(model="o4-mini", input_tokens=300, reasoning_tokens=500, visible_tokens=0, finish_reason="length")


@pytest.fixture(scope="module")
def client(store_settings: Settings) -> Iterator[Client]:
    """One session on the shared store for the module (opening one per test costs ~0.5 s each)."""
    with store_session(store_settings) as session:
        yield session


@dataclass(frozen=True)
class Seeded:
    service: str
    server: str  # engine server.address:server.port
    host: str  # GPU host.name


@pytest.fixture(scope="module")
def seeded(store_settings: Settings, client: Client, tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    suffix = uuid.uuid4().hex[:10]
    service, host = f"test-dash-{suffix}", f"gpu-host-{suffix}"
    tags = {"tenant": "acme", "user": "acme-u00", "feature": "search", "task_class": "lookup"}
    calls = [*mixed_calls(60, seed=11), Call(tags, RUNAWAY, stream=False), Call(tags, ANSWER_LOST, stream=False)]
    seed_calls(store_settings, service, calls)  # failed calls (the mix plays errors) are spans too
    seed_budget_actions(store_settings, service, {**tags, "task_class": "budget-capped"}, tmp_path_factory.mktemp("budgets"))
    seed_engine_context_spans(store_settings, service, (0.15, 0.45, 0.62, 0.91, 0.97), reasoning_tokens=3_000)
    seed_tasks(store_settings, client, service, f"graded-{suffix}", tasks=5, baseline=False)
    server = seed_engine_metrics(
        client,
        [
            vllm_metrics(kv_usage=0.55, running=4, waiting=0, preemptions=0, generation_tokens=1_000, prefix_hits=100),
            vllm_metrics(kv_usage=0.93, running=9, waiting=3, preemptions=2, generation_tokens=9_000, prefix_hits=600),
            vllm_metrics(kv_usage=0.97, running=9, waiting=7, preemptions=5, generation_tokens=15_000, prefix_hits=900),
        ],
        host,
    )
    seed_gpu_metrics(client, host, 3, [StandInGpu(uuid=f"GPU-{suffix}", memory=(80 * 2**30, 78 * 2**30))])
    # An hour only the rollup still holds (its raw rows expired): a copy of this service's rollup
    # rows, three days back. Seven-day panels must count it, one-hour panels must not.
    client.command(
        "INSERT INTO llm_calls_hourly SELECT * REPLACE (hour - INTERVAL 3 DAY AS hour) "
        "FROM llm_calls_hourly WHERE ServiceName = {service:String}",
        parameters={"service": service},
    )
    return Seeded(service=service, server=server, host=host)


def time_range(range_name: str) -> TimeRange:
    seconds = RANGES[range_name]
    # Grafana's interval for ~1000 data points, rounded as its interval calculator does to nice steps.
    interval_ms = 20_000 if seconds <= 3600 else 600_000
    return TimeRange.last(seconds, datetime.now(timezone.utc) + timedelta(seconds=60), interval_ms)


def selections(seeded: Seeded) -> list[Variable]:
    """The test's selection: this test's service, engine and GPU host; All for everything else."""
    chosen = {"service": [seeded.service], "server": [seeded.server], "host": [seeded.host], "k": "2"}
    names = {variable.name for dashboard in DASHBOARDS for variable in dashboard.variables}
    return [Variable(name, chosen.get(name, [ALL])) for name in sorted(names)]


def test_generated_files_are_committed() -> None:
    stale = [str(path) for path, content in generated_files().items() if not path.exists() or path.read_text(encoding="utf-8") != content]
    assert not stale, f"run `python -m thinkmeter.dashboards.build` and commit: {stale}"


@pytest.mark.parametrize(("dashboard", "panel", "query", "range_name"), PANEL_QUERIES)
def test_panel_query_returns_its_frame(client: Client, seeded: Seeded, dashboard, panel, query, range_name) -> None:
    sql = expand_panel_query(query.sql, time_range(range_name), selections(seeded))
    assert "$" not in sql.replace("${__value.raw}", ""), f"unexpanded macro or variable in:\n{sql}"
    result = client.query(sql)
    assert result.result_rows, f"{panel.title}: no rows for\n{sql}"
    assert tuple(result.column_names) == query.columns
    if query.format == Format.TIME_SERIES:
        assert query.columns[0] == "time"
        assert all(isinstance(row[0], datetime) for row in result.result_rows)
        assert [row[0] for row in result.result_rows] == sorted(row[0] for row in result.result_rows), "time series must be sorted by time"


def test_variable_queries_offer_the_seeded_values(client: Client, seeded: Seeded) -> None:
    expected = {"service": seeded.service, "server": seeded.server, "host": seeded.host, "model": "o4-mini", "task_class": "lookup"}
    variables = {v.name: v for dashboard in DASHBOARDS for v in dashboard.variables if isinstance(v, QueryVariable)}
    for name, variable in variables.items():
        sql = expand_panel_query(variable.sql, time_range("1h"))
        values = [row[0] for row in client.query(sql).result_rows]
        assert values, f"variable {name} has no options"
        if name in expected:
            assert expected[name] in values


def test_long_ranges_read_the_rollup(client: Client, seeded: Seeded) -> None:
    totals = next(p for p in DASHBOARDS[0].panels if p.title == "Totals").queries[0]
    variables = selections(seeded)

    def calls(range_name: str) -> int:
        result = client.query(expand_panel_query(totals.sql, time_range(range_name), variables))
        return dict(zip(result.column_names, result.result_rows[0]))["calls"]

    raw_calls = client.query(
        "SELECT count() FROM llm_calls WHERE ServiceName = {s:String}", parameters={"s": seeded.service}
    ).result_rows[0][0]
    assert raw_calls > 0 and calls("1h") == raw_calls
    assert calls("7d") == 2 * raw_calls  # this hour and its copy three days back, both from llm_calls_hourly


def test_outlier_links_open_the_trace(client: Client, seeded: Seeded) -> None:
    outliers = render(next(d for d in DASHBOARDS if d.uid == "thinkmeter-outliers"))
    table = next(p for p in outliers["panels"] if p["title"].startswith("Calls above"))
    link = next(o for o in table["fieldConfig"]["overrides"] if o["matcher"]["options"] == "trace_id")["properties"][0]["value"][0]
    assert link["internal"]["query"]["format"] == Format.TRACES
    assert link["internal"]["query"]["builderOptions"]["meta"]["isTraceIdMode"] is True
    rows = client.query(expand_panel_query(table["targets"][0]["rawSql"], time_range("1h"), selections(seeded))).named_results()
    trace_id = next(row["trace_id"] for row in rows if row["service"] == seeded.service)
    # Grafana fills ${__value.raw} with the clicked cell when it follows the link.
    result = client.query(link["internal"]["query"]["rawSql"].replace("${__value.raw}", trace_id))
    assert tuple(result.column_names) == TRACE_VIEW_COLUMNS
    spans = list(result.named_results())
    assert spans and all(span["traceID"] == trace_id for span in spans)
    assert any(span["serviceName"] == seeded.service and span["operationName"].startswith("chat") for span in spans)
    tags = {tag["key"]: tag["value"] for tag in spans[0]["tags"]}
    assert int(tags["gen_ai.usage.reasoning.output_tokens"]) == RUNAWAY.reasoning_tokens


def test_dashboard_json_uses_the_provisioned_datasource() -> None:
    for dashboard in DASHBOARDS:
        document = render(dashboard)
        datasource = document["templating"]["list"][0]
        assert (datasource["type"], datasource["query"], datasource["current"]["value"]) == ("datasource", DATASOURCE_TYPE, DATASOURCE_UID)
        declared = {v["name"] for v in document["templating"]["list"]}
        for panel in document["panels"]:
            if panel["type"] == "row":
                continue
            assert panel["datasource"] == {"type": DATASOURCE_TYPE, "uid": "${datasource}"}
            for target in panel["targets"]:
                assert target["editorType"] == "sql" and target["format"] in (0, 1)
                for name in ("service", "model", "provider", "feature", "tenant", "task_class", "server", "host", "k"):
                    if "${" + name + ":" in target["rawSql"]:
                        assert name in declared, f"{dashboard.uid}: ${name} used but not declared"


def test_provisioning_files_work_as_is() -> None:
    root = Path(__file__).resolve().parent.parent
    datasource = yaml.safe_load((root / "dashboards/provisioning/datasource.yaml").read_text())["datasources"][0]
    assert (datasource["type"], datasource["uid"]) == (DATASOURCE_TYPE, DATASOURCE_UID)
    traces = datasource["jsonData"]["traces"]
    assert (traces["defaultTable"], traces["otelEnabled"], traces["durationUnit"]) == ("otel_traces", True, "nanoseconds")
    provider = yaml.safe_load((root / "dashboards/provisioning/dashboards.yaml").read_text())["providers"][0]
    assert provider["type"] == "file" and provider["options"]["path"]
    rules = yaml.safe_load((root / "alerts/provisioning/rules.yaml").read_text())
    provisioned = {rule["uid"]: rule for group in rules["groups"] for rule in group["rules"]}
    for rule in build_rules():
        query = provisioned[rule.uid]["data"][0]
        assert query["datasourceUid"] == DATASOURCE_UID and query["model"]["rawSql"] == rule.sql
        # Alert rules are evaluated in the backend: frontend-only macros and template variables would stay unexpanded.
        assert "$__conditionalAll" not in rule.sql and "${" not in rule.sql
    contact = yaml.safe_load((root / "alerts/provisioning/contact-points.yaml").read_text())["contactPoints"][0]
    assert contact["receivers"][0]["type"] == "webhook"
    assert json.loads(json.dumps(rules)) == rules  # plain data, no YAML tags


# ------------------------------------------------------------------- the expander against the plugin's tests

# pkg/macros/macros_test.go: from 2014-11-12T11:45:26.371Z to 2015-11-12T11:45:26.371Z, interval 20 s.
_PLUGIN_RANGE = TimeRange(
    datetime(2014, 11, 12, 11, 45, 26, 371000, tzinfo=timezone.utc),
    datetime(2015, 11, 12, 11, 45, 26, 371000, tzinfo=timezone.utc),
    interval_ms=20_000,
)


@pytest.mark.parametrize(
    ("macro", "expanded"),
    [
        ("$__fromTime", "toDateTime(1415792726)"),
        ("$__toTime", "toDateTime(1447328726)"),
        ("$__fromTime_ms", "fromUnixTimestamp64Milli(1415792726371)"),
        ("$__toTime_ms", "fromUnixTimestamp64Milli(1447328726371)"),
        ("$__timeFilter(ts)", "ts >= toDateTime(1415792726) AND ts <= toDateTime(1447328726)"),
        ("$__timeFilter_ms(ts)", "ts >= fromUnixTimestamp64Milli(1415792726371) AND ts <= fromUnixTimestamp64Milli(1447328726371)"),
        ("$__dateFilter(dateCol)", "dateCol >= toDate('2014-11-12') AND dateCol <= toDate('2015-11-12')"),
        (
            "$__dateTimeFilter(dateCol, timeCol)",
            "(dateCol >= toDate('2014-11-12') AND dateCol <= toDate('2015-11-12')) AND (timeCol >= toDateTime(1415792726) AND timeCol <= toDateTime(1447328726))",
        ),
        ("$__timeInterval(col)", "toStartOfInterval(toDateTime(col), INTERVAL 20 second)"),
        ("$__timeInterval_ms(col)", "toStartOfInterval(toDateTime64(col, 3), INTERVAL 20000 millisecond)"),
        ("$__interval_s", "20"),
        ("$__timeFrom(ts)", "ts >= toDateTime(1415792726)"),
        ("$__timeTo(ts)", "ts <= toDateTime(1447328726)"),
        ("$__timeGroup(ts, 5m)", "toStartOfInterval(toDateTime(ts), INTERVAL 300 second)"),
        ("$__unknownMacro(ts)", "$__unknownMacro(ts)"),
        ("x -- $__timeFilter(ts)\n", "x " + " " * len("-- $__timeFilter(ts)") + "\n"),  # comments blanked
    ],
)
def test_backend_macros_expand_as_the_plugin(macro: str, expanded: str) -> None:
    assert expand_backend(macro, _PLUGIN_RANGE) == expanded


def test_interval_is_at_least_one_second() -> None:
    sub_second = TimeRange(_PLUGIN_RANGE.start, _PLUGIN_RANGE.end, interval_ms=200)
    assert expand_backend("$__interval_s $__timeInterval(t)", sub_second) == "1 toStartOfInterval(toDateTime(t), INTERVAL 1 second)"


def test_conditional_all_as_the_plugin() -> None:
    # src/data/CHDatasource.test.ts "Conditional All"
    sql = "select stuff from table where $__conditionalAll(fieldVal in ($fieldVal), $fieldVal) and $__conditionalAll(fieldVal in ($fieldVal2), $fieldVal2);"
    variables = {"fieldVal": Variable("fieldVal", "'val1', 'val2'"), "fieldVal2": Variable("fieldVal2", ALL)}
    assert apply_conditional_all(sql, variables) == "select stuff from table where fieldVal in ($fieldVal) and 1=1;"
    assert apply_conditional_all("$__conditionalAll(foo, $fieldVal)", {"fieldVal": Variable("fieldVal", [ALL])}) == "1=1"
    assert apply_conditional_all("$__conditionalAll(foo, $fieldVal)", {"fieldVal": Variable("fieldVal", "")}) == "1=1"
    assert apply_conditional_all("$__conditionalAll(foo, $undefined)", {}) == "foo"


def test_template_variables_as_grafana_formats_them() -> None:
    variables = {
        "multi": Variable("multi", ["a", "b'c"]),
        "single": Variable("single", "x"),
        "all": Variable("all", [ALL], options=["p", "q"]),
        "custom_all": Variable("custom_all", [ALL], options=["p"], all_value=".*"),
    }
    sql = "$multi|${multi:singlequote}|[[single]]|${single:singlequote}|$all|${all:raw}|$custom_all|$__timeFilter(t)|$missing"
    assert interpolate_variables(sql, variables) == (
        "'a','b'c'|'a','b\\'c'|x|'x'|'p','q'|p,q|.*|$__timeFilter(t)|$missing"
    )
