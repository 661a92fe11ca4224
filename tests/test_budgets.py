"""Budgets that act, against the loopback simulators in each wire format: the caps a class injects (the
request body the server got), streams cut off past a cap (the server sees the connection closed, the
caller gets BudgetExceeded after at most one extra chunk), observe mode, tenant windows, bad policies."""

from __future__ import annotations

import asyncio
import gc
import inspect
import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from google import genai
from google.genai import types
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import thinkmeter
from tests.instrumented import Spans
from thinkmeter.budgets.windows import FILE_NAME, TenantWindowPublisher
from thinkmeter.published import write_atomically
from thinkmeter.cli import main as cli_main
from thinkmeter.config import Settings
from thinkmeter.schemas import semconv as sc
from thinkmeter.simulator import Scenario, Simulator, start_simulator
from thinkmeter.simulator.scenario import reasoning_words
from thinkmeter.store import query_rows

CAP = 40  # reasoning tokens of the "lookup" class in the runaway tests
MESSAGES = [{"role": "user", "content": "What is 2 + 2?"}]
# A runaway: 3,000 reasoning tokens over 30 simulated seconds (0.3 s of wall time at time_scale 0.01).
RUNAWAY = Scenario(input_tokens=200, reasoning_tokens=3000, reasoning_text="raw", thinking_s=30, visible_tokens=10)
HIDDEN_RUNAWAY = RUNAWAY.model_copy(update={"reasoning_text": "hidden", "thinking_s": 200})


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with start_simulator(time_scale=0.01, reasoning_field="reasoning_content") as simulator:
        yield simulator


Budgeted = Callable[..., Spans]


@pytest.fixture
def budgeted(tmp_path: Path) -> Iterator[Budgeted]:
    """budgeted(policy_yaml, **instrument options) -> Spans: thinkmeter with that policy, spans in memory."""

    def start(policy: str, **options: Any) -> Spans:
        path = tmp_path / "budgets.yaml"
        path.write_text(policy)
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        thinkmeter.uninstrument()
        assert thinkmeter.instrument(tracer_provider=provider, exporter="none", budgets=path, **options)
        return Spans(exporter)

    yield start
    thinkmeter.uninstrument()


LOOKUP = f"task_classes:\n  lookup: {{max_reasoning_tokens: {CAP}, reasoning_effort: low}}\n"


def _openai(sim: Simulator) -> openai.OpenAI:
    return openai.OpenAI(base_url=sim.base_url, api_key="x", max_retries=0)


def _anthropic(sim: Simulator) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=sim.url, api_key="x", max_retries=0)


def _gemini(sim: Simulator) -> genai.Client:
    return genai.Client(api_key="x", http_options=types.HttpOptions(base_url=sim.url))


def _closed_by_client(sim: Simulator, reply_id: str | None = None) -> Any:
    """The reply, once the server has seen the client close its connection (within 5 s)."""
    deadline = time.monotonic() + 5
    while True:
        reply = sim.reply(reply_id) if reply_id else sim.replies[-1]
        if reply is not None and reply.outcome == "client_closed":
            return reply
        assert time.monotonic() < deadline, f"the server never saw the connection closed: {reply and reply.outcome}"
        time.sleep(0.02)


def _cut_at(cap: int) -> int:
    """Which reasoning delta passes the cap, worked out here from the rule the meter documents: every
    delta is at least one token, and text is 4 characters a token, whichever is more."""
    chars = 0
    for n, word in enumerate(reasoning_words(RUNAWAY.reasoning_tokens), start=1):
        chars += len(word)
        if max(n, math.ceil(chars / 4)) > cap:
            return n
    raise AssertionError("the runaway never passes the cap")


# ------------------------------------------------------------------------------------------- the policy


ISSUE_POLICY = """task_classes:            # matched against thinkmeter.tags(task_class=...)
  lookup:  {max_reasoning_tokens: 1024, max_cost_usd: 0.02, max_thinking_s: 15}
  math:    {max_reasoning_tokens: 16000, max_cost_usd: 0.50}
default:   {max_cost_usd: 2.00}
tenants:                 # windows over what the store holds
  acme:    {daily_usd: 50, daily_reasoning_tokens: 20000000}
mode: enforce            # or "observe": record what would have happened, never change a call
"""


def test_check_prints_the_effective_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "budgets.yaml"
    path.write_text(ISSUE_POLICY)
    assert cli_main(["budgets", "check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "valid; mode enforce" in out
    assert "task_classes.lookup (budgets.yaml:2)" in out
    assert "OpenAI chat max_completion_tokens / Responses max_output_tokens / vLLM, SGLang max_tokens = 5120" in out
    assert "Anthropic thinking = enabled, budget_tokens 1024" in out
    assert "Gemini 2.5 thinking_config.thinking_budget = 16000" in out
    assert "cut past max_thinking_s = 15" in out
    assert "tenants.acme (budgets.yaml:6): daily_usd = 50.0, daily_reasoning_tokens = 20000000" in out


def test_json_policy_is_read_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "budgets.json"
    path.write_text(json.dumps({"task_classes": {"math": {"max_reasoning_tokens": 500}}, "mode": "observe"}))
    assert cli_main(["budgets", "check", str(path)]) == 0
    assert "valid; mode observe" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("task_classes:\n  lookup: {max_reasoning_tokns: 10}\n", "budgets.yaml:2: task_classes.lookup.max_reasoning_tokns: unknown field"),
        ("task_classes:\n  lookup:\n    max_cost_usd: -1\n", "budgets.yaml:3: task_classes.lookup.max_cost_usd: Input should be greater than 0"),
        ("mode: enforc\n", "budgets.yaml:1: mode: input should be 'enforce' or 'observe'"),
        ("tenant_window: soon\n", "budgets.yaml:1: tenant_window: Value error, window 'soon' is not like 30m, 24h or 7d"),
        ("task_classes:\n  lookup: {max_reasoning_tokens: 10\n", "budgets.yaml:3: not valid YAML or JSON"),
        ("- just\n- a list\n", "expected a mapping with task_classes / default / tenants / mode"),
    ],
)
def test_malformed_policy_names_file_line_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    path = tmp_path / "budgets.yaml"
    path.write_text(text)
    assert cli_main(["budgets", "check", str(path)]) == 1
    assert expected in capsys.readouterr().err


def test_malformed_policy_leaves_the_app_running_untraced(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "budgets.yaml"
    path.write_text("task_classes:\n  lookup: {max_reasoning_tokns: 10}\n")
    thinkmeter.uninstrument()
    with caplog.at_level(logging.ERROR, logger="thinkmeter"):
        assert thinkmeter.instrument(exporter="none", budgets=path) == []
    assert "budgets.yaml:2: task_classes.lookup.max_reasoning_tokns: unknown field" in caplog.text


def test_policy_from_the_environment(budgeted: Budgeted, sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "env-budgets.yaml"
    path.write_text(LOOKUP)
    monkeypatch.setenv("THINKMETER_BUDGETS", str(path))
    thinkmeter.uninstrument()
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    thinkmeter.instrument(tracer_provider=provider, exporter="none")
    with thinkmeter.tags(task_class="lookup"):
        _openai(sim).chat.completions.create(model="o4-mini", messages=MESSAGES, extra_headers=Scenario().headers())
    assert sim.replies[-1].request_body["max_tokens"] == CAP + 4096


# ----------------------------------------------------------------------------------------- injection


@pytest.mark.parametrize(
    ("provider", "knob"), [("openai", "max_completion_tokens"), ("vllm", "max_tokens"), ("sglang", "max_tokens")]
)
def test_chat_gets_the_output_cap_in_its_own_knob(budgeted: Budgeted, sim: Simulator, provider: str, knob: str) -> None:
    spans = budgeted(LOOKUP, providers={"127.0.0.1": provider})
    with thinkmeter.tags(task_class="lookup"):
        _openai(sim).chat.completions.create(model="o4-mini", messages=MESSAGES, extra_headers=Scenario().headers())
    body = sim.replies[-1].request_body
    assert body[knob] == CAP + 4096
    assert {"max_tokens", "max_completion_tokens"} & set(body) == {knob}
    assert body["reasoning_effort"] == "low"
    attrs = spans.only_attributes()
    assert attrs[sc.BUDGET_INJECTED] == (f"{knob}={CAP + 4096}", "reasoning_effort=low")
    assert attrs[sc.REQUEST_MAX_TOKENS] == CAP + 4096
    assert attrs[sc.REQUEST_REASONING_LEVEL] == "low"


def test_callers_own_settings_win(budgeted: Budgeted, sim: Simulator) -> None:
    spans = budgeted(LOOKUP, providers={"127.0.0.1": "openai"})
    with thinkmeter.tags(task_class="lookup"):
        _openai(sim).chat.completions.create(
            model="o4-mini", messages=MESSAGES, max_tokens=77, reasoning_effort="high", extra_headers=Scenario().headers()
        )
    body = sim.replies[-1].request_body
    assert body["max_tokens"] == 77 and "max_completion_tokens" not in body
    assert body["reasoning_effort"] == "high"
    assert sc.BUDGET_INJECTED not in spans.only_attributes()


def test_calls_of_other_classes_are_left_alone(budgeted: Budgeted, sim: Simulator) -> None:
    spans = budgeted(LOOKUP)
    with thinkmeter.tags(task_class="essay"):
        _openai(sim).chat.completions.create(model="o4-mini", messages=MESSAGES, extra_headers=Scenario().headers())
    _openai(sim).chat.completions.create(model="o4-mini", messages=MESSAGES, extra_headers=Scenario().headers())
    assert all("max_tokens" not in r.request_body and "reasoning_effort" not in r.request_body for r in sim.replies[-2:])
    assert all(sc.BUDGET_INJECTED not in (s.attributes or {}) for s in spans.all())


def test_responses_gets_max_output_tokens_and_effort(budgeted: Budgeted, sim: Simulator) -> None:
    spans = budgeted(LOOKUP)
    with thinkmeter.tags(task_class="lookup"):
        _openai(sim).responses.create(
            model="o4-mini", input="hi", reasoning={"summary": "auto"}, extra_headers=Scenario().headers()
        )
    body = sim.replies[-1].request_body
    assert body["max_output_tokens"] == CAP + 4096
    assert body["reasoning"] == {"summary": "auto", "effort": "low"}
    assert spans.only_attributes()[sc.BUDGET_INJECTED] == (f"max_output_tokens={CAP + 4096}", "reasoning.effort=low")


@pytest.mark.parametrize("helper", [False, True])
def test_anthropic_gets_a_thinking_budget_and_room_above_it(budgeted: Budgeted, sim: Simulator, helper: bool) -> None:
    spans = budgeted("task_classes:\n  math: {max_reasoning_tokens: 2000}\n")
    client = _anthropic(sim)
    kwargs = {"model": "claude-sonnet-4-5", "max_tokens": 500, "messages": MESSAGES, "extra_headers": Scenario().headers()}
    with thinkmeter.tags(task_class="math"):
        if helper:
            with client.messages.stream(**kwargs) as stream:
                stream.get_final_message()
        else:
            client.messages.create(**kwargs)
    body = sim.replies[-1].request_body
    # The caller's 500 stays the room for the answer, above the thinking budget.
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2000}
    assert body["max_tokens"] == 2500
    attrs = spans.only_attributes()
    assert attrs[sc.BUDGET_INJECTED] == ("thinking.budget_tokens=2000", "max_tokens=2500")
    assert attrs[sc.REQUEST_THINKING_BUDGET] == 2000 and attrs[sc.REQUEST_MAX_TOKENS] == 2500


@pytest.mark.parametrize(
    "own", [{"thinking": {"type": "disabled"}}, {"thinking": {"type": "enabled", "budget_tokens": 9000}}, {"temperature": 0.2}]
)
def test_anthropic_callers_thinking_or_temperature_win(budgeted: Budgeted, sim: Simulator, own: dict[str, Any]) -> None:
    if "temperature" in own and "temperature" not in inspect.signature(anthropic.resources.Messages.create).parameters:
        pytest.skip("this anthropic SDK has no temperature parameter (2.x dropped it)")
    spans = budgeted("task_classes:\n  math: {max_reasoning_tokens: 2000}\n")
    with thinkmeter.tags(task_class="math"):
        _anthropic(sim).messages.create(
            model="claude-sonnet-4-5", max_tokens=10000, messages=MESSAGES, extra_headers=Scenario().headers(), **own
        )
    body = sim.replies[-1].request_body
    assert body.get("thinking") == own.get("thinking") and body["max_tokens"] == 10000
    assert sc.BUDGET_INJECTED not in spans.only_attributes()


@pytest.mark.parametrize(
    ("model", "expected", "knob"),
    [
        ("gemini-2.5-flash", {"thinkingBudget": CAP}, f"thinking_config.thinking_budget={CAP}"),
        ("gemini-3-pro-preview", {"thinkingLevel": "LOW"}, "thinking_config.thinking_level=low"),
    ],
)
@pytest.mark.parametrize("as_dict", [False, True])
def test_gemini_gets_a_budget_or_a_level(
    budgeted: Budgeted, sim: Simulator, model: str, expected: dict[str, Any], knob: str, as_dict: bool
) -> None:
    spans = budgeted(f"task_classes:\n  lookup: {{max_reasoning_tokens: {CAP}}}\n")
    headers = types.HttpOptions(headers=Scenario(reasoning_tokens=500).headers())
    config: Any = {"thinking_config": {"include_thoughts": True}, "http_options": headers}
    if not as_dict:
        config = types.GenerateContentConfig(thinking_config=types.ThinkingConfig(include_thoughts=True), http_options=headers)
    before = config.model_dump() if not as_dict else json.dumps(config, default=str)
    client = _gemini(sim)  # held: a collected client closes its connections
    with thinkmeter.tags(task_class="lookup"):
        client.models.generate_content(model=model, contents="hi", config=config)
    # Proto JSON takes either spelling; google-genai 3.x sends snake_case.
    thinking = {k.replace("_", "").lower(): v for k, v in sim.replies[-1].request_body["generationConfig"]["thinkingConfig"].items()}
    assert thinking == {"includethoughts": True, **{k.lower(): v for k, v in expected.items()}}
    assert (config.model_dump() if not as_dict else json.dumps(config, default=str)) == before  # the caller's config is untouched
    assert spans.only_attributes()[sc.BUDGET_INJECTED] == (knob,)
    if model.startswith("gemini-2.5"):  # the simulated model keeps to the budget it was given
        assert spans.only_attributes()[sc.REASONING_TOKENS] == CAP


# ------------------------------------------------------------------------------------------- cut-off


def _assert_cut_span(spans: Spans, line: str, source: str, reached: float) -> dict[str, Any]:
    gc.collect()
    (span,) = spans.all()  # ended once
    attrs = dict(span.attributes or {})
    assert attrs[sc.BUDGET_CUT] is True and sc.BUDGET_WOULD_CUT not in attrs
    assert attrs[sc.BUDGET_LINE] == line
    assert attrs[sc.BUDGET_REACHED] == reached
    assert attrs[sc.REASONING_SOURCE] == source
    assert attrs[sc.REASONING_TOKENS] == reached if "reasoning" in line else True
    assert sc.ERROR_TYPE not in attrs
    return attrs


def _assert_exception(error: thinkmeter.BudgetExceeded, line: str, cap: float, reached: float) -> None:
    assert isinstance(error, RuntimeError)
    assert error.line == line and error.cap == cap and error.reached == reached and error.cut
    assert error.location == "budgets.yaml:2"
    assert str(error).startswith(f"thinkmeter budget {line} = {cap:g} (budgets.yaml:2) reached: {reached:g} ")


def test_chat_stream_is_cut_past_its_reasoning_cap(budgeted: Budgeted, sim: Simulator) -> None:
    spans = budgeted(LOOKUP, providers={"127.0.0.1": "vllm"})
    received = 0
    with thinkmeter.tags(task_class="lookup"), pytest.raises(thinkmeter.BudgetExceeded) as raised:
        for _ in _openai(sim).chat.completions.create(model="qwen3", messages=MESSAGES, stream=True, extra_headers=RUNAWAY.headers()):
            received += 1
    cut_at = _cut_at(CAP)
    # The role chunk, then the reasoning deltas within the cap: the one that passed it is not handed out.
    assert received <= 1 + cut_at
    assert received >= cut_at
    reply = _closed_by_client(sim)
    assert reply.client_closed_s < RUNAWAY.first_visible_s * sim.time_scale  # long before the answer would come
    line = "task_classes.lookup.max_reasoning_tokens"
    reached = max(cut_at, math.ceil(sum(len(w) for w in list(reasoning_words(cut_at))) / 4))
    _assert_exception(raised.value, line, CAP, reached)
    attrs = _assert_cut_span(spans, line, "estimated", reached)
    assert attrs[sc.OUTPUT_TOKENS] == reached and attrs[sc.OUTPUT_SOURCE] == "estimated"


def test_async_chat_stream_is_cut_past_its_reasoning_cap(budgeted: Budgeted, sim: Simulator) -> None:
    spans = budgeted(LOOKUP, providers={"127.0.0.1": "vllm"})

    async def run() -> int:
        client = openai.AsyncOpenAI(base_url=sim.base_url, api_key="x", max_retries=0)
        received = 0
        with thinkmeter.tags(task_class="lookup"):
            stream = await client.chat.completions.create(model="qwen3", messages=MESSAGES, stream=True, extra_headers=RUNAWAY.headers())
            async with stream:
                with pytest.raises(thinkmeter.BudgetExceeded):
                    async for _ in stream:
                        received += 1
        await client.close()
        return received

    received = asyncio.run(run())
    assert _cut_at(CAP) <= received <= 1 + _cut_at(CAP)
    _closed_by_client(sim)
    _assert_cut_span(spans, "task_classes.lookup.max_reasoning_tokens", "estimated", spans.all()[0].attributes[sc.BUDGET_REACHED])


def test_with_block_and_next_behave_under_a_cut(budgeted: Budgeted, sim: Simulator) -> None:
    spans = budgeted(LOOKUP, providers={"127.0.0.1": "vllm"})
    with thinkmeter.tags(task_class="lookup"):
        stream = _openai(sim).chat.completions.create(model="qwen3", messages=MESSAGES, stream=True, extra_headers=RUNAWAY.headers())
        assert isinstance(stream, openai.Stream)
        with pytest.raises(thinkmeter.BudgetExceeded), stream:
            while True:
                next(stream)
    _closed_by_client(sim)
    assert len(spans.all()) == 1


def test_early_break_under_the_cap_is_no_cut(budgeted: Budgeted, sim: Simulator) -> None:
    spans = budgeted(LOOKUP, providers={"127.0.0.1": "vllm"})
    with thinkmeter.tags(task_class="lookup"):
        with _openai(sim).chat.completions.create(model="qwen3", messages=MESSAGES, stream=True, extra_headers=RUNAWAY.headers()) as stream:
            for index, _ in enumerate(stream):
                if index == 3:
                    break
    _closed_by_client(sim)
    attrs = spans.only_attributes()
    assert sc.BUDGET_CUT not in attrs and sc.BUDGET_LINE not in attrs


@pytest.mark.parametrize("helper", [False, True])
def test_anthropic_thinking_stream_is_cut(budgeted: Budgeted, sim: Simulator, helper: bool) -> None:
    spans = budgeted(LOOKUP)
    # The caller's own thinking budget wins over the class's, so the stream itself must be cut.
    kwargs = {
        "model": "claude-sonnet-4-5", "max_tokens": 8000, "messages": MESSAGES,
        "thinking": {"type": "enabled", "budget_tokens": 5000}, "extra_headers": RUNAWAY.headers(),
    }  # fmt: skip
    events: list[str] = []
    client = _anthropic(sim)
    with thinkmeter.tags(task_class="lookup"), pytest.raises(thinkmeter.BudgetExceeded):
        if helper:
            with client.messages.stream(**kwargs) as stream:
                for event in stream:
                    events.append(event.type)
        else:
            for event in client.messages.create(stream=True, **kwargs):
                events.append(event.type)
    thinking_deltas = events.count("content_block_delta")
    assert thinking_deltas <= _cut_at(CAP)
    _closed_by_client(sim)
    attrs = spans.only_attributes() if not helper else _assert_cut_span(spans, "task_classes.lookup.max_reasoning_tokens", "estimated", _cut_at_anthropic())
    assert attrs[sc.BUDGET_CUT] is True
    assert attrs[sc.INPUT_TOKENS] == RUNAWAY.input_tokens  # message_start reported it before the cut
    assert attrs[sc.BUDGET_CUT_COST_USD] == attrs[sc.COST_USD]


def _cut_at_anthropic() -> int:
    chars = 0
    for n, word in enumerate(reasoning_words(RUNAWAY.reasoning_tokens), start=1):
        chars += len(word)
        if max(n, math.ceil(chars / 4)) > CAP:
            return max(n, math.ceil(chars / 4))
    raise AssertionError


def test_async_anthropic_stream_helper_is_cut(budgeted: Budgeted, sim: Simulator) -> None:
    spans = budgeted(LOOKUP)

    async def run() -> None:
        client = anthropic.AsyncAnthropic(base_url=sim.url, api_key="x", max_retries=0)
        with thinkmeter.tags(task_class="lookup"):
            with pytest.raises(thinkmeter.BudgetExceeded):
                async with client.messages.stream(
                    model="claude-sonnet-4-5", max_tokens=8000, messages=MESSAGES,
                    thinking={"type": "enabled", "budget_tokens": 5000}, extra_headers=RUNAWAY.headers(),
                ) as stream:  # fmt: skip
                    async for _ in stream:
                        pass
        await client.close()

    asyncio.run(run())
    _closed_by_client(sim)
    _assert_cut_span(spans, "task_classes.lookup.max_reasoning_tokens", "estimated", _cut_at_anthropic())


def test_gemini_stream_is_cut_on_reported_thoughts(budgeted: Budgeted, sim: Simulator) -> None:
    spans = budgeted(LOOKUP)
    config = types.GenerateContentConfig(
        thinking_config=types.ThinkingConfig(include_thoughts=True, thinking_budget=5000),  # the caller's, so no injection
        http_options=types.HttpOptions(headers=RUNAWAY.headers()),
    )
    received = 0
    client = _gemini(sim)
    with thinkmeter.tags(task_class="lookup"), pytest.raises(thinkmeter.BudgetExceeded) as raised:
        for _ in client.models.generate_content_stream(model="gemini-2.5-flash", contents="hi", config=config):
            received += 1
    # Every thought part carries the running count: the part with CAP + 1 thoughts passes the cap.
    assert received == CAP
    assert raised.value.source == "reported" and raised.value.reached == CAP + 1
    _closed_by_client(sim)
    attrs = _assert_cut_span(spans, "task_classes.lookup.max_reasoning_tokens", "reported", CAP + 1)
    assert attrs[sc.INPUT_TOKENS] == RUNAWAY.input_tokens


def test_hidden_reasoning_is_cut_at_its_thinking_time(budgeted: Budgeted, sim: Simulator) -> None:
    """OpenAI shows nothing while it thinks: the watchdog closes the connection at max_thinking_s."""
    spans = budgeted("task_classes:\n  lookup: {max_thinking_s: 0.3}\n")
    started = time.monotonic()
    with thinkmeter.tags(task_class="lookup"), pytest.raises(thinkmeter.BudgetExceeded) as raised:
        for _ in _openai(sim).responses.create(model="o4-mini", input="hi", stream=True, extra_headers=HIDDEN_RUNAWAY.headers()):
            pass
    waited = time.monotonic() - started
    assert 0.3 <= waited < HIDDEN_RUNAWAY.first_visible_s * sim.time_scale
    assert raised.value.line == "task_classes.lookup.max_thinking_s" and raised.value.source == "measured"
    assert raised.value.reached >= 0.3
    reply = _closed_by_client(sim)
    assert reply.client_closed_s < HIDDEN_RUNAWAY.first_visible_s * sim.time_scale
    gc.collect()
    (span,) = spans.all()
    assert span.attributes[sc.BUDGET_CUT] is True and span.attributes[sc.BUDGET_CAP] == 0.3


def test_async_hidden_reasoning_is_cut_at_its_thinking_time(budgeted: Budgeted, sim: Simulator) -> None:
    spans = budgeted("task_classes:\n  lookup: {max_thinking_s: 0.3}\n")

    async def run() -> float:
        client = openai.AsyncOpenAI(base_url=sim.base_url, api_key="x", max_retries=0)
        started = time.monotonic()
        with thinkmeter.tags(task_class="lookup"), pytest.raises(thinkmeter.BudgetExceeded):
            stream = await client.chat.completions.create(
                model="o4-mini", messages=MESSAGES, stream=True, extra_headers=HIDDEN_RUNAWAY.headers()
            )
            async for _ in stream:
                pass
        waited = time.monotonic() - started
        await client.close()
        return waited

    waited = asyncio.run(run())
    assert 0.3 <= waited < HIDDEN_RUNAWAY.first_visible_s * sim.time_scale
    reply = _closed_by_client(sim)
    assert reply.client_closed_s < HIDDEN_RUNAWAY.first_visible_s * sim.time_scale
    gc.collect()
    (span,) = spans.all()
    assert span.attributes[sc.BUDGET_CUT] is True and span.attributes[sc.BUDGET_LINE] == "task_classes.lookup.max_thinking_s"


def test_observe_mode_marks_a_hidden_stream_at_its_thinking_time(budgeted: Budgeted, sim: Simulator) -> None:
    spans = budgeted("task_classes:\n  lookup: {max_thinking_s: 0.3}\nmode: observe\n")
    scenario = HIDDEN_RUNAWAY.model_copy(update={"thinking_s": 60})
    with thinkmeter.tags(task_class="lookup"):
        for _ in _openai(sim).chat.completions.create(model="o4-mini", messages=MESSAGES, stream=True, extra_headers=scenario.headers()):
            pass
    assert sim.replies[-1].outcome == "completed"
    attrs = spans.only_attributes()
    assert attrs[sc.BUDGET_WOULD_CUT] is True and attrs[sc.BUDGET_LINE] == "task_classes.lookup.max_thinking_s"
    assert attrs[sc.BUDGET_REACHED] >= 0.3 and attrs[sc.REASONING_TOKENS] == scenario.reasoning_tokens


def test_running_cost_cap_cuts(budgeted: Budgeted, sim: Simulator) -> None:
    # claude-sonnet-4-5: $3 / M input, $15 / M output. 200 input tokens cost $0.0006; the cap is passed
    # once the estimated thinking passes (0.001 - 0.0006) / 15e-6 = 26.7 tokens.
    spans = budgeted("task_classes:\n  lookup: {max_cost_usd: 0.001}\n")
    with thinkmeter.tags(task_class="lookup"), pytest.raises(thinkmeter.BudgetExceeded) as raised:
        for _ in _anthropic(sim).messages.create(
            model="claude-sonnet-4-5", max_tokens=8000, messages=MESSAGES, stream=True,
            thinking={"type": "enabled", "budget_tokens": 5000}, extra_headers=RUNAWAY.headers(),
        ):  # fmt: skip
            pass
    assert raised.value.line == "task_classes.lookup.max_cost_usd" and raised.value.unit == "USD"
    assert 0.001 < raised.value.reached < 0.001 + 3 * 15e-6  # passed by at most one delta's tokens
    _closed_by_client(sim)
    attrs = spans.only_attributes()
    assert attrs[sc.BUDGET_CUT_COST_USD] == pytest.approx(raised.value.reached)


# ----------------------------------------------------------------------------------------- observe mode


def test_observe_mode_records_and_changes_nothing(budgeted: Budgeted, sim: Simulator) -> None:
    spans = budgeted(LOOKUP + "mode: observe\n", providers={"127.0.0.1": "vllm"})
    chunks = 0
    with thinkmeter.tags(task_class="lookup"):
        for _ in _openai(sim).chat.completions.create(model="qwen3", messages=MESSAGES, stream=True, extra_headers=RUNAWAY.headers()):
            chunks += 1
    reply = sim.replies[-1]
    assert reply.outcome == "completed"
    assert "max_tokens" not in reply.request_body and "reasoning_effort" not in reply.request_body
    attrs = spans.only_attributes()
    assert attrs[sc.BUDGET_WOULD_CUT] is True and sc.BUDGET_CUT not in attrs and sc.BUDGET_INJECTED not in attrs
    assert attrs[sc.BUDGET_LINE] == "task_classes.lookup.max_reasoning_tokens"
    assert attrs[sc.OUTPUT_TOKENS] == RUNAWAY.output_tokens  # the whole reply, as reported


# ---------------------------------------------------------------------------------------- tenant windows


def _publish(settings: Settings, window_s: int) -> dict[str, Any]:
    return TenantWindowPublisher(settings.data_dir, window_s, lambda sql, params: query_rows(settings, sql, params))()


def test_tenant_over_its_window_is_refused_before_anything_is_sent(
    sim: Simulator, store_settings: Settings, traced: Any, service_name: str, tmp_path: Path
) -> None:
    """In one process: the spend goes into the store, the real publisher writes the window file (serve's
    job, here called by hand), the application refuses the tenant's next call. `test_budgets_serve.py`
    does the same with serve and the application in processes of their own, and the window rolling."""
    tenant = f"tenant-{service_name}"
    policy = tmp_path / "budgets.yaml"
    policy.write_text(f"tenants:\n  {tenant}: {{daily_usd: 0.0000001}}\n")
    provider, processor = traced()
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    thinkmeter.uninstrument()
    thinkmeter.instrument(tracer_provider=provider, exporter="none", budgets=policy)
    client = _openai(sim)

    def call() -> None:
        with thinkmeter.tags(tenant=tenant):
            client.chat.completions.create(model="o4-mini", messages=MESSAGES, extra_headers=Scenario().headers())

    try:
        call()  # spends: nothing published yet
        assert processor.force_flush()
        document = _publish(store_settings, 86400)
        assert document["tenants"][tenant]["calls"] == 1
        served = len(sim.replies)
        time.sleep(2.1)  # the app looks at the file at most every 2 s
        with pytest.raises(thinkmeter.BudgetExceeded) as raised:
            call()
        assert len(sim.replies) == served  # refused before anything was sent
        assert raised.value.line == f"tenants.{tenant}.daily_usd" and not raised.value.cut and raised.value.tenant == tenant
        assert raised.value.location == "budgets.yaml:2" and raised.value.source == "store"
        refused = dict(memory.get_finished_spans()[-1].attributes or {})
        assert refused[sc.BUDGET_REJECTED] is True and sc.OUTPUT_TOKENS not in refused
    finally:
        thinkmeter.uninstrument()


def test_figures_of_a_past_window_no_longer_count(store_settings: Settings, traced: Any, service_name: str, sim: Simulator) -> None:
    """Serve's clock and the application's, moved one window on: before serve publishes the new window
    the application already counts the tenant from zero; serve's next publication has no spend for it."""
    from thinkmeter.budgets.windows import TenantWindows

    tenant = f"tenant-{service_name}"
    provider, processor = traced()
    thinkmeter.uninstrument()
    thinkmeter.instrument(tracer_provider=provider, exporter="none")
    with thinkmeter.tags(tenant=tenant):
        _openai(sim).chat.completions.create(model="o4-mini", messages=MESSAGES, extra_headers=Scenario().headers())
    thinkmeter.uninstrument()
    assert processor.force_flush()
    now = [time.time()]
    query = lambda sql, params: query_rows(store_settings, sql, params)  # noqa: E731
    publisher = TenantWindowPublisher(store_settings.data_dir, 3600, query, clock=lambda: now[0])
    # Fresh for as long as the test moves the clock; serve republishes every 2 s.
    windows = TenantWindows(store_settings.data_dir, 3600, stale_after_s=7200, clock=lambda: now[0])
    publisher()
    spent = windows.figures(tenant)
    assert spent is not None and spent.cost_usd > 0
    now[0] += 3600
    rolled = windows.figures(tenant)
    assert rolled is not None and (rolled.cost_usd, rolled.reasoning_tokens) == (0.0, 0)
    publisher()
    assert tenant not in json.loads((store_settings.data_dir / FILE_NAME).read_text())["tenants"]


def test_tenant_limits_fail_open_without_serve_and_say_so_once(
    budgeted: Budgeted, sim: Simulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "no-serve"
    budgeted("tenants:\n  acme: {daily_usd: 0.0000001}\n", data_dir=data_dir)
    with caplog.at_level(logging.WARNING, logger="thinkmeter"), thinkmeter.tags(tenant="acme"):
        for _ in range(2):
            _openai(sim).chat.completions.create(model="o4-mini", messages=MESSAGES, extra_headers=Scenario().headers())
    assert sim.replies[-1].outcome == "completed"
    warnings = [r.getMessage() for r in caplog.records if "tenant" in r.getMessage()]
    assert len(warnings) == 1 and "is `thinkmeter serve` running" in warnings[0]


def test_stale_figures_fail_open(budgeted: Budgeted, sim: Simulator, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data_dir = tmp_path / "stale"
    now = time.time()
    start = int(now // 86400) * 86400
    stale = {"published_at": now - 600, "window_s": 86400, "window_start": start, "window_end": start + 86400,
             "tenants": {"acme": {"cost_usd": 999.0, "reasoning_tokens": 0, "calls": 1}}}  # fmt: skip
    write_atomically(data_dir / FILE_NAME, json.dumps(stale).encode())
    spans = budgeted("tenants:\n  acme: {daily_usd: 1}\n", data_dir=data_dir)
    with caplog.at_level(logging.WARNING, logger="thinkmeter"), thinkmeter.tags(tenant="acme"):
        _openai(sim).chat.completions.create(model="o4-mini", messages=MESSAGES, extra_headers=Scenario().headers())
    assert sim.replies[-1].outcome == "completed"
    assert "600 s old" in caplog.text
    assert sc.BUDGET_REJECTED not in spans.only_attributes()


def test_observe_mode_records_a_would_reject(budgeted: Budgeted, sim: Simulator, tmp_path: Path) -> None:
    data_dir = tmp_path / "observe"
    now = time.time()
    start = int(now // 86400) * 86400
    fresh = {"published_at": now, "window_s": 86400, "window_start": start, "window_end": start + 86400,
             "tenants": {"acme": {"cost_usd": 2.0, "reasoning_tokens": 0, "calls": 1}}}  # fmt: skip
    write_atomically(data_dir / FILE_NAME, json.dumps(fresh).encode())
    spans = budgeted("tenants:\n  acme: {daily_usd: 1}\nmode: observe\n", data_dir=data_dir)
    with thinkmeter.tags(tenant="acme"):
        _openai(sim).chat.completions.create(model="o4-mini", messages=MESSAGES, extra_headers=Scenario().headers())
    assert sim.replies[-1].outcome == "completed"
    attrs = spans.only_attributes()
    assert attrs[sc.BUDGET_WOULD_REJECT] is True and attrs[sc.BUDGET_LINE] == "tenants.acme.daily_usd"
    assert attrs[sc.BUDGET_REACHED] == 2.0 and attrs[sc.BUDGET_CAP] == 1.0


# ------------------------------------------------------------------------------------ store and report


def test_cuts_and_observed_cuts_reach_the_store_and_the_report(
    sim: Simulator, store_settings: Settings, traced: Any, service_name: str, tmp_path: Path
) -> None:
    """One policy line, run once enforced (cut) and once observed (ran on): the report counts both and
    estimates what the cut saved from what the observed call cost past the same point."""
    from thinkmeter.reports import budget_report
    from thinkmeter.store import store_session

    task_class = f"class-{service_name}"
    provider, processor = traced()
    client = _openai(sim)
    for mode in ("enforce", "observe"):
        policy = tmp_path / f"{mode}.yaml"
        policy.write_text(f"task_classes:\n  {task_class}: {{max_reasoning_tokens: {CAP}}}\nmode: {mode}\n")
        thinkmeter.uninstrument()
        thinkmeter.instrument(tracer_provider=provider, exporter="none", budgets=policy, providers={"127.0.0.1": "vllm"})
        try:
            with thinkmeter.tags(task_class=task_class):
                for _ in client.chat.completions.create(model="o4-mini", messages=MESSAGES, stream=True, extra_headers=RUNAWAY.headers()):
                    pass
        except thinkmeter.BudgetExceeded:
            assert mode == "enforce"
    thinkmeter.uninstrument()
    assert processor.force_flush()
    line = f"task_classes.{task_class}.max_reasoning_tokens"
    rows = query_rows(
        store_settings,
        "SELECT budget_cut, budget_would_cut, budget_line, budget_injected, reasoning_tokens, cost_usd, budget_cut_cost_usd "
        "FROM llm_calls WHERE task_class = {c:String} ORDER BY budget_cut DESC",
        {"c": task_class},
    )
    cut, observed = rows
    assert (cut["budget_cut"], cut["budget_line"], cut["budget_injected"]) == (1, line, [f"max_tokens={CAP + 4096}"])
    # A chat stream reports its input only at the end: the cut call's cost is unknown, not 0; the running
    # cost at the cut prices the tokens seen.
    assert cut["cost_usd"] is None and cut["budget_cut_cost_usd"] == pytest.approx(cut["reasoning_tokens"] * 4.4e-6)
    assert (observed["budget_would_cut"], observed["budget_injected"], observed["reasoning_tokens"]) == (1, [], RUNAWAY.reasoning_tokens)
    with store_session(store_settings) as session:
        (entry,) = [r for r in budget_report(session, 3600)["by_line"] if r["line"] == line]
    saved = observed["cost_usd"] - observed["budget_cut_cost_usd"]
    assert (entry["cuts"], entry["would_cut"], entry["rejected"]) == (1, 1, 0)
    assert entry["would_save_usd"] == pytest.approx(saved, abs=1e-6)
    assert entry["est_saved_usd"] == pytest.approx(saved, abs=1e-6)
