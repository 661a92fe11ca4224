"""Opt-in capture of prompts and completions as gen_ai.input.messages / gen_ai.output.messages.

Off by default. When on, every text goes through the redaction hook and then a length budget before it
is put on the span, so nothing unredacted or unbounded ever leaves the process. A redaction hook that
fails drops the content of that call (fail closed) instead of recording it unredacted.
The JSON follows the GenAI semconv message schemas: [{"role", "parts": [{"type": "text", "content"}, ...],
"finish_reason"?}]; parts that are not text (images, audio, files) keep their type, never their data.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from thinkmeter.instrumentation._safety import log_once
from thinkmeter.schemas import semconv as sc
from thinkmeter.schemas.record import CallRecord

Redact = Callable[[str], str]
TRUNCATED = "…[truncated]"


class _Budget:
    """Characters left for one attribute: texts past it are cut, so the JSON stays valid and bounded."""

    __slots__ = ("left",)

    def __init__(self, chars: int) -> None:
        self.left = chars


class ContentCapture:
    """Turns SDK messages into redacted, length-limited semconv message JSON."""

    def __init__(self, max_chars: int, redact: Redact | None = None) -> None:
        self.max_chars = max_chars
        self.redact = redact

    # ---- building blocks

    def _text(self, value: Any, budget: _Budget) -> str:
        text = value if isinstance(value, str) else str(value)
        if self.redact is not None:
            text = self.redact(text)
            if not isinstance(text, str):
                raise TypeError(
                    f"the redact hook returned {type(text).__name__}, not str"
                )
        if len(text) <= budget.left:
            budget.left -= len(text)
            return text
        kept = text[: budget.left]
        budget.left = 0
        return kept + TRUNCATED

    def _parts(self, content: Any, budget: _Budget) -> list[dict[str, Any]]:
        if content is None:
            return []
        if isinstance(content, str):
            return [{"type": "text", "content": self._text(content, budget)}]
        parts = []
        for part in content if isinstance(content, Iterable) else (content,):
            kind = _get(part, "type")
            text = _get(part, "text")
            if text is None and kind in ("text", "input_text", "output_text"):
                text = _get(part, "content")
            if isinstance(text, str):
                parts.append({"type": "text", "content": self._text(text, budget)})
            elif kind == "refusal" and isinstance(_get(part, "refusal"), str):
                parts.append(
                    {
                        "type": "text",
                        "content": self._text(_get(part, "refusal"), budget),
                    }
                )
            else:
                parts.append({"type": str(kind or "unknown")})
        return parts

    def _tool_calls(self, tool_calls: Any, budget: _Budget) -> list[dict[str, Any]]:
        parts = []
        for tool_call in tool_calls or ():
            function = _get(tool_call, "function") or tool_call
            arguments = _get(function, "arguments")
            part = {
                "type": "tool_call",
                "id": _get(tool_call, "id") or _get(tool_call, "call_id"),
                "name": _get(function, "name"),
            }
            if arguments is not None:
                part["arguments"] = self._text(arguments, budget)
            parts.append(part)
        return parts

    def _message(
        self, message: Any, budget: _Budget, default_role: str
    ) -> dict[str, Any]:
        role = _get(message, "role") or default_role
        if role == "tool" or _get(message, "type") == "function_call_output":
            output = (
                _get(message, "content") if role == "tool" else _get(message, "output")
            )
            response = self._text(
                output if isinstance(output, str) else json.dumps(output, default=str),
                budget,
            )
            part = {
                "type": "tool_call_response",
                "id": _get(message, "tool_call_id") or _get(message, "call_id"),
                "response": response,
            }
            return {"role": "tool", "parts": [part]}
        if _get(message, "type") == "function_call":
            return {"role": "assistant", "parts": self._tool_calls([message], budget)}
        parts = self._parts(_get(message, "content"), budget)
        parts += self._tool_calls(_get(message, "tool_calls"), budget)
        return {"role": str(role), "parts": parts}

    def _dump(self, messages: list[dict[str, Any]]) -> str:
        return json.dumps(messages, ensure_ascii=False, default=str)

    # ---- what the surfaces call

    def input_messages(self, messages: Any, instructions: Any = None) -> str:
        """gen_ai.input.messages of Chat `messages` or a Responses `input` (str or items)."""
        budget = _Budget(self.max_chars)
        result = []
        if isinstance(instructions, str):
            result.append(
                {
                    "role": "system",
                    "parts": [
                        {"type": "text", "content": self._text(instructions, budget)}
                    ],
                }
            )
        if isinstance(messages, str):
            result.append(
                {
                    "role": "user",
                    "parts": [
                        {"type": "text", "content": self._text(messages, budget)}
                    ],
                }
            )
        else:
            result += [self._message(m, budget, "user") for m in messages or ()]
        return self._dump(result)

    def output_messages(self, outputs: Iterable[tuple[Any, Any, str | None]]) -> str:
        """gen_ai.output.messages of (content, tool_calls, finish_reason) per choice / output message."""
        budget = _Budget(self.max_chars)
        result = []
        for content, tool_calls, finish_reason in outputs:
            message: dict[str, Any] = {
                "role": "assistant",
                "parts": self._parts(content, budget)
                + self._tool_calls(tool_calls, budget),
            }
            if finish_reason:
                message["finish_reason"] = finish_reason
            result.append(message)
        return self._dump(result)


def capture(record: CallRecord, attribute: str, build: Callable[[], str]) -> None:
    """Put captured content on the record; a failing redact hook or odd message drops it, logged once."""
    try:
        record.attributes[attribute] = build()
    except Exception:  # noqa: BLE001  (any failure here must only cost the content)
        log_once(
            f"content:{attribute}",
            "thinkmeter: content capture failed (redact hook or message shape); %s not recorded",
            attribute,
        )


def capture_input(
    capture_content: ContentCapture | None,
    record: CallRecord,
    messages: Any,
    instructions: Any = None,
) -> None:
    # Only text, a list or a tuple is read: any other iterable (a generator) would be used up here,
    # before the SDK sends it.
    if capture_content is not None and isinstance(messages, (str, list, tuple)):
        capture(
            record,
            sc.INPUT_MESSAGES,
            lambda: capture_content.input_messages(messages, instructions),
        )


def _get(item: Any, name: str) -> Any:
    """A field of an SDK message: a dict key (request side) or a pydantic attribute (reply side)."""
    if isinstance(item, Mapping):
        return item.get(name)
    return getattr(item, name, None)


def capture_output(
    content: ContentCapture, record: CallRecord, outputs: Callable[[], Iterable[tuple[Any, Any, str | None]]]
) -> None:
    """gen_ai.output.messages of (content, tool_calls, finish_reason) per choice. `outputs` is read
    inside the guard: an odd reply drops the content, never the call."""
    capture(record, sc.OUTPUT_MESSAGES, lambda: content.output_messages(outputs()))


class StreamedAnswers:
    """The answer text of a stream per choice index, for content capture. Text beyond the capture
    limit would be cut anyway, so only that much is kept: memory stays flat on long answers."""

    __slots__ = ("content", "room", "texts")

    def __init__(self, content: ContentCapture) -> None:
        self.content = content
        self.texts: dict[Any, list[str]] = {}
        self.room = content.max_chars

    def add(self, index: Any, text: str) -> None:
        if self.room > 0:
            self.texts.setdefault(index, []).append(text[: self.room + 1])
            self.room -= len(text)

    def capture(self, record: CallRecord, finish_reasons: Mapping[Any, str | None]) -> None:
        """One output message per choice that streamed text or a finish reason, in index order."""

        def outputs() -> list[tuple[str, None, str | None]]:
            indexes = sorted(set(self.texts) | set(finish_reasons))
            return [("".join(self.texts.get(i, ())), None, finish_reasons.get(i)) for i in indexes]

        capture_output(self.content, record, outputs)


def streamed_answers(content: ContentCapture | None) -> StreamedAnswers | None:
    """A keeper of streamed answer text while content capture is on, else None."""
    return StreamedAnswers(content) if content is not None else None
