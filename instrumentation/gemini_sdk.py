"""Patch points of the google-genai SDK: the public Models / AsyncModels methods.

Chat sessions (client.chats, client.aio.chats) call these too. The private _generate_content* methods
run once per continuation hop; the public ones once per call, with the usage summed over hops.
"""

from __future__ import annotations

from thinkmeter.instrumentation._endpoints import EndpointResolver
from thinkmeter.instrumentation._patch import Patcher, async_wrapper, sync_wrapper
from thinkmeter.instrumentation._telemetry import Telemetry
from thinkmeter.instrumentation.gemini_models import GenerateContentSurface

MODELS = "google.genai.models"


def instrument(patcher: Patcher, telemetry: Telemetry, resolver: EndpointResolver) -> None:
    for method, stream in (("generate_content", False), ("generate_content_stream", True)):
        surface = GenerateContentSurface(telemetry, resolver, stream)
        patcher.wrap_on_import(MODELS, f"Models.{method}", sync_wrapper(surface))
        patcher.wrap_on_import(MODELS, f"AsyncModels.{method}", async_wrapper(surface))
