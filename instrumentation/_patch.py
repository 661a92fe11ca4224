"""Wrapping SDK methods: one generic sync and one async wrapper around a Surface, and undo."""

from __future__ import annotations

import importlib
from typing import Any, Callable, Protocol

import wrapt

from thinkmeter.instrumentation._safety import dont_throw, log_once
from thinkmeter.instrumentation._telemetry import Call


class Surface(Protocol):
    """One API surface (e.g. chat completions): how to start a call and how to read its result."""

    def begin(self, instance: Any, kwargs: dict[str, Any]) -> Call | None:
        """Start the call; may adjust kwargs (e.g. ask for stream usage). None: leave it untraced."""

    def deliver(self, call: Call, result: Any, kwargs: dict[str, Any], is_async: bool) -> Any:
        """Read a non-streamed result and finish, or return a stream proxy that finishes later."""


@dont_throw
def _begin(surface: Surface, instance: Any, kwargs: dict[str, Any]) -> Call | None:
    return surface.begin(instance, kwargs)


@dont_throw
def _end(call: Call, error: BaseException | None) -> None:
    call.finish(error)


def _deliver(surface: Surface, call: Call, result: Any, kwargs: dict[str, Any], is_async: bool) -> Any:
    try:
        return surface.deliver(call, result, kwargs, is_async)
    except Exception:
        log_once(f"{type(surface).__name__}.deliver", "thinkmeter: cannot read an LLM reply; the call is recorded without it")
        _end(call, None)
        return result


def sync_wrapper(surface: Surface) -> Callable[..., Any]:
    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict[str, Any]) -> Any:
        call = _begin(surface, instance, kwargs)
        if call is None:
            return wrapped(*args, **kwargs)
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as error:
            _end(call, error)
            raise
        return _deliver(surface, call, result, kwargs, False)

    return wrapper


def async_wrapper(surface: Surface) -> Callable[..., Any]:
    async def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict[str, Any]) -> Any:
        call = _begin(surface, instance, kwargs)
        if call is None:
            return await wrapped(*args, **kwargs)
        try:
            result = await wrapped(*args, **kwargs)
        except BaseException as error:
            _end(call, error)
            raise
        return _deliver(surface, call, result, kwargs, True)

    return wrapper


class Patcher:
    """Applies wrappers to `module:Class.method` targets and takes them off again."""

    def __init__(self) -> None:
        self._applied: list[tuple[Any, str, Any]] = []

    def wrap(self, module_name: str, target: str, wrapper: Callable[..., Any]) -> None:
        """Wrap one method; a method this SDK version lacks is skipped (older SDKs miss some)."""
        try:
            module = importlib.import_module(module_name)
            owner_name, method = target.rsplit(".", 1)
            owner = getattr(module, owner_name)
            original = owner.__dict__[method]
        except (ImportError, AttributeError, KeyError):
            return
        wrapt.wrap_function_wrapper(owner, method, wrapper)
        self._applied.append((owner, method, original))

    def unwrap_all(self) -> None:
        for owner, method, original in reversed(self._applied):
            setattr(owner, method, original)
        self._applied.clear()


def given(value: Any) -> Any:
    """A keyword argument's value, or None when absent or the SDK's omit / NOT_GIVEN sentinel."""
    if value is None or type(value).__name__ in ("Omit", "NotGiven"):
        return None
    return value
