"""What the two Stainless-generated SDKs (openai, anthropic) share: resources that hold their client,
and the raw-response modes the SDK marks with a request header."""

from __future__ import annotations

from typing import Any, Callable

from thinkmeter.instrumentation._endpoints import EndpointResolver
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
    """with_raw_response: the parsed body is cached by the SDK, so reading it here costs the caller
    nothing. with_streaming_response and raw streams keep their body unread: no usage, said so."""
    if mode == "true" and not call.record.stream:
        read(call.record, result.parse())
    call.finish()
    return result
