"""Opt-in content capture: off by default; when on, redaction and the length limit apply before the span.

The real openai SDK talks to the loopback simulator; spans go to memory.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from thinkmeter.instrumentation._content import TRUNCATED, ContentCapture
from thinkmeter.schemas import semconv as sc

import thinkmeter
from thinkmeter.simulator import Scenario, Simulator, start_simulator

SCENARIO = Scenario(
    input_tokens=100,
    reasoning_tokens=50,
    visible_tokens=30,
    prefill_s=0.0,
    thinking_s=0.0,
    visible_tokens_per_s=10_000.0,
)
SECRET_PROMPT = [
    {"role": "system", "content": "You are terse."},
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "my card is 4111-1111-1111-1111"},
            {"type": "image_url", "image_url": {"url": "data:..."}},
        ],
    },
]


def mask_card(text: str) -> str:
    return text.replace("4111-1111-1111-1111", "[card]")


@pytest.fixture(scope="module")
def simulator() -> Iterator[Simulator]:
    with start_simulator(time_scale=0.01) as sim:
        yield sim


@pytest.fixture(scope="module")
def client(simulator: Simulator) -> openai.OpenAI:
    return openai.OpenAI(base_url=simulator.base_url, api_key="test", max_retries=0)


@pytest.fixture
def spans() -> Iterator[Any]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    thinkmeter.uninstrument()

    def start(**options: Any) -> InMemorySpanExporter:
        thinkmeter.instrument(tracer_provider=provider, exporter="none", **options)
        return exporter

    yield start
    thinkmeter.uninstrument()


def only_attributes(exporter: InMemorySpanExporter) -> dict[str, Any]:
    finished = exporter.get_finished_spans()
    assert len(finished) == 1
    return dict(finished[0].attributes or {})


def test_off_by_default(
    spans: Any, client: openai.OpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(
        "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", raising=False
    )
    exporter = spans()
    client.chat.completions.create(
        model="o4-mini", messages=SECRET_PROMPT, extra_headers=SCENARIO.headers()
    )
    attrs = only_attributes(exporter)
    assert sc.INPUT_MESSAGES not in attrs and sc.OUTPUT_MESSAGES not in attrs
    assert not any("4111" in str(v) for v in attrs.values())


def test_env_turns_it_on_and_redaction_runs_first(
    spans: Any, client: openai.OpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    exporter = spans(redact=mask_card)
    completion = client.chat.completions.create(
        model="o4-mini", messages=SECRET_PROMPT, extra_headers=SCENARIO.headers()
    )
    attrs = only_attributes(exporter)
    assert "4111" not in json.dumps(attrs)
    assert json.loads(attrs[sc.INPUT_MESSAGES]) == [
        {"role": "system", "parts": [{"type": "text", "content": "You are terse."}]},
        {
            "role": "user",
            "parts": [
                {"type": "text", "content": "my card is [card]"},
                {"type": "image_url"},
            ],
        },
    ]
    assert json.loads(attrs[sc.OUTPUT_MESSAGES]) == [
        {
            "role": "assistant",
            "parts": [
                {"type": "text", "content": completion.choices[0].message.content}
            ],
            "finish_reason": "stop",
        }
    ]


def test_stream_output_is_captured_and_cut_to_the_limit(
    spans: Any, client: openai.OpenAI
) -> None:
    exporter = spans(capture_content=True, content_max_chars=20)
    stream = client.chat.completions.create(
        model="o4-mini",
        messages=[{"role": "user", "content": "q" * 50}],
        stream=True,
        extra_headers=SCENARIO.headers(),
    )
    text = "".join(
        chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices
    )
    attrs = only_attributes(exporter)
    assert (
        json.loads(attrs[sc.INPUT_MESSAGES])[0]["parts"][0]["content"]
        == "q" * 20 + TRUNCATED
    )
    output = json.loads(attrs[sc.OUTPUT_MESSAGES])[0]["parts"][0]["content"]
    assert output == (text if len(text) <= 20 else text[:20] + TRUNCATED)


def test_messages_given_as_a_generator_reach_the_sdk_unread(
    spans: Any, client: openai.OpenAI, simulator: Simulator
) -> None:
    """The SDK takes any iterable of messages. Capture reads only lists and tuples: reading a
    generator would use it up, and the SDK would send no messages."""
    exporter = spans(capture_content=True)
    client.chat.completions.create(
        model="o4-mini",
        messages=(message for message in SECRET_PROMPT),
        extra_headers=SCENARIO.headers(),
    )
    assert simulator.replies[-1].ask.prompt == SECRET_PROMPT
    attrs = only_attributes(exporter)
    assert sc.INPUT_MESSAGES not in attrs
    assert attrs[sc.OUTPUT_TOKENS] == SCENARIO.output_tokens


def test_responses_capture(spans: Any, client: openai.OpenAI) -> None:
    exporter = spans(capture_content=True, redact=str.upper)
    response = client.responses.create(
        model="o4-mini",
        input="hello",
        instructions="be brief",
        extra_headers=SCENARIO.headers(),
    )
    attrs = only_attributes(exporter)
    assert json.loads(attrs[sc.INPUT_MESSAGES]) == [
        {"role": "system", "parts": [{"type": "text", "content": "BE BRIEF"}]},
        {"role": "user", "parts": [{"type": "text", "content": "HELLO"}]},
    ]
    output = json.loads(attrs[sc.OUTPUT_MESSAGES])
    assert output[0]["parts"][0]["content"] == response.output_text.upper()


def test_failing_redaction_drops_the_content_never_the_call(
    spans: Any, client: openai.OpenAI
) -> None:
    def broken(text: str) -> str:
        raise RuntimeError("redactor down")

    exporter = spans(capture_content=True, redact=broken)
    completion = client.chat.completions.create(
        model="o4-mini", messages=SECRET_PROMPT, extra_headers=SCENARIO.headers()
    )
    attrs = only_attributes(exporter)
    assert completion.choices[0].message.content
    assert (
        sc.INPUT_MESSAGES not in attrs and sc.OUTPUT_MESSAGES not in attrs
    )  # fail closed
    assert attrs[sc.OUTPUT_TOKENS] == SCENARIO.output_tokens


def test_budget_is_shared_by_all_texts_of_an_attribute() -> None:
    capture = ContentCapture(max_chars=10)
    messages = json.loads(
        capture.input_messages(
            [
                {"role": "user", "content": "abcdef"},
                {"role": "user", "content": "ghijkl"},
            ]
        )
    )
    assert [m["parts"][0]["content"] for m in messages] == [
        "abcdef",
        "ghij" + TRUNCATED,
    ]
    tool = json.loads(
        capture.input_messages(
            [{"role": "tool", "tool_call_id": "c1", "content": "result"}]
        )
    )
    assert tool == [
        {
            "role": "tool",
            "parts": [{"type": "tool_call_response", "id": "c1", "response": "result"}],
        }
    ]
