"""What the two Stainless-generated SDKs (openai, anthropic) share: resources that hold their client,
and the raw-response modes the SDK marks with a request header."""

from __future__ import annotations

import functools
import inspect
import itertools
import sys
from typing import Any, Callable

from thinkmeter.instrumentation._endpoints import EndpointResolver
from thinkmeter.instrumentation._patch import Patcher
from thinkmeter.instrumentation._telemetry import Call, Telemetry
from thinkmeter.instrumentation._tokenize import TOKENIZING_ENGINES
from thinkmeter.schemas.record import CallRecord

RAW_RESPONSE_HEADER = "X-Stainless-Raw-Response"


def raw_response_mode(kwargs: dict[str, Any]) -> str | None:
    """"true" (anthropic 1.x+: "raw") for with_raw_response, "stream" for with_streaming_response, else None."""
    headers = kwargs.get("extra_headers")
    return headers.get(RAW_RESPONSE_HEADER) if headers else None


def start_call(
    telemetry: Telemetry, resolver: EndpointResolver, instance: Any, record: CallRecord, default: str | None = None
) -> Call:
    """Start a call of an SDK resource (`instance`); `default` as in EndpointResolver.resolve()."""
    endpoint = resolver.resolve(instance._client.base_url, default)
    record.provider = endpoint.provider
    record.engine = endpoint.engine
    record.server_address = endpoint.address
    record.server_port = endpoint.port
    call = Call(telemetry, record)
    if endpoint.engine in TOKENIZING_ENGINES:
        call.engine_origin = endpoint.origin
    return call


def deliver_raw(call: Call, result: Any, mode: str, read: Callable[[CallRecord, Any], None]) -> Any:
    """with_raw_response ("true"; "raw" in newer SDKs): the body of a non-streamed reply has been read
    by now, and the SDK caches what it parses, so reading it here costs the caller nothing.
    with_streaming_response ("stream") and raw streams keep their body unread: no usage, said so."""
    if mode in ("true", "raw") and not call.record.stream:
        read(call.record, _parsed(result))
    call.finish()
    return result


def _parsed(result: Any) -> Any:
    if not inspect.iscoroutinefunction(result.parse):
        return result.parse()
    # An async response parses in a coroutine only the caller can await; the synchronous parser
    # behind it works on the body, which a non-streamed reply has read already.
    return result._parse()


_CACHED_WRAPPERS = ("with_raw_response", "with_streaming_response")
_generations = itertools.count()


class _BuiltAfterPatching:
    """Stands over a resource's cached `with_raw_response` / `with_streaming_response`. The SDK builds
    that wrapper once per resource and keeps the methods it found then, so one built before
    instrument() would call unpatched methods for the client's lifetime. A data descriptor wins over
    that cached copy: each resource gets a wrapper built while the patches are on."""

    def __init__(self, cached: functools.cached_property, generation: int) -> None:
        self._build = cached.func
        self._key = f"_thinkmeter_{cached.attrname}_{generation}"

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        cache = instance.__dict__
        try:
            return cache[self._key]
        except KeyError:
            wrapper = cache[self._key] = self._build(instance)
            return wrapper

    def __set__(self, instance: Any, value: Any) -> None:
        instance.__dict__[self._key] = value


def rebuild_cached_wrappers(patcher: Patcher, module_name: str, class_names: tuple[str, ...]) -> None:
    """Make the raw- and streaming-response wrappers of these resource classes call the patched methods,
    also on clients whose wrappers were made before instrument()."""
    generation = next(_generations)
    module = sys.modules.get(module_name)
    for class_name in class_names:
        owner = getattr(module, class_name, None)
        for name in _CACHED_WRAPPERS:
            cached = vars(owner).get(name) if isinstance(owner, type) else None
            if isinstance(cached, functools.cached_property):
                patcher.replace(owner, name, _BuiltAfterPatching(cached, generation))
