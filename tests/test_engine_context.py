"""A call to a self-hosted engine that a collector watches carries the engine's state at request start,
all the way into llm_calls: a loopback vLLM-style server serves both /metrics and the chat endpoint."""

from __future__ import annotations

import time

import openai
import pytest

import thinkmeter
from tests.conftest import make_traced
from tests.engine_servers import EngineServer, vllm_metrics
from thinkmeter.collectors.context import latest_engine_snapshot
from thinkmeter.config import Settings
from thinkmeter.store import query_rows

MODEL = "Qwen/Qwen3-8B"
COMPLETION = {
    "id": "chatcmpl-engine-1",
    "object": "chat.completion",
    "created": 1,
    "model": MODEL,
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "42"}, "finish_reason": "stop"}],
    "usage": {
        "prompt_tokens": 120,
        "completion_tokens": 900,
        "total_tokens": 1020,
        "completion_tokens_details": {"reasoning_tokens": 880},
    },
}


@pytest.mark.parametrize("configured_by", ["argument", "THINKMETER_COLLECT_ENGINES"])
def test_engine_snapshot_at_request_start_lands_in_llm_calls(
    store_settings: Settings, service_name: str, monkeypatch: pytest.MonkeyPatch, configured_by: str
) -> None:
    server = EngineServer()
    server.serve("/metrics", vllm_metrics(model=MODEL, running=3, waiting=1, kv_usage=0.4125))
    server.serve_json("/v1/chat/completions", COMPLETION)
    server.start()
    provider, processor = make_traced(store_settings, service_name)
    thinkmeter.uninstrument()
    if configured_by == "argument":
        options: dict[str, object] = {"engines": [server.url]}
    else:  # the README's promise: the environment configures instrument() as it does `thinkmeter collect`
        monkeypatch.setenv("THINKMETER_COLLECT_ENGINES", server.url)
        options = {}
    thinkmeter.instrument(
        tracer_provider=provider,
        exporter="none",
        providers={f"127.0.0.1:{server.port}": "vllm"},
        **options,
    )
    try:
        deadline = time.monotonic() + 10
        while latest_engine_snapshot("127.0.0.1", server.port) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "6 x 7?"}])
    finally:
        thinkmeter.uninstrument()
        server.stop()
    assert processor.force_flush(30_000)
    provider.shutdown()

    rows = query_rows(
        store_settings,
        "SELECT provider, engine, engine_kv_cache_usage, engine_requests_running, engine_requests_waiting,"
        " reasoning_tokens, visible_output_tokens FROM llm_calls WHERE ServiceName = {service:String}",
        {"service": service_name},
    )
    assert rows == [
        {
            "provider": "vllm",
            "engine": "vllm",
            "engine_kv_cache_usage": 0.4125,
            "engine_requests_running": 3,
            "engine_requests_waiting": 1,
            "reasoning_tokens": 880,
            "visible_output_tokens": 20,
        }
    ]
