"""GenAI client metrics are recorded where someone reads them, and only there: into the meter provider
passed to instrument(), or with the OTLP exporter into the global one. Otherwise none are recorded
(the store has every figure), even when the application set a global meter provider.

The real openai SDK calls the loopback simulator; metrics are read back with the OTel SDK's
InMemoryMetricReader. The global-provider cases run in a child process: a global meter provider can
be set only once per process.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import openai
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider

import thinkmeter
from thinkmeter.schemas import semconv as sc
from thinkmeter.simulator import Scenario, start_simulator

PROMPT = [{"role": "user", "content": "What is 2 + 2?"}]
SCENARIO = Scenario(input_tokens=1500, reasoning_tokens=900, visible_tokens=12)


@pytest.fixture(scope="module")
def simulator():
    with start_simulator(time_scale=0.01) as sim:
        yield sim


def points(reader: InMemoryMetricReader) -> dict[str, list]:
    """Metric name -> its data points (one per attribute set)."""
    data = reader.get_metrics_data()
    found: dict[str, list] = {}
    for resource_metrics in data.resource_metrics if data else ():
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                found.setdefault(metric.name, []).extend(metric.data.data_points)
    return found


def test_metrics_go_to_the_meter_provider_passed(simulator) -> None:
    reader = InMemoryMetricReader()
    thinkmeter.uninstrument()
    thinkmeter.instrument(tracer_provider=TracerProvider(), meter_provider=MeterProvider(metric_readers=[reader]), exporter="none")
    try:
        client = openai.OpenAI(base_url=simulator.base_url, api_key="test", max_retries=0)
        client.chat.completions.create(model="o4-mini", messages=PROMPT, extra_headers=SCENARIO.headers())
        for _ in client.chat.completions.create(model="o4-mini", messages=PROMPT, stream=True, extra_headers=SCENARIO.headers()):
            pass
    finally:
        thinkmeter.uninstrument()
    found = points(reader)
    tokens = {p.attributes[sc.TOKEN_TYPE]: p for p in found[sc.METRIC_TOKEN_USAGE]}
    assert tokens["input"].count == 2 and tokens["input"].sum == 2 * SCENARIO.input_tokens
    assert tokens["output"].count == 2 and tokens["output"].sum == 2 * SCENARIO.output_tokens
    assert tokens["input"].attributes[sc.REQUEST_MODEL] == "o4-mini"
    assert sum(p.count for p in found[sc.METRIC_OPERATION_DURATION]) == 2
    assert sum(p.count for p in found[sc.METRIC_TIME_TO_FIRST_CHUNK]) == 1  # the streamed call only


CHILD = textwrap.dedent(
    """
    import json, sys
    import openai
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    import thinkmeter

    base_url, exporter = sys.argv[1], sys.argv[2]
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))  # the application's own
    thinkmeter.instrument(tracer_provider=TracerProvider(), exporter=exporter)
    client = openai.OpenAI(base_url=base_url, api_key="test", max_retries=0)
    client.chat.completions.create(model="o4-mini", messages=[{"role": "user", "content": "hi"}])
    thinkmeter.flush(5)  # metrics are recorded on thinkmeter's background thread
    data = reader.get_metrics_data()
    names = sorted(
        m.name for rm in (data.resource_metrics if data else ()) for sm in rm.scope_metrics for m in sm.metrics
        if sm.scope.name == "thinkmeter"
    )
    print(json.dumps(names), flush=True)
    """
)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(("exporter", "recorded"), [("none", False), ("otlp", True)])
def test_global_meter_provider_is_used_only_with_the_otlp_exporter(simulator, exporter: str, recorded: bool) -> None:
    # OTLP spans go to a closed loopback port, quickly given up: only the metrics matter here.
    env = {
        **os.environ,
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{closed_port()}",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
        "OTEL_BSP_EXPORT_TIMEOUT": "1000",
    }
    done = subprocess.run(
        [sys.executable, "-c", CHILD, simulator.base_url, exporter], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    names = json.loads(done.stdout.splitlines()[0])
    if recorded:
        assert names == sorted([sc.METRIC_TOKEN_USAGE, sc.METRIC_OPERATION_DURATION])
    else:
        assert names == []
