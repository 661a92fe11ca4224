"""Gemini contents and parts in the chat-message shape that content capture reads (`_content.py`).

Gemini says "model" where the GenAI semconv says "assistant", keeps text in `parts`, and takes a bare
string, a part, or a list of them as the user's turn. Thought parts are reasoning, not the answer:
they are left out of the output.
"""

from __future__ import annotations

from typing import Any

from thinkmeter.instrumentation._values import field

ROLES = {"model": "assistant"}
# Part fields that are not text, by the name the captured part keeps as its type.
DATA_FIELDS = ("function_call", "function_response", "inline_data", "file_data", "executable_code", "code_execution_result")


def _part(part: Any) -> dict[str, Any]:
    if isinstance(part, str):
        return {"type": "text", "text": part}
    text = field(part, "text")
    if isinstance(text, str):
        return {"type": "text", "text": text}
    return {"type": next((name for name in DATA_FIELDS if field(part, name) is not None), "unknown")}


def _parts(value: Any) -> list[dict[str, Any]]:
    """A string, a part, a Content or a list of parts, as parts."""
    parts = field(value, "parts") if not isinstance(value, (str, list, tuple)) else None
    items = parts if parts is not None else value if isinstance(value, (list, tuple)) else (value,)
    return [_part(item) for item in items]


def input_messages(contents: Any, system_instruction: Any) -> list[dict[str, Any]]:
    """One message per Content; a bare string or part is a user turn."""
    messages = [] if system_instruction is None else [{"role": "system", "content": _parts(system_instruction)}]
    for item in contents if isinstance(contents, (list, tuple)) else (contents,):
        role = field(item, "role") if not isinstance(item, str) else None
        messages.append({"role": ROLES.get(role, role) or "user", "content": _parts(item)})
    return messages


def answer_parts(content: Any) -> list[dict[str, Any]]:
    """The parts of a candidate's content that are answer, not thought."""
    return [_part(part) for part in field(content, "parts") or () if not field(part, "thought")]
