"""Reading values off SDK replies without trusting their shape: a field that is missing, or holds
the wrong kind of value, reads as None (unknown), never as an error or a wrong number."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


def field(source: Any, name: str) -> Any:
    """A field of an SDK object (declared or extra) or of a plain dict; None when absent."""
    if isinstance(source, BaseModel):
        # Declared fields sit in __dict__ and unknown ones in __pydantic_extra__: looking there costs
        # a missing field no AttributeError (pydantic's __getattr__ raises one, slowly).
        values = source.__dict__
        if name in values:
            return values[name]
        extra = source.__pydantic_extra__
        return extra.get(name) if extra else None
    if isinstance(source, dict):
        return source.get(name)
    if source is None:
        return None
    return getattr(source, name, None)


def known_text(value: Any) -> str | None:
    """A reported name, id or reason; None when the reply carried something else in its place."""
    return value if isinstance(value, str) else None


def count(source: Any, name: str) -> int | None:
    """A reported count; None (unknown) when it cannot be one: not an int, negative, or past Int64."""
    return as_count(field(source, name))


def as_count(value: Any) -> int | None:
    """A count (reported, or asked for in a request); None when it cannot be one."""
    return value if type(value) is int and 0 <= value < 2**63 else None


def number(source: Any, name: str) -> float | None:
    """A reported amount (seconds, USD); None when it is not a number."""
    value = field(source, name)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
