"""Zero-code: the real `opentelemetry-instrument` command loads thinkmeter through its
`opentelemetry_instrumentor` entry point, and the spans go where the OTEL_* settings send them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.simulated import sim  # noqa: F401  (pytest fixture)
from thinkmeter.schemas import semconv as sc
from thinkmeter.simulator import Scenario, Simulator

SCENARIO = Scenario(input_tokens=300, reasoning_tokens=64, visible_tokens=8, prefill_s=0.0)
# An application with no thinkmeter code in it.
APP = """
import os, openai
client = openai.OpenAI(base_url=os.environ["SIM_BASE_URL"], api_key="x", max_retries=0)
reply = client.chat.completions.create(
    model="o4-mini", messages=[{"role": "user", "content": "hi"}], extra_headers={os.environ["SIM_HEADER"]: os.environ["SIM_SCENARIO"]}
)
print("app done", reply.usage.completion_tokens)
"""
INSTRUMENT = Path(sys.executable).with_name("opentelemetry-instrument")


def _run(tmp_path: Path, sim: Simulator, **env: str) -> subprocess.CompletedProcess[str]:
    app = tmp_path / "app.py"
    app.write_text(APP)
    (header, scenario), = SCENARIO.headers().items()
    environ = {
        **os.environ,
        "SIM_BASE_URL": sim.base_url,
        "SIM_HEADER": header,
        "SIM_SCENARIO": scenario,
        "OTEL_SERVICE_NAME": "zero-code-app",
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        **env,
    }
    command = [str(INSTRUMENT), sys.executable, str(app)]
    result = subprocess.run(command, env=environ, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "app done" in result.stdout
    return result


def _spans(stdout: str) -> list[dict]:
    """The console exporter prints each span as an indented JSON object."""
    return [json.loads(block) for block in re.findall(r"^\{\n.*?\n\}$", stdout, flags=re.S | re.M)]


@pytest.mark.skipif(not INSTRUMENT.exists(), reason="opentelemetry-instrument is not installed (pip install opentelemetry-distro)")
def test_opentelemetry_instrument_picks_thinkmeter_up(tmp_path: Path, sim: Simulator) -> None:
    result = _run(tmp_path, sim)
    (span,) = _spans(result.stdout)
    attrs = span["attributes"]
    assert span["name"] == "chat o4-mini" and span["resource"]["attributes"]["service.name"] == "zero-code-app"
    assert attrs[sc.PROVIDER] == "openai_compatible" and attrs[sc.OUTPUT_TOKENS] == SCENARIO.output_tokens
    assert attrs[sc.REASONING_TOKENS] == SCENARIO.reasoning_tokens and attrs[sc.INPUT_TOKENS] == SCENARIO.input_tokens


@pytest.mark.skipif(not INSTRUMENT.exists(), reason="opentelemetry-instrument is not installed (pip install opentelemetry-distro)")
def test_disabled_instrumentations_leave_thinkmeter_out(tmp_path: Path, sim: Simulator) -> None:
    result = _run(tmp_path, sim, OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="thinkmeter")
    assert _spans(result.stdout) == []
