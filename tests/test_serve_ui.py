"""A fresh data dir, `thinkmeter serve` and `thinkmeter demo` as real processes: the view at /ui works in
headless chromium, and clickhouse-connect, the JS client, curl and the Grafana driver's requests read the
store the demo filled. `thinkmeter provision grafana` points the datasource at this serve."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser import chromium, console_errors, screenshot, wait_for
from tests.grafana_http import GrafanaDatasource
from tests.test_provision import TOKEN, FakeGrafana
from tests.test_serve import ServeProcess, http, wait_for_count
from thinkmeter.cli import main
from thinkmeter.dashboards.model import DATASOURCE_UID

JS_DIR = Path(__file__).resolve().parent / "js"
DEMO_CALLS = 120
COUNT = "SELECT count() FROM llm_calls"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServeProcess, int]]:
    data_dir = tmp_path_factory.mktemp("serve-demo")
    serve = ServeProcess(data_dir)
    try:
        demo = subprocess.run([sys.executable, "-m", "thinkmeter", "demo", "--calls", str(DEMO_CALLS)],
                              env={**os.environ, "THINKMETER_DATA_DIR": str(data_dir)}, capture_output=True, text=True, timeout=600)
        assert demo.returncode == 0, demo.stderr[-3000:]
        calls = wait_for_count(serve.client(), COUNT, DEMO_CALLS)
        assert calls >= DEMO_CALLS
        yield serve, calls
    finally:
        code, err = serve.terminate()
        assert code == 0, err


def test_view_on_the_demo_store(served: tuple[ServeProcess, int]) -> None:
    serve, calls = served
    status, headers, body = http(serve.address, "/ui")
    assert status == 200 and b"thinkmeter-config" in body  # urllib followed the redirect to /ui/
    status, headers, body = http(serve.address, "/ui/plotly.min.js")
    assert status == 200 and len(body) > 1_000_000 and headers["Content-Type"].startswith("text/javascript")
    status, _, body = http(serve.address, "/ui/api/panel?id=spend--totals&range=1h")
    assert status == 200
    totals = json.loads(body)
    assert dict(zip(totals["columns"], totals["rows"][0]))["calls"] == calls
    with chromium() as driver:
        driver.get(f"{serve.address.url}/ui/?range=1h")
        wait_for(lambda: driver.execute_script("return document.body.dataset.state") == "ready", what="the view")
        boxes = driver.find_elements("css selector", "article.panel")
        drawn = [b for b in boxes if b.get_attribute("data-state") == "ok" and int(b.get_attribute("data-points")) > 0]
        # The demo runs no engine collector or GPU: those panels stay hidden; every other one has points.
        missing = [b.get_attribute("id") for b in boxes if b not in drawn and not b.get_attribute("id").startswith("panel-engines--")]
        assert not missing, missing
        assert console_errors(driver) == []
        screenshot(driver, "ui/demo")


def test_clients_read_the_demo_store(served: tuple[ServeProcess, int]) -> None:
    serve, calls = served
    assert serve.client().query(COUNT).first_row[0] == calls  # clickhouse-connect over HTTP
    datasource = GrafanaDatasource(serve.address.url, "thinkmeter_reader")
    datasource.connect()
    assert datasource.query(COUNT)[1] == [(calls,)]
    curl = subprocess.run(["curl", "-sS", "--fail-with-body", f"{serve.address.url}/?query=SELECT%20count()%20FROM%20llm_calls"],
                          capture_output=True, text=True, timeout=60)
    assert curl.stdout.strip() == str(calls), curl.stderr
    if (JS_DIR / "node_modules" / "@clickhouse" / "client").is_dir() and shutil.which("node"):
        document = {"url": serve.address.url, "username": "thinkmeter_reader", "password": "",
                    "queries": [{"name": "count", "sql": COUNT}]}
        run = subprocess.run(["node", str(JS_DIR / "read_queries.mjs")], input=json.dumps(document), capture_output=True,
                             text=True, timeout=120, cwd=JS_DIR)
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout)["results"] == [{"name": "count", "rows": 1, "columns": ["count()"],
                                                     "query_id": json.loads(run.stdout)["results"][0]["query_id"]}]


def test_report_html_through_serve(served: tuple[ServeProcess, int], tmp_path: Path) -> None:
    serve, calls = served
    path = tmp_path / "report.html"
    run = subprocess.run([sys.executable, "-m", "thinkmeter", "report", "--window", "1h", "--html", str(path)],
                         env={**os.environ, "THINKMETER_DATA_DIR": str(serve.data_dir)}, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    config = path.read_text(encoding="utf-8").split('<script id="thinkmeter-config" type="application/json">', 1)[1].split("</script>", 1)[0]
    totals = json.loads(config)["data"]["spend--totals"]
    assert dict(zip(totals["columns"], totals["rows"][0]))["calls"] == calls


def test_provision_points_grafana_at_serve(served: tuple[ServeProcess, int], monkeypatch, capsys) -> None:
    serve, _ = served
    monkeypatch.setenv("THINKMETER_DATA_DIR", str(serve.data_dir))
    monkeypatch.delenv("THINKMETER_CLICKHOUSE_URL", raising=False)
    grafana = FakeGrafana()
    try:
        assert main(["provision", "grafana", "--url", grafana.url, "--token", TOKEN]) == 0
        capsys.readouterr()
        json_data = grafana.datasources[DATASOURCE_UID]["jsonData"]
        assert (json_data["host"], json_data["port"], json_data["protocol"], json_data["username"]) == (
            "localhost", serve.address.port, "http", "thinkmeter_reader")
    finally:
        grafana.close()
