"""Attribution tags (tenant, user, session, feature, task_class) carried in a contextvar."""

from __future__ import annotations

import contextvars
import functools
import inspect
from typing import Any, Callable

from thinkmeter.schemas.semconv import TAG_ATTRIBUTES

_current: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("thinkmeter_tags", default={})


def current_tag_attributes() -> dict[str, str]:
    """Span attributes of the tags in force, e.g. {"thinkmeter.tenant": "acme"}."""
    return _current.get()


def push_tag_attributes(attributes: dict[str, str]) -> contextvars.Token:
    """Put span attributes on top of the tags in force (inner values win); undo with reset_tag_attributes."""
    return _current.set({**_current.get(), **attributes})


def reset_tag_attributes(token: contextvars.Token) -> None:
    _current.reset(token)


def tag_text(name: str, value: object) -> str:
    """A tag value as stored: any text verbatim; bytes and text that is not valid Unicode are refused,
    since the store keeps UTF-8 and would otherwise hold something other than what was passed."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(f"thinkmeter.tags({name}=...) got bytes; pass text (decode it first)")
    text = str(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"thinkmeter.tags({name}=...) is not valid UTF-8 text ({exc.reason} at {exc.start})") from None
    return text


class tags:
    """Attach attribution to every LLM call made inside: a context manager and a decorator.

    >>> with thinkmeter.tags(tenant="acme", feature="search"):
    ...     client.chat.completions.create(...)

    Tags nest (inner values win) and follow asyncio tasks, since they live in a contextvar.
    """

    def __init__(self, **values: object) -> None:
        unknown = set(values) - set(TAG_ATTRIBUTES)
        if unknown:
            raise TypeError(
                f"thinkmeter.tags() got unknown tag(s) {sorted(unknown)}; use {sorted(TAG_ATTRIBUTES)}"
            )
        self._attributes = {TAG_ATTRIBUTES[k]: tag_text(k, v) for k, v in values.items() if v is not None}
        self._tokens: list[contextvars.Token] = []

    def _push(self) -> contextvars.Token:
        return push_tag_attributes(self._attributes)

    def __enter__(self) -> tags:
        self._tokens.append(self._push())
        return self

    def __exit__(self, *exc: object) -> None:
        _current.reset(self._tokens.pop())

    def __call__(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_tagged(*args: Any, **kwargs: Any) -> Any:
                token = self._push()
                try:
                    return await fn(*args, **kwargs)
                finally:
                    _current.reset(token)

            return async_tagged

        @functools.wraps(fn)
        def tagged(*args: Any, **kwargs: Any) -> Any:
            # A token per call: one decorated function may run in many threads and tasks at once.
            token = self._push()
            try:
                return fn(*args, **kwargs)
            finally:
                _current.reset(token)

        return tagged
