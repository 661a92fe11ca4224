"""Shared fixtures: ONE embedded store (chDB data directory) for the whole test session.

chDB opens one data directory per process, so every test in this session uses `store_settings.data_dir`
(also exported as THINKMETER_DATA_DIR, so code that calls Settings.from_env() lands there too). Tests
never truncate shared tables: they tag their rows with a unique ServiceName (`service_name` fixture) or
tenant and filter on it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from thinkmeter.config import Settings
from thinkmeter.export import ClickHouseSpanProcessor
from thinkmeter.segments import ingest_segments
from thinkmeter.store import store_session


@pytest.fixture(scope="session", autouse=True)
def store_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings for the session's embedded store (exporter "clickhouse", no server).

    Autouse, so THINKMETER_DATA_DIR points at it before any test runs.
    """
    data_dir: Path = tmp_path_factory.mktemp("thinkmeter-data")
    saved = {name: os.environ.get(name) for name in ("THINKMETER_DATA_DIR", "THINKMETER_CLICKHOUSE_URL")}
    os.environ["THINKMETER_DATA_DIR"] = str(data_dir)
    os.environ.pop("THINKMETER_CLICKHOUSE_URL", None)
    yield Settings(exporter="clickhouse", data_dir=data_dir, flush_interval_s=0.2)
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def store(store_settings: Settings) -> Iterator[Client]:
    """A clickhouse-connect client on the session store (schema applied), held for one test.

    While it is open other processes cannot open the store; exporters never need it (they write
    segments: `ingest` stores them).
    """
    with store_session(store_settings) as client:
        yield client


@pytest.fixture
def service_name() -> str:
    """A ServiceName no other test uses, to find this test's rows."""
    return f"test-{uuid.uuid4().hex[:12]}"


def ingest(settings: Settings) -> int:
    """What `thinkmeter serve` does every second: the segments written so far go into the store."""
    with store_session(settings) as client:
        return ingest_segments(client, settings.segments_dir)


TracedFactory = Callable[..., tuple[TracerProvider, ClickHouseSpanProcessor]]


def make_traced(settings: Settings, service_name: str) -> tuple[TracerProvider, ClickHouseSpanProcessor]:
    """A TracerProvider whose spans go through a ClickHouseSpanProcessor into the store of `settings`."""
    processor = ClickHouseSpanProcessor(settings)
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(processor)
    return provider, processor


@pytest.fixture
def traced(store_settings: Settings, service_name: str) -> Iterator[TracedFactory]:
    """traced(**setting_overrides) -> (provider, processor) on the session store; shut down after the test."""
    providers: list[TracerProvider] = []

    def factory(**overrides: object) -> tuple[TracerProvider, ClickHouseSpanProcessor]:
        provider, processor = make_traced(store_settings.model_copy(update=overrides), service_name)
        providers.append(provider)
        return provider, processor

    yield factory
    for provider in providers:
        provider.shutdown()


# A separate process that emits `count` LLM-call spans through a ClickHouseSpanProcessor on a data
# directory, force-flushes, shuts down and prints {"flushed": bool, "dropped": int}.
_EMITTER = """
import json, sys
from pathlib import Path
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from thinkmeter.config import Settings
from thinkmeter.export import ClickHouseSpanProcessor

data_dir, service, count, flush_timeout_ms = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
processor = ClickHouseSpanProcessor(Settings(data_dir=Path(data_dir), flush_interval_s=0.05, batch_size=50))
provider = TracerProvider(resource=Resource.create({"service.name": service}))
provider.add_span_processor(processor)
tracer = provider.get_tracer("thinkmeter")
for i in range(count):
    with tracer.start_as_current_span("chat m") as span:
        span.set_attributes({
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "m", "gen_ai.usage.output_tokens": i,
        })
flushed = processor.force_flush(flush_timeout_ms)
provider.shutdown()
print(json.dumps({"flushed": flushed, "dropped": processor.dropped_spans}))
"""


def start_span_emitter(data_dir: Path, service: str, count: int, flush_timeout_ms: int) -> subprocess.Popen[str]:
    """Start the emitter process; read its result with `finish_span_emitter`."""
    return subprocess.Popen(
        [sys.executable, "-c", _EMITTER, str(data_dir), service, str(count), str(flush_timeout_ms)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish_span_emitter(process: subprocess.Popen[str], timeout_s: float = 120) -> dict[str, object]:
    out, err = process.communicate(timeout=timeout_s)
    assert process.returncode == 0, f"span emitter failed:\n{err}"
    return json.loads(out.strip().splitlines()[-1])
