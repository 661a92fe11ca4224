"""`import thinkmeter` (the line every application runs, often only for `tags` or `task`) loads nothing
heavy: no OTel SDK (the OTel API only, which `task` needs for its context), pydantic, wrapt, LLM SDK,
collector, ClickHouse client or store code until instrument() or the CLI needs them. Checked in a
fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from thinkmeter.simulator import Scenario, start_simulator

HEAVY = (
    "opentelemetry.sdk",
    "pydantic",
    "wrapt",
    "openai",
    "anthropic",
    "clickhouse_connect",
    "chdb",
    "thinkmeter.collectors",
    "thinkmeter.config",
    "thinkmeter.export",
    "thinkmeter.store",
    "thinkmeter.instrumentation._telemetry",
)


def test_import_thinkmeter_loads_no_sdk_collector_or_store_code() -> None:
    code = (
        "import json, sys; import thinkmeter\n"
        "with thinkmeter.tags(tenant='acme'): pass\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    heavy = [m for m in loaded if any(m == h or m.startswith(h + ".") for h in HEAVY)]
    assert heavy == []


# The application imports its SDKs before instrument() or after it; either way each call is traced once.
PATCHED_ON_IMPORT = r"""
import json, sys
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
import thinkmeter

url, headers, order = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
if order == "before":
    import ollama, openai
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
thinkmeter.instrument(tracer_provider=provider, exporter="none")
loaded = [m for m in ("openai", "anthropic", "google.genai", "ollama", "httpx") if m in sys.modules]
import ollama, openai
messages = [{"role": "user", "content": "Why is the sky blue?"}]
ollama.chat.__self__._client.headers.update(headers)
ollama.chat(model="qwen3", messages=messages, think=True)
ollama.Client(host=url, headers=headers).generate(model="qwen3", prompt="Why?")
openai.OpenAI(base_url=url + "/v1", api_key="test", max_retries=0, default_headers=headers).chat.completions.create(model="o4-mini", messages=messages)
thinkmeter.flush()
spans = [(s.attributes["gen_ai.provider.name"], s.attributes["gen_ai.operation.name"]) for s in exporter.get_finished_spans()]
print(json.dumps({"loaded": loaded, "spans": spans}))
"""


@pytest.mark.parametrize("order", ["after", "before"])
def test_sdks_are_patched_when_the_application_imports_them(order: str) -> None:
    scenario = Scenario(input_tokens=30, reasoning_tokens=20, visible_tokens=10, prefill_s=0.0, thinking_s=0.0)
    with start_simulator(time_scale=0.01) as sim:
        env = {**os.environ, "OLLAMA_HOST": sim.url}
        run = subprocess.run([sys.executable, "-c", PATCHED_ON_IMPORT, sim.url, json.dumps(scenario.headers()), order],
                             capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    if order == "after":
        assert result["loaded"] == []  # instrument() imported no SDK (nor ollama's httpx)
    assert sorted(map(tuple, result["spans"])) == [("ollama", "chat"), ("ollama", "text_completion"), ("openai_compatible", "chat")]
