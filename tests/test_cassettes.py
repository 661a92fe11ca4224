"""Accuracy on real recorded provider traffic: every LLM call in ../shared/cassettes (OpenAI chat and
Responses, Anthropic, Gemini, DeepSeek, Groq, OpenRouter, Cerebras) is replayed over loopback through
the real SDK, in each way an application makes it (sync, async, stream helpers, raw responses, a client
created before instrument()), and its span is checked cell by cell against what the recorded body says
(tests/cassettes.py works that out without thinkmeter's parsers).

The recordings belong to other projects and are never copied into this repository; without them (a
clone without ../shared) the test skips.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest
from google import genai
from google.genai import types as genai_types

from tests.cassettes import CASSETTES, HOSTS, Interaction, ReplayServer, expected_cost, expected_reply, load_interactions
from tests.instrumented import Spans, _into_memory

if not (CASSETTES / "MANIFEST.json").exists():
    pytest.skip(f"no recorded traffic at {CASSETTES} (a clone without ../shared/cassettes)", allow_module_level=True)

INTERACTIONS = load_interactions()


def _modes(interaction: Interaction) -> list[str]:
    modes = ["sync", "async"]
    if interaction.sdk == "gemini":
        return modes
    if interaction.streamed:
        modes.append("stream_helper")
    else:
        modes += ["raw", "async_raw"]
    modes.append("client_before_instrument")
    return modes


CASES = [(interaction, mode) for interaction in INTERACTIONS for mode in _modes(interaction)]


class Clients:
    """One server per recorded host; sync and async clients of the SDK that speaks its protocol."""

    def __init__(self) -> None:
        self.servers = {host: ReplayServer() for host in HOSTS}
        self.providers = {f"127.0.0.1:{server.port}": HOSTS[host][0] for host, server in self.servers.items()}
        self._gemini: list[Any] = []  # the aio side closes its transport when its client is collected

    def make(self, interaction: Interaction, is_async: bool) -> Any:
        url = f"http://127.0.0.1:{self.servers[interaction.host].port}{base_path(interaction)}"
        if interaction.sdk == "openai":
            return (openai.AsyncOpenAI if is_async else openai.OpenAI)(base_url=url, api_key="x", max_retries=0)
        if interaction.sdk == "anthropic":
            return (anthropic.AsyncAnthropic if is_async else anthropic.Anthropic)(base_url=url, api_key="x", max_retries=0)
        options = genai_types.HttpOptions(base_url=url + "/", api_version=interaction.path.split("/")[1])
        client = genai.Client(api_key="x", http_options=options)
        self._gemini.append(client)
        return client.aio if is_async else client


def base_path(interaction: Interaction) -> str:
    """The API root the SDK was pointed at: the recorded path less the operation's own path."""
    for operation in ("/chat/completions", "/responses", "/v1/messages"):
        if interaction.path.endswith(operation):
            return interaction.path[: -len(operation)]
    return ""


@pytest.fixture(scope="module")
def clients() -> Iterator[Clients]:
    made = Clients()
    yield made
    for server in made.servers.values():
        server.stop()


@pytest.fixture(scope="module")
def early(clients: Clients) -> dict[tuple[str, str], Any]:
    """Clients made, and their raw-response wrappers cached, before instrument() (as an app that called
    instrument() after its first LangChain call has)."""
    made = {}
    for interaction in INTERACTIONS:
        key = (interaction.host, base_path(interaction))
        if interaction.sdk == "gemini" or key in made:
            continue
        client = clients.make(interaction, False)
        for resource in (client.messages,) if interaction.sdk == "anthropic" else (client.chat.completions, client.responses):
            assert resource.with_raw_response is not None
        made[key] = client
    return made


@pytest.fixture(scope="module")
def spans(clients: Clients, early: dict[tuple[str, str], Any]) -> Iterator[Spans]:
    yield from _into_memory(providers=clients.providers)


# --------------------------------------------------------------------------------- the SDK calls


def _split(method: Any, body: dict[str, Any], drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """The recorded body as keyword arguments of an SDK method; what it does not name goes as extra_body."""
    names = set(inspect.signature(method).parameters)
    known = {k: v for k, v in body.items() if k in names and k not in drop}
    extra = {k: v for k, v in body.items() if k not in names and k not in drop}
    return {**known, "extra_body": extra} if extra else known


def _resource(client: Any, interaction: Interaction) -> Any:
    if interaction.sdk == "anthropic":
        return client.messages
    return client.responses if interaction.api == "responses" else client.chat.completions


def _gemini_call(client: Any, interaction: Interaction, is_async: bool) -> Any:
    body = interaction.request
    config = dict(body.get("generationConfig") or {})
    for key in ("systemInstruction", "tools", "toolConfig", "safetySettings", "cachedContent", "labels"):
        if key in body:
            config[key] = body[key]
    model = interaction.path.split("/models/")[1].split(":")[0]
    models = client.models
    method = models.generate_content_stream if interaction.streamed else models.generate_content
    return method(model=model, contents=body.get("contents"), config=genai_types.GenerateContentConfig.model_validate(config))


def _consume(result: Any) -> None:
    if hasattr(result, "__iter__") and not isinstance(result, (dict, str, bytes)) and not hasattr(result, "model_dump"):
        for _ in result:
            pass


async def _aconsume(result: Any) -> None:
    if inspect.isawaitable(result):
        result = await result
    if hasattr(result, "__aiter__"):
        async for _ in result:
            pass


def _stream_helper(resource: Any, interaction: Interaction) -> None:
    body = interaction.request
    with resource.stream(**_split(resource.stream, body, drop=("stream",))) as stream:
        for _ in stream:
            pass


def call(clients: Clients, early: dict[tuple[str, str], Any], interaction: Interaction, mode: str) -> None:
    body = interaction.request
    if interaction.sdk == "gemini":
        if mode == "async":
            asyncio.run(_aconsume(_gemini_call(clients.make(interaction, True), interaction, True)))
        else:
            _consume(_gemini_call(clients.make(interaction, False), interaction, False))
        return
    if mode in ("async", "async_raw"):

        async def run() -> None:
            resource = _resource(clients.make(interaction, True), interaction)
            if mode == "async_raw":
                raw = await resource.with_raw_response.create(**_split(resource.create, body))
                parsed = raw.parse()  # a coroutine in anthropic; openai's raw responses parse synchronously
                if inspect.isawaitable(parsed):
                    await parsed
            else:
                await _aconsume(resource.create(**_split(resource.create, body)))

        asyncio.run(run())
        return
    client = early[(interaction.host, base_path(interaction))] if mode == "client_before_instrument" else clients.make(interaction, False)
    resource = _resource(client, interaction)
    if mode == "stream_helper":
        _stream_helper(resource, interaction)
    elif mode == "raw" or (mode == "client_before_instrument" and not interaction.streamed):
        resource.with_raw_response.create(**_split(resource.create, body)).parse()
    else:
        _consume(resource.create(**_split(resource.create, body)))


# ----------------------------------------------------------------------------------------- the test


def _request_model(interaction: Interaction) -> str | None:
    if interaction.sdk == "gemini":
        return interaction.path.split("/models/")[1].split(":")[0]
    return interaction.request.get("model")


@pytest.mark.parametrize(("interaction", "mode"), CASES, ids=[f"{i.id}-{m}" for i, m in CASES])
def test_recorded_reply_is_accounted_exactly(
    clients: Clients, early: dict[tuple[str, str], Any], spans: Spans, interaction: Interaction, mode: str
) -> None:
    server = clients.servers[interaction.host]
    server.expect(interaction)
    spans.clear()
    try:
        call(clients, early, interaction, mode)
    except Exception as error:  # the provider's error reply (4xx, a failure mid-stream) raised by the SDK
        assert expected_reply(interaction).error, f"the SDK raised {error!r} on a successful recorded reply"
    assert server.paths == [interaction.path], "the SDK did not send the recorded request"
    attributes = spans.only_attributes()
    expected = expected_reply(interaction)

    if expected.error:
        assert "error.type" in attributes
        return
    expected.attributes["gen_ai.request.model"] = _request_model(interaction)
    expected.attributes["gen_ai.request.stream"] = interaction.streamed
    wrong = {
        name: (attributes.get(name), value) for name, value in expected.attributes.items() if attributes.get(name) != value
    }
    for name in expected.unreported:  # never claimed as reported when the body does not report it
        if name == "gen_ai.usage.reasoning.output_tokens" and attributes.get("thinkmeter.usage.reasoning.source") == "reported":
            wrong[name] = (attributes.get(name), "not reported")
    cost = expected_cost(expected, interaction.provider, _request_model(interaction))
    if cost is None:
        if "gen_ai.usage.output_tokens" in attributes:
            wrong_cost = attributes.get("thinkmeter.cost.source") != "unknown_price" or "thinkmeter.cost.usd" in attributes
            if wrong_cost:
                wrong["thinkmeter.cost.usd"] = (attributes.get("thinkmeter.cost.usd"), None)
    elif attributes.get("thinkmeter.cost.usd") != pytest.approx(cost, rel=1e-9, abs=1e-15):
        wrong["thinkmeter.cost.usd"] = (attributes.get("thinkmeter.cost.usd"), cost)
    assert wrong == {}, f"span (got, recorded) differ for {interaction.cassette}#{interaction.index} ({mode})"
