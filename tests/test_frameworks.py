"""Frameworks on top of the SDKs (LangChain, the OpenAI Agents SDK, pydantic-ai): a call through each
is traced once, by the SDK patch underneath, with the tags in force; pydantic-ai's own GenAI spans,
stored beside thinkmeter's, are not counted as calls."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import thinkmeter
from tests.conftest import TracedFactory
from tests.instrumented import Spans, instrumented  # noqa: F401  (pytest fixture)
from tests.simulated import sim  # noqa: F401  (pytest fixture)
from thinkmeter.config import Settings
from thinkmeter.schemas import semconv as sc
from thinkmeter.segments import ingest_segments
from thinkmeter.store import store_session
from thinkmeter.simulator import Scenario, Simulator

SCENARIO = Scenario(input_tokens=400, cached_input_tokens=100, reasoning_tokens=300, visible_tokens=10, prefill_s=0.0)
TAGS = {"tenant": "acme", "feature": "framework-test"}


def assert_traced_once(spans: Spans, *, operation: str = "chat") -> None:
    attrs = spans.only_attributes()
    assert attrs[sc.OPERATION] == operation and attrs[sc.REQUEST_MODEL] == "o4-mini"
    assert attrs[sc.OUTPUT_TOKENS] == SCENARIO.output_tokens and attrs[sc.REASONING_TOKENS] == SCENARIO.reasoning_tokens
    assert attrs[sc.INPUT_TOKENS] == SCENARIO.input_tokens and attrs[sc.CACHE_READ_TOKENS] == SCENARIO.cached_input_tokens
    assert attrs["thinkmeter.tenant"] == "acme" and attrs["thinkmeter.feature"] == "framework-test"


@pytest.mark.parametrize("stream", [False, True], ids=["invoke", "stream"])
def test_langchain(instrumented: Spans, sim: Simulator, stream: bool) -> None:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model="o4-mini", base_url=sim.base_url, api_key="x", max_retries=0, default_headers=SCENARIO.headers())
    with thinkmeter.tags(**TAGS):
        if stream:
            assert "".join(chunk.content for chunk in llm.stream("Why is the sky blue?"))
        else:
            assert llm.invoke("Why is the sky blue?").content
    assert_traced_once(instrumented)


@pytest.fixture
def agents_sdk() -> Iterator[Any]:
    agents = pytest.importorskip("agents")
    agents.set_tracing_disabled(True)  # its own traces would go to OpenAI's servers (conftest also says so)
    yield agents


@pytest.mark.parametrize("api", ["responses", "chat"])
def test_openai_agents_sdk(instrumented: Spans, sim: Simulator, agents_sdk: Any, api: str) -> None:
    client = openai.AsyncOpenAI(base_url=sim.base_url, api_key="x", max_retries=0, default_headers=SCENARIO.headers())
    if api == "responses":
        model = agents_sdk.OpenAIResponsesModel(model="o4-mini", openai_client=client)
    else:
        model = agents_sdk.OpenAIChatCompletionsModel(model="o4-mini", openai_client=client)
    agent = agents_sdk.Agent(name="assistant", instructions="Answer briefly.", model=model)
    with thinkmeter.tags(**TAGS):
        result = agents_sdk.Runner.run_sync(agent, "Why is the sky blue?")
    assert result.final_output
    assert_traced_once(instrumented)


def test_pydantic_ai_with_its_own_genai_spans(
    sim: Simulator, traced: TracedFactory, store_settings: Settings, service_name: str
) -> None:
    from pydantic_ai import Agent
    from pydantic_ai.models.instrumented import InstrumentationSettings
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    provider, processor = traced()
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    thinkmeter.uninstrument()
    thinkmeter.instrument(tracer_provider=provider, exporter="none")
    try:
        client = openai.AsyncOpenAI(base_url=sim.base_url, api_key="x", max_retries=0, default_headers=SCENARIO.headers())
        model = OpenAIChatModel("o4-mini", provider=OpenAIProvider(openai_client=client))
        agent = Agent(model)
        agent.instrument = InstrumentationSettings(tracer_provider=provider)
        with thinkmeter.tags(**TAGS):
            assert agent.run_sync("Why is the sky blue?").output
    finally:
        thinkmeter.uninstrument()
    ours = [s for s in memory.get_finished_spans() if s.instrumentation_scope.name == "thinkmeter"]
    theirs = [s for s in memory.get_finished_spans() if s.instrumentation_scope.name != "thinkmeter" and s.attributes and sc.OPERATION in s.attributes]
    assert len(ours) == 1 and ours[0].attributes[sc.OUTPUT_TOKENS] == SCENARIO.output_tokens
    assert ours[0].attributes["thinkmeter.tenant"] == "acme"
    assert theirs, "pydantic-ai emitted no GenAI span of its own: the double-count case is not exercised"
    assert processor.force_flush(30_000)
    params = {"service": service_name}
    with store_session(store_settings) as store:
        ingest_segments(store, store_settings.segments_dir)  # as `thinkmeter serve` does
        stored = store.query("SELECT count() FROM otel_traces WHERE ServiceName = {service:String}", parameters=params)
        calls = store.query(
            "SELECT count(), sum(output_tokens) FROM llm_calls WHERE ServiceName = {service:String}", parameters=params
        ).result_rows[0]
    stored = stored.result_rows[0][0]
    assert stored > 1  # pydantic-ai's spans are stored too
    assert calls == (1, SCENARIO.output_tokens)
