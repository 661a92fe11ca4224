"""What a vLLM server reports in its reply: per-request `metrics` (--enable-per-request-metrics, field
names from vLLM's PerRequestTimingMetrics) as server-side timings, reasoning and cache counts in
`usage`. Replies come from a loopback server speaking vLLM's wire format, read by the real openai SDK."""

from __future__ import annotations

import json
from collections.abc import Iterator

import openai
import pytest

from tests.engine_servers import EngineServer
from tests.instrumented import Spans, _into_memory
from thinkmeter.schemas import semconv as sc

MODEL = "Qwen/Qwen3-8B"
USAGE = {
    "prompt_tokens": 1200,
    "completion_tokens": 900,
    "total_tokens": 2100,
    "prompt_tokens_details": {"cached_tokens": 1024, "created_cache_tokens": 160},
    "completion_tokens_details": {"reasoning_tokens": 860},
}
METRICS = {
    "time_to_first_token_ms": 84.0,
    "generation_time_ms": 7200.0,
    "queue_time_ms": 12.5,
    "mean_itl_ms": 8.0,
    "tokens_per_second": 122.5,
}
COMPLETION = {
    "id": "chatcmpl-vllm-1",
    "object": "chat.completion",
    "created": 1,
    "model": MODEL,
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "42", "reasoning": "..."}, "finish_reason": "stop"}],
    "usage": USAGE,
    "metrics": METRICS,
}


def _chunk(**fields: object) -> str:
    return "data: " + json.dumps({"id": "chatcmpl-vllm-2", "object": "chat.completion.chunk", "created": 1, "model": MODEL, **fields}) + "\n\n"


STREAM = (
    _chunk(choices=[{"index": 0, "delta": {"role": "assistant", "reasoning": "Six sevens."}, "finish_reason": None}])
    + _chunk(choices=[{"index": 0, "delta": {"content": "42"}, "finish_reason": "stop"}])
    # Only the final usage chunk carries the metrics.
    + _chunk(choices=[], usage=USAGE, metrics=METRICS)
    + "data: [DONE]\n\n"
)


@pytest.fixture
def vllm() -> Iterator[tuple[EngineServer, Spans]]:
    server = EngineServer()
    server.start()
    for spans in _into_memory(providers={f"127.0.0.1:{server.port}": "vllm"}):
        yield server, spans
    server.stop()


@pytest.mark.parametrize("stream", [False, True])
def test_vllm_per_request_metrics_and_usage_details_are_recorded(vllm: tuple[EngineServer, Spans], stream: bool) -> None:
    server, spans = vllm
    if stream:
        server.serve("/v1/chat/completions", STREAM, content_type="text/event-stream")
    else:
        server.serve_json("/v1/chat/completions", COMPLETION)
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
    reply = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "6 x 7?"}], stream=stream)
    if stream:
        list(reply)
    attributes = spans.only_attributes()
    assert attributes[sc.ENGINE] == "vllm"
    assert attributes[sc.INPUT_TOKENS] == 1200
    assert (attributes[sc.CACHE_READ_TOKENS], attributes[sc.CACHE_WRITE_TOKENS]) == (1024, 160)
    assert (attributes[sc.OUTPUT_TOKENS], attributes[sc.REASONING_TOKENS]) == (900, 860)
    assert attributes[sc.REASONING_SOURCE] == "reported"
    assert attributes[sc.SERVER_QUEUE_TIME] == pytest.approx(0.0125)
    assert attributes[sc.SERVER_TIME_TO_FIRST_TOKEN] == pytest.approx(0.084)
    assert attributes[sc.SERVER_DECODE_TIME] == pytest.approx(7.2)
    assert attributes[sc.SERVER_INTER_TOKEN_LATENCY] == pytest.approx(0.008)
    assert attributes[sc.SERVER_OUTPUT_TOKENS_PER_S] == 122.5
