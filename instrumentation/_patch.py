"""Wrapping SDK methods: one generic sync and one async wrapper around a Surface, and undo."""

from __future__ import annotations

import contextvars
import importlib
import inspect
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

    # Optional: `inject(record, kwargs, caps) -> list[str]` puts a budget class's caps into the request
    # in the provider's own form where the caller set none (instrumentation/_budget.py).


# Set while a call through a library that reaches providers with other SDKs (LiteLLM) is traced: the
# SDK calls it makes inside are the same call and stay untraced, so nothing is counted twice.
_outer_call: contextvars.ContextVar[bool] = contextvars.ContextVar("thinkmeter_outer_call", default=False)


@dont_throw
def begin_call(surface: Surface, instance: Any, kwargs: dict[str, Any]) -> Call | None:
    """surface.begin, guarded: a failure leaves the call untraced (None) instead of failing it."""
    if _outer_call.get():
        return None
    return surface.begin(instance, kwargs)


def refused(surface: Surface, call: Call, kwargs: dict[str, Any]) -> BaseException | None:
    """The budget policy's word on a call about to be sent: it may change kwargs (the provider's own
    knobs), watch the stream, or refuse the call; a refused call's span ends here. Never raises."""
    budgets = call.telemetry.budgets
    if budgets is None:
        return None
    rejection = budgets.admit(surface, call, kwargs)
    if rejection is not None:
        end_call(call, None)
    return rejection


@dont_throw
def end_call(call: Call, error: BaseException | None) -> None:
    """call.finish, guarded: the caller's result or exception goes on whatever happens here."""
    call.finish(error)


def _deliver(surface: Surface, call: Call, result: Any, kwargs: dict[str, Any], is_async: bool) -> Any:
    try:
        return surface.deliver(call, result, kwargs, is_async)
    except Exception:
        log_once(f"{type(surface).__name__}.deliver", "thinkmeter: cannot read an LLM reply; the call is recorded without it")
        end_call(call, None)
        return result


def sync_wrapper(surface: Surface, *, outer: bool = False) -> Callable[..., Any]:
    """`outer`: the method reaches providers through other (possibly patched) SDKs, whose calls inside
    it stay untraced."""

    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict[str, Any]) -> Any:
        call = begin_call(surface, instance, kwargs)
        if call is None:
            return wrapped(*args, **kwargs)
        rejection = refused(surface, call, kwargs)
        if rejection is not None:
            raise rejection
        token = _outer_call.set(True) if outer else None
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as error:
            end_call(call, error)
            raise
        finally:
            if token is not None:
                _outer_call.reset(token)
        return _deliver(surface, call, result, kwargs, False)

    return wrapper


def async_wrapper(surface: Surface, *, outer: bool = False) -> Callable[..., Any]:
    async def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict[str, Any]) -> Any:
        call = begin_call(surface, instance, kwargs)
        if call is None:
            return await wrapped(*args, **kwargs)
        rejection = refused(surface, call, kwargs)
        if rejection is not None:
            raise rejection
        token = _outer_call.set(True) if outer else None
        try:
            result = await wrapped(*args, **kwargs)
        except BaseException as error:
            end_call(call, error)
            raise
        finally:
            if token is not None:
                _outer_call.reset(token)
        return _deliver(surface, call, result, kwargs, True)

    return wrapper


def by_keyword(wrapper: Callable[..., Any]) -> Callable[..., Any]:
    """Let a wrapper whose Surface reads keyword arguments serve a method that callers also give
    positional arguments (ollama's chat(model, messages), transformers' generate(input_ids)): the
    method is then called with the same arguments, all by name."""
    names: tuple[str, ...] | None = None

    def adapted(wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict[str, Any]) -> Any:
        nonlocal names
        if not args:
            return wrapper(wrapped, instance, args, kwargs)
        if names is None:
            parameters = inspect.signature(wrapped).parameters.values()
            names = tuple(p.name for p in parameters if p.kind is p.POSITIONAL_OR_KEYWORD)
        named = names[: len(args)]
        if len(args) > len(names) or any(name in kwargs for name in named):
            return wrapped(*args, **kwargs)  # a call the method rejects: let it say so, untraced
        return wrapper(wrapped, instance, (), {**dict(zip(named, args)), **kwargs})

    return adapted


class Patcher:
    """Applies wrappers to `module:Class.method` (or `module:function`) targets and takes them off again."""

    def __init__(self) -> None:
        self._applied: list[tuple[Any, str, Any]] = []
        self._generation = 0  # bumped by unwrap_all, so import hooks of an undone patcher do nothing

    def on_import(self, module_name: str, patch: Callable[[], None]) -> None:
        """Run `patch` once `module_name` is imported (at once if it already is): thinkmeter never imports
        an SDK itself, so an application pays only for the SDKs it uses (transformers pulls in torch)."""
        generation = self._generation

        @dont_throw  # runs inside the host's import statement
        def hook(_module: Any) -> None:
            if generation == self._generation:
                patch()

        wrapt.register_post_import_hook(hook, module_name)

    def wrap_on_import(self, module_name: str, target: str, wrapper: Callable[..., Any]) -> None:
        """Wrap one method once `module_name` is imported."""
        self.on_import(module_name, lambda: self.wrap(module_name, target, wrapper))

    def wrap(self, module_name: str, target: str, wrapper: Callable[..., Any]) -> None:
        """Wrap one method; a method this SDK version lacks is skipped (older SDKs miss some)."""
        try:
            module = importlib.import_module(module_name)
            owner_name, _, method = target.rpartition(".")
            owner = getattr(module, owner_name) if owner_name else module
            original = owner.__dict__[method]
        except (ImportError, AttributeError, KeyError):
            return
        if any(applied is owner and name == method for applied, name, _ in self._applied):
            return  # one class re-exported under a second module path: wrap it once
        wrapt.wrap_function_wrapper(owner, method, wrapper)
        self._applied.append((owner, method, original))

    def replace(self, owner: type, name: str, value: Any) -> None:
        """Put `value` in place of a class attribute until unwrap_all."""
        if any(applied is owner and applied_name == name for applied, applied_name, _ in self._applied):
            return
        original = owner.__dict__[name]
        setattr(owner, name, value)
        self._applied.append((owner, name, original))

    def unwrap_all(self) -> None:
        self._generation += 1
        for owner, method, original in reversed(self._applied):
            setattr(owner, method, original)
        self._applied.clear()


def given(value: Any) -> Any:
    """A keyword argument's value, or None when absent or the SDK's omit / NOT_GIVEN / UNSET sentinel."""
    if value is None or type(value).__name__ in ("Omit", "NotGiven", "Unset"):
        return None
    return value
