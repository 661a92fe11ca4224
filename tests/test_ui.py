"""The built-in view (/ui) on a store seeded through the simulator (openai SDK + instrument() + exporter)
and the collectors, checked over HTTP and in headless Debian chromium: the page loads without console
errors, every chart has data points, a filter changes the numbers, an outlier opens its call. Screenshots
are kept under test-artifacts/ui/."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from tests.browser import chromium, console_errors, screenshot, wait_for
from tests.engine_servers import vllm_metrics
from tests.grafana_seed import Call, mixed_calls, seed_calls, seed_engine_metrics, seed_gpu_metrics, seed_tasks
from tests.nvml_stand_in import StandInGpu
from tests.serve_in_process import serve_http
from thinkmeter.cli import main
from thinkmeter.config import Settings
from thinkmeter.dashboards.boards import dashboards
from thinkmeter.simulator import Scenario
from thinkmeter.store import store_session
from thinkmeter.ui.page import STATIC
from thinkmeter.ui.view import view_panels

RUNAWAY = Scenario(model="o4-mini", input_tokens=400, reasoning_tokens=60_000, visible_tokens=10, prefill_s=0.2, thinking_s=350)
PANELS = view_panels()


@dataclass(frozen=True)
class Seeded:
    service: str
    calls: int  # rows of the service in llm_calls
    runaway_trace: str


@pytest.fixture(scope="module")
def client(store_settings: Settings) -> Iterator[Client]:
    with store_session(store_settings) as session:
        yield session


@pytest.fixture(scope="module")
def seeded(store_settings: Settings, client: Client) -> Seeded:
    suffix = uuid.uuid4().hex[:10]
    service, host = f"test-ui-{suffix}", f"gpu-ui-{suffix}"
    runaway_tags = {"tenant": "acme", "user": "acme-u00", "feature": "search", "task_class": "lookup"}
    seed_calls(store_settings, service, [*mixed_calls(60, seed=11), Call(runaway_tags, RUNAWAY, stream=False)])
    seed_calls(store_settings, f"test-ui-other-{suffix}", mixed_calls(6, seed=3))  # what the service filter leaves out
    seed_engine_metrics(client, [
        vllm_metrics(kv_usage=0.55, running=4, waiting=0, preemptions=0, generation_tokens=1_000, prefix_hits=100),
        vllm_metrics(kv_usage=0.93, running=9, waiting=3, preemptions=2, generation_tokens=9_000, prefix_hits=600),
        vllm_metrics(kv_usage=0.97, running=9, waiting=7, preemptions=5, generation_tokens=15_000, prefix_hits=900),
    ], host)
    seed_gpu_metrics(client, host, 3, [StandInGpu(uuid=f"GPU-{suffix}", memory=(80 * 2**30, 70 * 2**30))])
    seed_tasks(store_settings, client, service, "math", baseline=False)  # graded tasks for the Tasks section
    calls = client.query("SELECT count() FROM llm_calls WHERE ServiceName = {s:String}", parameters={"s": service}).result_rows[0][0]
    runaway = client.query(
        "SELECT TraceId FROM llm_calls WHERE ServiceName = {s:String} ORDER BY reasoning_tokens DESC LIMIT 1", parameters={"s": service}
    ).result_rows[0][0]
    return Seeded(service, calls, runaway)


@pytest.fixture(scope="module")
def base_url(store_settings: Settings, client: Client, seeded: Seeded) -> Iterator[str]:
    with serve_http(store_settings, client) as url:
        yield url


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=60) as response:
        return json.loads(response.read())


# ------------------------------------------------------------------------------ one source of truth


def test_view_panels_are_the_dashboard_panels() -> None:
    grafana_queries = [query for board in dashboards() for panel in board.panels for query in panel.queries]
    for view_panel in PANELS:
        assert view_panel.query in grafana_queries, view_panel.id
    kinds = {p.panel.kind for p in PANELS}
    assert kinds == {"stat", "timeseries", "barchart", "table", "heatmap"}
    # The page's script draws rows; it has no SQL of its own.
    script = (STATIC / "view.js").read_text(encoding="utf-8")
    assert not re.search(r"\b(SELECT|FROM)\b", script), "SQL in view.js"


def test_every_panel_answers_with_rows(base_url: str, seeded: Seeded) -> None:
    for view_panel in PANELS:
        data = get_json(f"{base_url}/ui/api/panel?id={view_panel.id}&range=1h&service={seeded.service}")
        assert data["columns"] == list(view_panel.query.columns)
        assert data["rows"], f"{view_panel.id}: no rows"


def test_api_errors_are_json(base_url: str) -> None:
    for path, status in (("/ui/api/panel?id=nope", 404), ("/ui/api/panel?id=spend--totals&range=3y", 400),
                         ("/ui/api/call?trace_id=x'y", 400)):
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(base_url + path, timeout=30)
        assert error.value.code == status and "error" in json.loads(error.value.read())


# ----------------------------------------------------------------------------------------- browser


def _ready(driver) -> bool:
    return driver.execute_script("return document.body.dataset.state") == "ready"


def _panel_states(driver) -> dict[str, tuple[str, int]]:
    return {
        box.get_attribute("id").removeprefix("panel-"): (box.get_attribute("data-state"), int(box.get_attribute("data-points") or 0))
        for box in driver.find_elements("css selector", "article.panel")
    }


def _stat(driver, column: str) -> str:
    """The number behind a stat (its text is shortened: 1.01k)."""
    return driver.find_element("css selector", f"#panel-spend--totals .stat[data-column='{column}']").get_attribute("data-value")


def test_page_draws_every_panel_and_filters_change_the_numbers(base_url: str, seeded: Seeded) -> None:
    from selenium.webdriver.support.ui import Select

    with chromium() as driver:
        driver.get(f"{base_url}/ui/?range=1h")
        wait_for(lambda: _ready(driver), what="every panel")
        states = _panel_states(driver)
        assert set(states) == {p.id for p in PANELS}
        not_drawn = {name: state for name, state in states.items() if state[0] != "ok" or state[1] <= 0}
        assert not not_drawn, f"panels without data points: {not_drawn}"
        assert driver.find_elements("css selector", "#panel-spend--spend-by-model .chart .scatterlayer .trace")
        assert console_errors(driver) == []
        screenshot(driver, "ui/all")

        all_calls = int(_stat(driver, "calls"))
        Select(driver.find_element("id", "filter-service")).select_by_value(seeded.service)
        wait_for(lambda: _ready(driver) and "service=" in driver.current_url, what="the filtered page")
        assert int(_stat(driver, "calls")) == seeded.calls < all_calls
        Select(driver.find_element("id", "filter-model")).select_by_value("o4-mini")
        wait_for(lambda: _ready(driver) and "model=" in driver.current_url, what="the page filtered by model")
        assert 0 < int(_stat(driver, "calls")) < seeded.calls
        assert console_errors(driver) == []


def test_outlier_click_shows_the_call(base_url: str, seeded: Seeded) -> None:
    with chromium() as driver:
        driver.get(f"{base_url}/ui/?range=1h&service={seeded.service}")
        wait_for(lambda: _ready(driver), what="the page")
        row = driver.find_element(
            "css selector", f"#panel-outliers--calls-above-k-x-p95-reasoning-tokens-of-their-class tr[data-trace-id='{seeded.runaway_trace}']"
        )
        row.click()
        wait_for(lambda: driver.find_element("id", "call").get_attribute("data-state") == "ok", what="the call")
        call = driver.find_element("id", "call")
        attributes = {
            tr.find_element("css selector", "th").text: tr.find_element("css selector", "td").text
            for tr in call.find_elements("css selector", "section.span > table.attributes tr")
        }
        assert attributes["gen_ai.usage.reasoning.output_tokens"] == str(RUNAWAY.reasoning_tokens)
        assert attributes["gen_ai.request.model"] == "o4-mini"
        assert seeded.runaway_trace in call.text
        assert console_errors(driver) == []
        screenshot(driver, "ui/call")


def test_report_html_is_one_self_contained_file(tmp_path: Path, seeded: Seeded, capsys) -> None:
    path = tmp_path / "report.html"
    assert main(["report", "--window", "1h", "--html", str(path)]) == 0
    capsys.readouterr()
    text = path.read_text(encoding="utf-8")
    assert "<script src=" not in text and "http://" not in text.split("<script>", 1)[0]
    with chromium() as driver:
        driver.get(path.as_uri())
        wait_for(lambda: _ready(driver), what="the report file")
        states = _panel_states(driver)
        drawn = {name for name, (state, points) in states.items() if state == "ok" and points > 0}
        assert drawn == {p.id for p in PANELS}, f"not drawn: {set(states) - drawn}"
        assert console_errors(driver) == []
        screenshot(driver, "ui/report-file")
