"""The contract between the simulator's HTTP engine and the provider flavours.

A flavour module exports `ROUTES`: each `Route` reads what a request asks for (`Ask`) and renders a
recorded `Reply` as a `Plan`, a sequence of byte chunks each due at a simulated time. The engine does
everything else: choosing the scenario, recording the ground truth, HTTP errors, sleeping to the
deadlines, dropping the connection for disconnect scenarios.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict

from .scenario import Scenario


class SimOptions(BaseModel):
    """Server-wide behaviour switches, passed as keyword arguments to `start_simulator`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # OpenAI-compatible chat servers that stream reasoning text: vLLM/Groq/OpenRouter use
    # `reasoning`, DeepSeek/SGLang/llama.cpp (and vLLM before the rename) `reasoning_content`.
    reasoning_field: Literal["reasoning", "reasoning_content"] | None = None
    # How an OpenAI-compatible chat server words its usage (see simulator/openai_chat.py): DeepSeek's
    # cache hit/miss counts, xAI's reasoning outside completion_tokens, Groq's timings and x_groq usage,
    # OpenRouter's billed cost, llama.cpp's `timings`.
    chat_flavour: Literal["openai", "deepseek", "xai", "groq", "openrouter", "llama.cpp"] = "openai"


class BadRequest(Exception):
    """The request cannot be served; the message goes back to the client with status 400 or 404."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(slots=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # names lower-cased
    body: bytes
    options: SimOptions
    params: dict[str, str] = field(default_factory=dict)  # named groups of the route's path pattern
    _json: dict[str, Any] | None = None

    def json(self) -> dict[str, Any]:
        """The body as a JSON object, parsed once."""
        if self._json is None:
            try:
                value = json.loads(self.body or b"{}")
            except ValueError as exc:
                raise BadRequest(f"request body is not JSON: {exc}") from None
            if not isinstance(value, dict):
                raise BadRequest("request body must be a JSON object")
            self._json = value
        return self._json


@dataclass(frozen=True, slots=True)
class Ask:
    """What the client asks for. A new call names a model and a prompt; a resume names a reply."""

    model: str | None = None
    prompt: Any = None  # the JSON-able part of the request that seeds the default scenario
    stream: bool = False
    max_output_tokens: int | None = None
    # A cap on thinking alone (Anthropic thinking.budget_tokens, Gemini thinkingConfig.thinkingBudget).
    thinking_budget: int | None = None
    resume_id: str | None = None


@dataclass(slots=True)
class Reply:
    """The ground truth of one served call, recorded before the first byte is sent."""

    id: str
    route: str
    scenario: Scenario  # as generated: model filled in, output budget applied
    ask: Ask
    time_scale: float
    arrival: float  # time.monotonic() when the request had been read
    arrival_unix: float
    outcome: Literal["pending", "completed", "error", "disconnected", "client_closed"] = "pending"
    visible_sent: int = 0
    # The request's JSON body as the server received it (what the client and its instrumentation sent).
    request_body: dict[str, Any] = field(default_factory=dict)
    # Wall seconds from arrival to when the server saw the client close the connection mid-reply.
    client_closed_s: float | None = None
    # Measured on the server, wall seconds from arrival: when the bytes were handed to the socket.
    first_chunk_sent_s: float | None = None
    first_visible_sent_s: float | None = None

    @property
    def model(self) -> str:
        return self.scenario.model or ""

    @property
    def first_chunk_s(self) -> float:
        """Simulated seconds to the first body byte: a streamed reply starts at prefill."""
        if self.scenario.error_status is not None:
            return self.scenario.prefill_s
        return self.scenario.prefill_s if self.ask.stream else self.scenario.end_s

    @property
    def first_chunk_wall_s(self) -> float:
        return self.first_chunk_s * self.time_scale

    @property
    def first_token_wall_s(self) -> float:
        return self.scenario.first_token_s * self.time_scale

    @property
    def first_visible_wall_s(self) -> float:
        return self.scenario.first_visible_s * self.time_scale

    @property
    def end_wall_s(self) -> float:
        return self.scenario.end_s * self.time_scale


class Emit(NamedTuple):
    at_s: float  # simulated seconds from the reply's arrival
    data: bytes
    visible: int = 0  # visible answer tokens this chunk carries


@dataclass(frozen=True, slots=True)
class Plan:
    stream: bool  # chunked body sent as the emits fall due; otherwise one body at the last emit
    content_type: str
    emits: Iterable[Emit]


@dataclass(frozen=True, slots=True)
class Route:
    name: str  # e.g. "openai.chat"; the prefix before the dot names the provider
    method: str
    path: re.Pattern[str]
    read: Callable[[Request], Ask]
    render: Callable[[Request, Reply], Plan]
    error_body: Callable[[int, str], dict[str, Any]]
    id_prefix: str = ""


_ENCODER = json.JSONEncoder(separators=(",", ":"))  # one instance: json.dumps rebuilds it per call


def dumps(value: Any) -> bytes:
    return _ENCODER.encode(value).encode()


def sse(data: Any, event: str | None = None) -> bytes:
    """One server-sent event; `data` is JSON-encoded unless it is already bytes."""
    payload = data if isinstance(data, bytes) else dumps(data)
    if event is None:
        return b"data: " + payload + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + payload + b"\n\n"


def optional_int(body: dict[str, Any], *names: str) -> int | None:
    """The first of `names` present in the body as an integer, else None."""
    for name in names:
        value = body.get(name)
        if value is not None:
            if not isinstance(value, int) or isinstance(value, bool):
                raise BadRequest(f"{name} must be an integer")
            return value
    return None
