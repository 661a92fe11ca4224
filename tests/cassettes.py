"""Real provider traffic recorded by other projects (../shared/cassettes, see its README), replayed over
loopback, and what each recorded reply says, read straight off the recorded body.

The expectations here are worked out from the JSON / SSE the provider sent, with nothing of thinkmeter's
parsers or price table code: the counts a body reports, the sums its fields imply, and prices.json's
rates applied by hand.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
CASSETTES = ROOT.parent / "shared" / "cassettes"
PRICES = json.loads((ROOT / "thinkmeter" / "prices.json").read_text())

# Recorded host -> (gen_ai.provider.name, the SDK that speaks its protocol, the base path of its API)
HOSTS = {
    "api.openai.com": ("openai", "openai", "/v1"),
    "api.groq.com": ("groq", "openai", "/openai/v1"),
    "openrouter.ai": ("openrouter", "openai", "/api/v1"),
    "api.deepseek.com": ("deepseek", "openai", ""),
    "api.cerebras.ai": ("cerebras", "openai", "/v1"),
    "api.anthropic.com": ("anthropic", "anthropic", ""),
    "generativelanguage.googleapis.com": ("gcp.gemini", "gemini", ""),
}


@dataclass
class Interaction:
    cassette: str
    index: int
    host: str
    path: str  # without the query
    request: dict[str, Any]
    status: int
    content_type: str
    body: bytes

    @property
    def id(self) -> str:
        return f"{Path(self.cassette).stem}#{self.index}"

    @property
    def provider(self) -> str:
        return HOSTS[self.host][0]

    @property
    def sdk(self) -> str:
        return HOSTS[self.host][1]

    @property
    def streamed(self) -> bool:
        return bool(self.request.get("stream")) or self.path.endswith(":streamGenerateContent")

    @property
    def api(self) -> str:
        if self.sdk == "gemini":
            return "gemini"
        if self.sdk == "anthropic":
            return "messages"
        return "responses" if self.path.endswith("/responses") else "chat"


def _json_body(value: Any) -> Any:
    if isinstance(value, dict) and "string" in value:
        value = value["string"]
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str):
        return json.loads(value) if value.strip() else {}
    return value if value is not None else {}


def _response_body(response: dict[str, Any], headers: dict[str, str]) -> bytes:
    if "parsed_body" in response:
        return json.dumps(response["parsed_body"]).encode()
    body = response["body"]["string"]
    raw = body if isinstance(body, bytes) else body.encode()
    if headers.get("content-encoding") == "gzip" or raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return raw


def load_interactions() -> list[Interaction]:
    """Every LLM call the manifest lists, after checking each file against its sha256."""
    manifest = json.loads((CASSETTES / "MANIFEST.json").read_text())
    interactions = []
    for entry in manifest:
        path = CASSETTES / entry["file"]
        data = path.read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], f"{entry['file']} differs from the manifest"
        recorded = yaml.safe_load(data)["interactions"]
        for index in entry["interactions"]:
            request, response = recorded[index]["request"], recorded[index]["response"]
            headers = {k.lower(): (v[0] if isinstance(v, list) else v) for k, v in response["headers"].items()}
            uri = re.sub(r"^https?://", "", request["uri"]).split("?")[0]
            host, _, path = uri.partition("/")
            interactions.append(
                Interaction(
                    cassette=entry["file"],
                    index=index,
                    host=host,
                    path="/" + path,
                    request=_json_body(request.get("parsed_body", request.get("body"))),
                    status=response["status"]["code"],
                    content_type=headers.get("content-type", "application/json"),
                    body=_response_body(response, headers),
                )
            )
    return interactions


class ReplayServer:
    """Answers the next request with the recorded reply it was given (`expect`), after checking that
    the SDK sent it to the recorded path."""

    def __init__(self) -> None:
        self.expected: Interaction | None = None
        self.paths: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("content-length") or 0))
                server.paths.append(self.path.split("?")[0])
                reply = server.expected
                body = reply.body if reply is not None else b'{"error": "nothing to replay"}'
                self.send_response(reply.status if reply is not None else 500)
                self.send_header("content-type", reply.content_type if reply is not None else "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def expect(self, interaction: Interaction) -> None:
        self.expected = interaction
        self.paths.clear()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# ------------------------------------------------------------------------------------ what the body says


@dataclass
class Expected:
    """Span attributes the recorded reply determines exactly; `unreported` lists counts it does not
    report (thinkmeter may estimate or leave them out, never claim them as reported)."""

    attributes: dict[str, Any] = field(default_factory=dict)
    unreported: list[str] = field(default_factory=list)
    error: bool = False
    # (model or None for the call's own, input, cache read, cache write, output): billed parts
    parts: list[tuple[str | None, int, int, int, int]] = field(default_factory=list)
    reported_cost: float | None = None


def _sse_events(body: bytes) -> list[Any]:
    events = []
    for line in body.decode().splitlines():
        if line.startswith("data:"):
            data = line[5:].strip()
            if data and data != "[DONE]":
                events.append(json.loads(data))
    return events


def _int(value: Any) -> int | None:
    return value if type(value) is int else None


def expected_reply(interaction: Interaction) -> Expected:
    if interaction.status >= 400:
        return Expected(error=True)
    api = interaction.api
    if interaction.streamed:
        events = _sse_events(interaction.body)
        if any("error" in e and isinstance(e.get("error"), dict) and e.get("type") != "response.failed" for e in events):
            return Expected(error=True)  # the provider failed mid-stream
    else:
        events = [json.loads(interaction.body)]
    if api == "chat":
        expected = _chat(events)
    elif api == "responses":
        expected = _responses(events)
    elif api == "messages":
        expected = _messages(events, interaction.streamed)
    else:
        expected = _gemini(events)
    _answer_lost(expected)
    return expected


def _answer_lost(expected: Expected) -> None:
    """Ended on the output cap (chat `length`, Anthropic `max_tokens`, Gemini `MAX_TOKENS`, Responses
    `max_output_tokens`) with nothing visible: output all reasoning. Unasserted where reasoning is unreported."""
    reasons = expected.attributes.get("gen_ai.response.finish_reasons")
    if not reasons:
        return
    if not {"length", "max_tokens", "max_output_tokens"} & set(reasons):
        expected.attributes["thinkmeter.answer_lost"] = False
        return
    output = expected.attributes.get("gen_ai.usage.output_tokens")
    reasoning = expected.attributes.get("gen_ai.usage.reasoning.output_tokens")
    if output is not None and reasoning is not None:
        expected.attributes["thinkmeter.answer_lost"] = output == reasoning


def _set(expected: Expected, name: str, value: Any) -> None:
    if value is not None:
        expected.attributes[name] = value


def _usage_cells(expected: Expected, input_tokens, cache_read, cache_write, output, reasoning) -> None:  # type: ignore[no-untyped-def]
    for name, value in (
        ("gen_ai.usage.input_tokens", input_tokens),
        ("gen_ai.usage.cache_read.input_tokens", cache_read),
        ("gen_ai.usage.cache_write.input_tokens", cache_write),
        ("gen_ai.usage.output_tokens", output),
    ):
        _set(expected, name, value)
    if reasoning is not None:
        expected.attributes["gen_ai.usage.reasoning.output_tokens"] = reasoning
        expected.attributes["thinkmeter.usage.reasoning.source"] = "reported"
    else:
        expected.unreported.append("gen_ai.usage.reasoning.output_tokens")
    if input_tokens is not None and output is not None:
        expected.parts = [(None, input_tokens, cache_read or 0, cache_write or 0, output)]


def _chat(events: list[Any]) -> Expected:
    expected = Expected()
    reasons: dict[int, str] = {}
    usage = None
    for event in events:
        _set(expected, "gen_ai.response.id", event.get("id") if "gen_ai.response.id" not in expected.attributes else None)
        _set(expected, "gen_ai.response.model", event.get("model") if "gen_ai.response.model" not in expected.attributes else None)
        for choice in event.get("choices") or []:
            if choice.get("finish_reason"):
                reasons[choice.get("index", 0)] = choice["finish_reason"]
            elif "message" in choice:
                reasons.setdefault(choice.get("index", 0), "")
        usage = event.get("usage") or (event.get("x_groq") or {}).get("usage") or usage
    if reasons:
        expected.attributes["gen_ai.response.finish_reasons"] = tuple(reasons[i] for i in sorted(reasons))
    if usage:
        details = usage.get("completion_tokens_details") or {}
        prompt = usage.get("prompt_tokens_details") or {}
        cache_read = _int(prompt.get("cached_tokens"))
        _usage_cells(
            expected,
            _int(usage.get("prompt_tokens")),
            cache_read if cache_read is not None else _int(usage.get("prompt_cache_hit_tokens")),
            _int(prompt.get("cache_write_tokens")),
            _int(usage.get("completion_tokens")),
            _int(details.get("reasoning_tokens")),
        )
        if isinstance(usage.get("cost"), (int, float)):
            expected.reported_cost = float(usage["cost"])
    return expected


def _responses(events: list[Any]) -> Expected:
    response = events[0] if "object" in events[0] and events[0].get("object") == "response" else None
    for event in events:
        if event.get("type") in ("response.completed", "response.incomplete", "response.failed"):
            response = event["response"]
    expected = Expected()
    if response is None:
        return expected
    _set(expected, "gen_ai.response.id", response.get("id"))
    _set(expected, "gen_ai.response.model", response.get("model"))
    reason = (response.get("incomplete_details") or {}).get("reason") or response.get("status")
    if reason and reason not in ("queued", "in_progress"):
        expected.attributes["gen_ai.response.finish_reasons"] = (reason,)
    usage = response.get("usage")
    if usage:
        _usage_cells(
            expected,
            _int(usage.get("input_tokens")),
            _int((usage.get("input_tokens_details") or {}).get("cached_tokens")),
            _int((usage.get("input_tokens_details") or {}).get("cache_write_tokens")),
            _int(usage.get("output_tokens")),
            _int((usage.get("output_tokens_details") or {}).get("reasoning_tokens")),
        )
        if isinstance(usage.get("cost"), (int, float)):
            expected.reported_cost = float(usage["cost"])
    return expected


def _messages(events: list[Any], streamed: bool) -> Expected:
    expected = Expected()
    usage: dict[str, Any] = {}
    stop = None
    for event in events:
        message = event.get("message") if streamed else event
        if message and (not streamed or event.get("type") == "message_start"):
            _set(expected, "gen_ai.response.id", message.get("id"))
            _set(expected, "gen_ai.response.model", message.get("model"))
            usage.update({k: v for k, v in (message.get("usage") or {}).items() if v is not None})
            stop = message.get("stop_reason") or stop
        if streamed and event.get("type") == "message_delta":
            usage.update({k: v for k, v in (event.get("usage") or {}).items() if v is not None})
            stop = (event.get("delta") or {}).get("stop_reason") or stop
    if stop:
        expected.attributes["gen_ai.response.finish_reasons"] = (stop,)
    # Anthropic bills every sampling iteration; the top level holds only one of them.
    iterations = usage.get("iterations") or [usage]
    parts: dict[str | None, list[int]] = {}
    for iteration in iterations:
        model = iteration.get("model")
        model = model if model and model != expected.attributes.get("gen_ai.response.model") else None
        cache_read, cache_write = iteration.get("cache_read_input_tokens") or 0, iteration.get("cache_creation_input_tokens") or 0
        sums = parts.setdefault(model, [0, 0, 0, 0])
        for position, value in enumerate((iteration["input_tokens"] + cache_read + cache_write, cache_read, cache_write, iteration["output_tokens"])):
            sums[position] += value
    total = [sum(p[i] for p in parts.values()) for i in range(4)]
    thinking = _int((usage.get("output_tokens_details") or {}).get("thinking_tokens"))
    _usage_cells(expected, total[0], total[1] if "cache_read_input_tokens" in usage else None,
                 total[2] if "cache_creation_input_tokens" in usage else None, total[3], thinking)
    expected.parts = [(model, *sums) for model, sums in parts.items()]  # type: ignore[misc]
    return expected


def _gemini(events: list[Any]) -> Expected:
    expected = Expected()
    reasons: dict[int, str] = {}
    metadata: dict[str, Any] = {}
    for event in events:
        _set(expected, "gen_ai.response.model", event.get("modelVersion"))
        _set(expected, "gen_ai.response.id", event.get("responseId"))
        for candidate in event.get("candidates") or []:
            if candidate.get("finishReason"):  # recorded as in the OTel google-genai instrumentation: lower case
                reasons[candidate.get("index", 0)] = candidate["finishReason"].lower()
        metadata = event.get("usageMetadata") or metadata
    if reasons:
        expected.attributes["gen_ai.response.finish_reasons"] = tuple(reasons[i] for i in sorted(reasons))
    prompt = metadata.get("promptTokenCount")
    if prompt is None:
        return expected
    input_tokens = prompt + metadata.get("toolUsePromptTokenCount", 0)
    # Gemini leaves zero counts out; thoughts are generated outside the candidates.
    output = metadata["totalTokenCount"] - input_tokens
    thoughts = metadata.get("thoughtsTokenCount")
    if thoughts is None and "candidatesTokenCount" in metadata:
        thoughts = output - metadata["candidatesTokenCount"]
    _usage_cells(expected, input_tokens, metadata.get("cachedContentTokenCount"), None, output, thoughts)
    if thoughts is not None and "thoughtsTokenCount" not in metadata:
        expected.attributes["thinkmeter.usage.reasoning.source"] = "derived"
    return expected


# ------------------------------------------------------------------------------------------- prices


def _rates(provider: str, model: str | None) -> dict[str, float] | None:
    """prices.json's entry: the provider's own first, then a provider-less one; exact name, then without
    a `vendor/` prefix, then without a dated-snapshot or -latest / -preview suffix."""
    if not model:
        return None
    names = [model.lower(), model.lower().rsplit("/", 1)[-1]]
    names += [re.sub(r"(-\d{4}-\d{2}-\d{2}|-\d{8}|-latest|-preview(-[\w.-]*)?|-exp(-[\w.-]*)?|@[\w.-]+)$", "", n) for n in names]
    for table in (PRICES.get("providers", {}).get(provider, {}), PRICES["models"]):
        for name in names:
            if name in table:
                return table[name]
    return None


def expected_cost(expected: Expected, provider: str, request_model: str | None) -> float | None:
    """USD: what the provider billed in the reply, else every billed part at its model's list rates."""
    if expected.reported_cost is not None:
        return expected.reported_cost
    if not expected.parts:
        return None
    model = expected.attributes.get("gen_ai.response.model") or request_model
    reasoning = expected.attributes.get("gen_ai.usage.reasoning.output_tokens")
    total = 0.0
    for part_model, input_tokens, cache_read, cache_write, output in expected.parts:
        rates = _rates(provider, part_model or model)
        if rates is None:
            return None
        in_rate = rates["input"]
        reasoning_here = (reasoning or 0) if part_model is None else 0
        total += (
            (input_tokens - cache_read - cache_write) * in_rate
            + cache_read * rates.get("cache_read", in_rate)
            + cache_write * rates.get("cache_write", in_rate)
            + (output - reasoning_here) * rates["output"]
            + reasoning_here * rates.get("reasoning", rates["output"])
        )
    return total / 1e6
