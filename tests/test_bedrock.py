"""boto3's bedrock-runtime client against the simulator's Bedrock routes (AWS event-stream framing
included): exact counts, costs and timed phases on Converse and InvokeModel, streamed or not.

boto3 has no async client (aiobotocore is a separate project, not instrumented). Credentials are
dummies: the simulator checks no signature.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import botocore
import botocore.session
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.response import StreamingBody

from tests.instrumented import Spans, instrumented  # noqa: F401  (pytest fixture)
from tests.simulated import THINKING_SCENARIO, assert_at, assert_stream_timings, expected_cost, sim  # noqa: F401  (sim: fixture)
from thinkmeter.instrumentation._estimate import estimated_tokens
from thinkmeter.schemas import semconv as sc
from thinkmeter.simulator import Scenario, Simulator
from thinkmeter.simulator.scenario import answer_words

PROVIDER = "aws.bedrock"
CLAUDE = "global.anthropic.claude-sonnet-4-5-20250929-v1:0"
SCENARIO = THINKING_SCENARIO
MESSAGES = [{"role": "user", "content": [{"text": "Why is the sky blue?"}]}]
STREAMED = {"converse_stream", "invoke_model_with_response_stream"}
# botocore 1.35 parses neither Converse's cache counts nor its reasoningContent blocks.
_TOKEN_USAGE = botocore.session.get_session().get_service_model("bedrock-runtime").shape_for("TokenUsage")
OLD_BOTOCORE = "cacheReadInputTokens" not in _TOKEN_USAGE.members
converse_read_fully = pytest.mark.skipif(OLD_BOTOCORE, reason=f"botocore {botocore.__version__} drops cache counts and reasoning blocks")


class ScenarioClient:
    """A bedrock-runtime client whose next calls play `scenario` (sent as a request header)."""

    def __init__(self, sim: Simulator) -> None:
        self.scenario = SCENARIO
        self.client = boto3.client(
            "bedrock-runtime",
            region_name="us-east-1",
            endpoint_url=sim.url,
            aws_access_key_id="dummy",
            aws_secret_access_key="dummy",
            config=Config(retries={"max_attempts": 1, "mode": "standard"}),
        )
        self.client.meta.events.register("before-call.bedrock-runtime.*", self._add_scenario)

    def _add_scenario(self, params: dict[str, Any], **_: Any) -> None:
        params["headers"].update(self.scenario.headers())


@pytest.fixture(scope="module")
def bedrock(sim: Simulator) -> Iterator[ScenarioClient]:
    scenario_client = ScenarioClient(sim)
    yield scenario_client
    scenario_client.client.close()


@pytest.fixture
def client(bedrock: ScenarioClient) -> Iterator[Any]:
    bedrock.scenario = SCENARIO
    yield bedrock.client


def _play(bedrock: ScenarioClient, scenario: Scenario) -> Any:
    bedrock.scenario = scenario
    return bedrock.client


def _invoke_body(**extra: Any) -> str:
    return json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 4096, "messages": [{"role": "user", "content": "Why?"}], **extra})


MODES: dict[str, Callable[[Any, str], Any]] = {
    "converse": lambda client, model: client.converse(modelId=model, messages=MESSAGES),
    "converse_stream": lambda client, model: list(client.converse_stream(modelId=model, messages=MESSAGES)["stream"]),
    "invoke_model": lambda client, model: json.loads(client.invoke_model(modelId=model, body=_invoke_body())["body"].read()),
    "invoke_model_with_response_stream": lambda client, model: list(
        client.invoke_model_with_response_stream(modelId=model, body=_invoke_body())["body"]
    ),
}


def _visible_estimate(scenario: Scenario) -> int:
    return estimated_tokens(len("".join(answer_words(scenario.visible_tokens))))


def assert_common(attrs: dict[str, Any], sim: Simulator, model: str, *, stream: bool) -> None:
    assert attrs[sc.OPERATION] == "chat" and attrs[sc.PROVIDER] == "aws.bedrock"
    assert attrs[sc.REQUEST_MODEL] == model
    assert attrs[sc.RESPONSE_ID] == sim.replies[-1].id
    assert attrs[sc.REQUEST_STREAM] is stream
    assert attrs[sc.SERVER_ADDRESS] == "127.0.0.1" and attrs[sc.SERVER_PORT] == sim.port
    assert sc.ERROR_TYPE not in attrs


def assert_converse(attrs: dict[str, Any], scenario: Scenario, model: str) -> None:
    """Converse counts no reasoning apart: output minus the visible text's estimate, marked so."""
    assert tuple(attrs[sc.RESPONSE_FINISH_REASONS]) == ("end_turn",)
    assert attrs[sc.INPUT_TOKENS] == scenario.input_tokens
    assert attrs[sc.CACHE_READ_TOKENS] == scenario.cached_input_tokens
    assert attrs[sc.CACHE_WRITE_TOKENS] == scenario.cache_write_tokens
    assert attrs[sc.OUTPUT_TOKENS] == scenario.output_tokens and attrs[sc.OUTPUT_SOURCE] == "reported"
    visible = _visible_estimate(scenario)
    assert attrs[sc.REASONING_TOKENS] == scenario.output_tokens - visible
    assert attrs[sc.VISIBLE_OUTPUT_TOKENS] == visible and attrs[sc.REASONING_SOURCE] == "estimated"
    # Same total either way (reasoning bills at the output rate); the reasoning part follows the estimate.
    total, _ = expected_cost(model, scenario, PROVIDER)
    split = scenario.model_copy(update={"reasoning_tokens": scenario.output_tokens - visible, "visible_tokens": visible})
    _, reasoning = expected_cost(model, split, PROVIDER)
    assert attrs[sc.COST_USD] == pytest.approx(total) and attrs[sc.REASONING_COST_USD] == pytest.approx(reasoning)
    assert attrs[sc.SERVER_TOTAL_TIME] == pytest.approx(round(scenario.end_s * 1000) / 1000)


def assert_invoke_claude(attrs: dict[str, Any], scenario: Scenario, model: str) -> None:
    """Claude's native body is Anthropic's: thinking is reported exactly. Its model name is not the
    billed inference profile: the requested model id prices the call."""
    assert sc.RESPONSE_MODEL not in attrs
    assert tuple(attrs[sc.RESPONSE_FINISH_REASONS]) == ("end_turn",)
    assert attrs[sc.INPUT_TOKENS] == scenario.input_tokens
    assert attrs[sc.CACHE_READ_TOKENS] == scenario.cached_input_tokens
    assert attrs[sc.CACHE_WRITE_TOKENS] == scenario.cache_write_tokens
    assert attrs[sc.OUTPUT_TOKENS] == scenario.output_tokens
    assert attrs[sc.REASONING_TOKENS] == scenario.reasoning_tokens and attrs[sc.REASONING_SOURCE] == "reported"
    total, reasoning = expected_cost(model, scenario, PROVIDER)
    assert attrs[sc.COST_USD] == pytest.approx(total) and attrs[sc.REASONING_COST_USD] == pytest.approx(reasoning)


@pytest.mark.parametrize("mode", list(MODES))
def test_claude_on_every_operation(instrumented: Spans, sim: Simulator, client: Any, mode: str) -> None:
    if OLD_BOTOCORE and mode.startswith("converse"):
        pytest.skip(f"botocore {botocore.__version__} drops cache counts and reasoning blocks")
    MODES[mode](client, CLAUDE)
    attrs = instrumented.only_attributes()
    stream = mode in STREAMED
    assert_common(attrs, sim, CLAUDE, stream=stream)
    if mode.startswith("converse"):
        assert_converse(attrs, SCENARIO, CLAUDE)
    else:
        assert_invoke_claude(attrs, SCENARIO, CLAUDE)
    if stream:
        assert_stream_timings(attrs, SCENARIO, reasoning_streamed=True)
    else:
        assert sc.TIME_TO_FIRST_TOKEN not in attrs and sc.TIME_TO_FIRST_CHUNK not in attrs


# Reasoning models on Bedrock's Converse: each returns reasoningContent (DeepSeek-R1 and gpt-oss their
# raw reasoning, Claude a summary, Nova 2 a redacted block).
CONVERSE_MODELS = {
    "us.deepseek.r1-v1:0": SCENARIO.model_copy(update={"cached_input_tokens": 0, "cache_write_tokens": 0, "reasoning_text": "raw", "reasoning_tokens": 60}),
    "openai.gpt-oss-120b-1:0": SCENARIO.model_copy(update={"cached_input_tokens": 0, "cache_write_tokens": 0, "reasoning_text": "raw", "reasoning_tokens": 60}),
    "us.amazon.nova-2-lite-v1:0": SCENARIO.model_copy(update={"cache_write_tokens": 0, "reasoning_text": "hidden"}),
    "anthropic.claude-3-7-sonnet-20250219-v1:0": SCENARIO,
}


@converse_read_fully
@pytest.mark.parametrize("stream", [False, True], ids=["converse", "converse_stream"])
@pytest.mark.parametrize("model", list(CONVERSE_MODELS))
def test_reasoning_models_on_converse(instrumented: Spans, sim: Simulator, bedrock: ScenarioClient, model: str, stream: bool) -> None:
    scenario = CONVERSE_MODELS[model]
    MODES["converse_stream" if stream else "converse"](_play(bedrock, scenario), model)
    attrs = instrumented.only_attributes()
    assert_common(attrs, sim, model, stream=stream)
    assert_converse(attrs, scenario, model)
    if stream:
        assert_stream_timings(attrs, scenario, reasoning_streamed=scenario.reasoning_text != "hidden")


@converse_read_fully
def test_redacted_reasoning_times_only_the_answer(instrumented: Spans, bedrock: ScenarioClient) -> None:
    scenario = SCENARIO.model_copy(update={"reasoning_text": "hidden"})
    events = MODES["converse_stream"](_play(bedrock, scenario), CLAUDE)
    assert any("redactedContent" in e.get("contentBlockDelta", {}).get("delta", {}).get("reasoningContent", {}) for e in events)
    attrs = instrumented.only_attributes()
    assert attrs[sc.REASONING_SOURCE] == "estimated"
    assert attrs[sc.TIME_TO_FIRST_TOKEN] == attrs[sc.TIME_TO_FIRST_VISIBLE_TOKEN]
    assert_at(attrs[sc.TIME_TO_FIRST_VISIBLE_TOKEN], scenario.first_visible_s)


@converse_read_fully
@pytest.mark.parametrize("stream", [False, True], ids=["converse", "converse_stream"])
def test_no_reasoning_block_is_zero_reasoning(instrumented: Spans, bedrock: ScenarioClient, stream: bool) -> None:
    scenario = SCENARIO.model_copy(update={"reasoning_tokens": 0, "thinking_s": 0.0})
    MODES["converse_stream" if stream else "converse"](_play(bedrock, scenario), CLAUDE)
    attrs = instrumented.only_attributes()
    assert attrs[sc.REASONING_TOKENS] == 0 and attrs[sc.REASONING_SOURCE] == "derived"
    assert attrs[sc.VISIBLE_OUTPUT_TOKENS] == scenario.visible_tokens


def test_request_options_are_recorded(instrumented: Spans, client: Any) -> None:
    client.converse(
        modelId=CLAUDE,
        messages=MESSAGES,
        inferenceConfig={"maxTokens": 4096},
        additionalModelRequestFields={"thinking": {"type": "enabled", "budget_tokens": 2048}},
    )
    attrs = instrumented.only_attributes()
    assert attrs[sc.REQUEST_MAX_TOKENS] == 4096 and attrs[sc.REQUEST_THINKING_BUDGET] == 2048
    instrumented.clear()
    client.converse(modelId="us.amazon.nova-2-lite-v1:0", messages=MESSAGES, additionalModelRequestFields={"reasoningConfig": {"type": "enabled", "maxReasoningEffort": "high"}})
    attrs = instrumented.only_attributes()
    assert attrs[sc.REQUEST_REASONING_LEVEL] == "high" and sc.REQUEST_THINKING_BUDGET not in attrs


@pytest.mark.parametrize("stream", [False, True], ids=["converse", "converse_stream"])
def test_older_botocore_leaves_what_it_drops_unknown(instrumented: Spans, client: Any, stream: bool) -> None:
    """botocore 1.35 drops cacheReadInputTokens and reasoningContent from Converse replies: input
    (which includes cache reads) and reasoning are then unknown, never inputTokens alone or 0."""
    if not OLD_BOTOCORE:
        pytest.skip(f"botocore {botocore.__version__} parses cache counts and reasoning blocks")
    MODES["converse_stream" if stream else "converse"](client, CLAUDE)
    attrs = instrumented.only_attributes()
    assert sc.INPUT_TOKENS not in attrs and sc.COST_USD not in attrs
    assert sc.REASONING_TOKENS not in attrs and attrs[sc.REASONING_SOURCE] == "unknown"
    assert attrs[sc.OUTPUT_TOKENS] == SCENARIO.output_tokens


@pytest.mark.parametrize("stream", [False, True], ids=["invoke_model", "invoke_model_with_response_stream"])
def test_other_models_invoke_counts_from_bedrock_metrics(instrumented: Spans, sim: Simulator, bedrock: ScenarioClient, stream: bool) -> None:
    """A model whose native body thinkmeter does not read (Nova here): input and output from Bedrock's
    invocation metrics (headers, or the last chunk), reasoning unknown; the body is left unread."""
    model = "us.amazon.nova-pro-v1:0"
    scenario = SCENARIO.model_copy(update={"cached_input_tokens": 0, "cache_write_tokens": 0, "reasoning_tokens": 0, "thinking_s": 0.0})
    client = _play(bedrock, scenario)
    body = json.dumps({"messages": [{"role": "user", "content": [{"text": "Why?"}]}], "inferenceConfig": {"maxTokens": 512}})
    if stream:
        chunks = list(client.invoke_model_with_response_stream(modelId=model, body=body)["body"])
        assert b"metadata" in chunks[-1]["chunk"]["bytes"]
    else:
        assert json.loads(client.invoke_model(modelId=model, body=body)["body"].read())["usage"]["outputTokens"] == scenario.output_tokens
    attrs = instrumented.only_attributes()
    assert_common(attrs, sim, model, stream=stream)
    assert attrs[sc.INPUT_TOKENS] == scenario.input_tokens and attrs[sc.OUTPUT_TOKENS] == scenario.output_tokens
    assert sc.REASONING_TOKENS not in attrs and attrs[sc.REASONING_SOURCE] == "unknown"
    total, _ = expected_cost(model, scenario, PROVIDER)
    assert attrs[sc.COST_USD] == pytest.approx(total)


def test_invoke_body_reads_the_same_after_tracing(instrumented: Spans, client: Any) -> None:
    reply = client.invoke_model(modelId=CLAUDE, body=_invoke_body())
    body = reply["body"]
    assert isinstance(body, StreamingBody)
    message = json.loads(b"".join(body.iter_chunks(64)))
    assert message["usage"]["output_tokens"] == SCENARIO.output_tokens
    assert instrumented.only_attributes()[sc.OUTPUT_TOKENS] == SCENARIO.output_tokens


def test_other_clients_and_operations_pass_through(instrumented: Spans, sim: Simulator) -> None:
    """Only the four generation calls of bedrock-runtime are traced."""
    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=sim.url, aws_access_key_id="d", aws_secret_access_key="d")
    with pytest.raises(ClientError):
        s3.list_buckets()
    assert instrumented.all() == []


@pytest.mark.parametrize("mode", list(MODES))
def test_http_error_ends_the_span_with_its_code(instrumented: Spans, bedrock: ScenarioClient, mode: str) -> None:
    client = _play(bedrock, SCENARIO.model_copy(update={"error_status": 429}))
    with pytest.raises(ClientError) as raised:
        MODES[mode](client, CLAUDE)
    assert raised.value.response["Error"]["Code"] == "ThrottlingException"
    attrs = instrumented.only_attributes()
    assert attrs[sc.ERROR_TYPE] == "ThrottlingException"
    assert sc.OUTPUT_TOKENS not in attrs and sc.COST_USD not in attrs


@pytest.mark.parametrize("mode", ["converse_stream", "invoke_model_with_response_stream"])
def test_early_break_ends_the_span_on_close(instrumented: Spans, client: Any, mode: str) -> None:
    if mode == "converse_stream":
        stream = client.converse_stream(modelId=CLAUDE, messages=MESSAGES)["stream"]
        visible = lambda event: "text" in event.get("contentBlockDelta", {}).get("delta", {})  # noqa: E731
    else:
        stream = client.invoke_model_with_response_stream(modelId=CLAUDE, body=_invoke_body())["body"]
        visible = lambda event: b"text_delta" in event["chunk"]["bytes"]  # noqa: E731
    for event in stream:
        if visible(event):
            break
    assert instrumented.all() == []  # the stream is still open
    stream.close()
    (span,) = instrumented.all()
    attrs = dict(span.attributes or {})
    assert sc.OUTPUT_TOKENS not in attrs and attrs[sc.OUTPUT_SOURCE] == "unknown"
    reasoning_seen = not (OLD_BOTOCORE and mode == "converse_stream")  # it drops the reasoning deltas
    assert_at(attrs.get(sc.TIME_TO_FIRST_TOKEN), SCENARIO.first_token_s if reasoning_seen else SCENARIO.first_visible_s)
    assert_at(attrs.get(sc.TIME_TO_FIRST_VISIBLE_TOKEN), SCENARIO.first_visible_s)


@pytest.mark.parametrize("mode", ["converse_stream", "invoke_model_with_response_stream"])
def test_exception_mid_stream_ends_the_span_with_the_error(instrumented: Spans, bedrock: ScenarioClient, mode: str) -> None:
    scenario = SCENARIO.model_copy(update={"disconnect_after_visible": 3})
    with pytest.raises(Exception) as raised:
        MODES[mode](_play(bedrock, scenario), CLAUDE)
    attrs = instrumented.only_attributes()
    assert attrs[sc.ERROR_TYPE] == type(raised.value).__qualname__
    assert_at(attrs.get(sc.TIME_TO_FIRST_VISIBLE_TOKEN), scenario.first_visible_s)
    assert sc.OUTPUT_TOKENS not in attrs


def test_unconsumed_stream_ends_its_span_when_collected(instrumented: Spans, client: Any) -> None:
    reply = client.converse_stream(modelId=CLAUDE, messages=MESSAGES)
    assert instrumented.all() == []
    del reply
    gc.collect()
    attrs = instrumented.only_attributes()
    assert attrs[sc.REQUEST_STREAM] is True and sc.OUTPUT_TOKENS not in attrs and sc.ERROR_TYPE not in attrs
