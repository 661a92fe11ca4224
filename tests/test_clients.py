"""Independent ClickHouse clients read the store through serve's HTTP interface: clickhouse-connect (HTTP),
the official JS client @clickhouse/client under node, curl, and the Grafana datasource's driver
(clickhouse-go over HTTP: Native at client_protocol_version, its requests replayed by tests/grafana_http.py
and decoded by clickhouse-driver). Every dashboard panel query, every variable query and every alert query
runs with the datasource's macros expanded, and each client gets the rows the store gives directly.

serve's HTTP server runs in this process on the session's store (tests/serve_in_process.py);
tests/test_serve_ui.py runs a real `thinkmeter serve` process filled by `thinkmeter demo`.
"""

from __future__ import annotations

import json
import subprocess
import shutil
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import clickhouse_connect
import pytest
from clickhouse_connect.driver.client import Client

from tests.grafana_http import GrafanaDatasource, HttpStatusError
from tests.grafana_seed import seed_tasks
from tests.serve_in_process import serve_http
from tests.test_dashboards import DASHBOARDS, PANEL_QUERIES, client, seeded, selections, time_range  # noqa: F401 (fixtures)
from thinkmeter.alerts.rules import AlertSettings, Quota, build_rules
from thinkmeter.config import Settings
from thinkmeter.dashboards.model import QueryVariable
from thinkmeter.schemas.grafana_sql import TimeRange, expand_alert_query, expand_panel_query

JS_DIR = Path(__file__).resolve().parent / "js"
READER = "thinkmeter_reader"


def all_queries(seeded) -> list[tuple[str, str]]:
    """(name, SQL as it reaches ClickHouse) for every panel, variable and alert query."""
    queries = []
    for index, param in enumerate(PANEL_QUERIES):  # ids repeat where two panels share a title
        dashboard, panel, query, range_name = param.values
        queries.append((f"{index}:{param.id}", expand_panel_query(query.sql, time_range(range_name), selections(seeded))))
    variables = {v.name: v for d in DASHBOARDS for v in d.variables if isinstance(v, QueryVariable)}
    for name, variable in variables.items():
        queries.append((f"variable/{name}", expand_panel_query(variable.sql, time_range("1h"))))
    # Thresholds every seeded tenant and user exceed, so each rule returns rows.
    settings = AlertSettings(runaway_min_class_calls=1, tenant_quotas={"acme": Quota(spend_usd=1e-6, reasoning_tokens=1)},
                             user_quotas={"acme-u00": Quota(spend_usd=1e-6, reasoning_tokens=1)})
    for rule in build_rules(settings):
        span = TimeRange.last(rule.window_s, datetime.now(timezone.utc) + timedelta(seconds=60))
        queries.append((f"alert/{rule.uid}", expand_alert_query(rule.sql, span)))
    return queries


@pytest.fixture(scope="module")
def serve_url(store_settings: Settings, client: Client, seeded) -> Iterator[str]:  # noqa: F811
    with serve_http(store_settings, client) as url:
        yield url


@pytest.fixture(scope="module")
def expected(store_settings: Settings, client: Client, seeded) -> dict[str, tuple[list[str], int]]:  # noqa: F811
    """What the store answers each query directly: column names and row count."""
    seed_tasks(store_settings, client, f"{seeded.service}-tasks", "graded")  # for the cost-per-solved-task rule
    answers = {}
    for name, sql in all_queries(seeded):
        result = client.query(sql)
        answers[name] = (list(result.column_names), len(result.result_rows))
    empty = [name for name, (_, rows) in answers.items() if not rows]
    assert not empty, f"queries without rows on the seeded store: {empty}"
    return answers


def test_clickhouse_connect_over_http(serve_url: str, seeded, expected) -> None:
    port = int(serve_url.rsplit(":", 1)[1])
    http = clickhouse_connect.get_client(host="127.0.0.1", port=port, username=READER, password="")
    try:
        for name, sql in all_queries(seeded):
            result = http.query(sql)
            assert (list(result.column_names), len(result.result_rows)) == expected[name], name
    finally:
        http.close()


def test_official_js_client(serve_url: str, seeded, expected) -> None:
    if not (JS_DIR / "node_modules" / "@clickhouse" / "client").is_dir() or shutil.which("node") is None:
        pytest.skip("needs node and the JS client: npm ci --prefix tests/js (.ci/run does)")
    queries = [{"name": name, "sql": sql} for name, sql in all_queries(seeded)]
    document = {"url": serve_url, "username": READER, "password": "", "queries": queries}
    run = subprocess.run(["node", str(JS_DIR / "read_queries.mjs")], input=json.dumps(document), capture_output=True,
                         text=True, timeout=600, cwd=JS_DIR)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["ping"] is True
    for result in out["results"]:
        assert "error" not in result, f"{result['name']}: {result.get('error')}"
        columns, rows = expected[result["name"]]
        assert (result["columns"], result["rows"]) == (columns, rows), result["name"]
    # ClickHouse's error text, parsed by the client into code and type
    assert out["error"]["name"] == "ClickHouseError"
    assert out["error"]["code"] == "47" and out["error"]["type"] == "UNKNOWN_IDENTIFIER"


def test_curl(serve_url: str, seeded, expected) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("needs curl")
    assert subprocess.run([curl, "-sS", f"{serve_url}/ping"], capture_output=True, text=True, check=True).stdout == "Ok.\n"
    for name, sql in all_queries(seeded):
        run = subprocess.run([curl, "-sS", "--fail-with-body", "--data-binary", "@-", f"{serve_url}/?default_format=JSONCompact"],
                             input=sql, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, f"{name}: {run.stdout} {run.stderr}"
        document = json.loads(run.stdout)
        assert ([c["name"] for c in document["meta"]], document["rows"]) == expected[name], name
    run = subprocess.run([curl, "-sS", "-o", "/dev/null", "-w", "%{http_code}", f"{serve_url}/?query=DROP+TABLE+llm_calls"],
                         capture_output=True, text=True)
    assert run.stdout != "200"


def test_grafana_datasource_driver(serve_url: str, seeded, expected) -> None:
    datasource = GrafanaDatasource(serve_url, READER)
    datasource.connect()  # "Save & test": the hello query, then SELECT 1
    assert datasource.server["revision"] > 54454 and datasource.server["timezone"]
    for name, sql in all_queries(seeded):
        columns, rows = datasource.query(sql)
        assert (columns, len(rows)) == expected[name], name
    with pytest.raises(HttpStatusError) as error:
        datasource.query("SELECT no_such_column FROM llm_calls")
    assert error.value.status == 404 or error.value.status >= 400
    assert "DB::Exception" in error.value.body  # what the plugin marks as a downstream (query) error
    # The schema browser's queries
    for sql in ("SHOW DATABASES", 'SHOW TABLES FROM "default"', 'DESC TABLE "default"."llm_calls"',
                "SELECT name, type, table FROM system.columns WHERE database IN ('default') AND table = 'llm_calls'"):
        assert datasource.query(sql)[1], sql
