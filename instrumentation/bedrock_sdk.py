"""Patch point of boto3 / botocore for Amazon Bedrock Runtime: every client method goes through
BaseClient._make_api_call(operation_name, api_params); only the four Bedrock Runtime generation
operations are traced, everything else passes straight through."""

from __future__ import annotations

from typing import Any, Callable

from thinkmeter.instrumentation._endpoints import EndpointResolver
from thinkmeter.instrumentation._patch import Patcher, sync_wrapper
from thinkmeter.instrumentation._telemetry import Telemetry
from thinkmeter.instrumentation.bedrock_runtime import BedrockSurface

SERVICE = "bedrock-runtime"
# operation name -> (converse shape, streamed)
OPERATIONS = {
    "Converse": (True, False),
    "ConverseStream": (True, True),
    "InvokeModel": (False, False),
    "InvokeModelWithResponseStream": (False, True),
}


def instrument(patcher: Patcher, telemetry: Telemetry, resolver: EndpointResolver) -> None:
    wrappers = {
        operation: sync_wrapper(BedrockSurface(telemetry, resolver, converse=converse, stream=stream))
        for operation, (converse, stream) in OPERATIONS.items()
    }
    # Patched when the application imports botocore (0.7 s): thinkmeter never imports it itself.
    patcher.wrap_on_import("botocore.client", "BaseClient._make_api_call", _dispatch(wrappers))


def _dispatch(wrappers: dict[str, Callable[..., Any]]) -> Callable[..., Any]:
    def make_api_call(wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict[str, Any]) -> Any:
        if len(args) == 2 and not kwargs:
            wrapper = wrappers.get(args[0])
            service = getattr(getattr(instance, "_service_model", None), "service_name", None)
            if wrapper is not None and service == SERVICE:
                return wrapper(wrapped, instance, (), {"operation_name": args[0], "api_params": args[1]})
        return wrapped(*args, **kwargs)

    return make_api_call
