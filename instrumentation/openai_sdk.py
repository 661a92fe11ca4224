"""Patch points of the openai SDK (1.x to 3.x): the resource methods every helper goes through."""

from __future__ import annotations

import functools
from typing import Any

from thinkmeter.instrumentation._endpoints import EndpointResolver
from thinkmeter.instrumentation._patch import Patcher, async_wrapper, sync_wrapper
from thinkmeter.instrumentation._stainless import rebuild_cached_wrappers
from thinkmeter.instrumentation._telemetry import Telemetry
from thinkmeter.instrumentation.openai_chat import ChatSurface
from thinkmeter.instrumentation.openai_responses import ResponsesSurface, ResumedStreamSurface

CHAT = "openai.resources.chat.completions.completions"
# openai 1.x kept parse() on the beta resource.
BETA_CHAT = "openai.resources.beta.chat.completions"
RESPONSES = "openai.resources.responses.responses"


def instrument(patcher: Patcher, telemetry: Telemetry, resolver: EndpointResolver) -> None:
    chat = ChatSurface(telemetry, resolver)
    responses = ResponsesSurface(telemetry, resolver)
    resumed = ResumedStreamSurface(telemetry, resolver)
    # stream() helpers call create(); parse() posts directly, so it is patched on its own.
    for module, sync_class, async_class, methods, surface in (
        (CHAT, "Completions", "AsyncCompletions", ("create", "parse"), chat),
        (BETA_CHAT, "Completions", "AsyncCompletions", ("parse",), chat),
        (RESPONSES, "Responses", "AsyncResponses", ("create", "parse"), responses),
        (RESPONSES, "Responses", "AsyncResponses", ("retrieve",), resumed),
    ):
        patcher.on_import(module, functools.partial(_patch, patcher, module, sync_class, async_class, methods, surface))


def _patch(patcher: Patcher, module: str, sync_class: str, async_class: str, methods: tuple[str, ...], surface: Any) -> None:
    for method in methods:
        patcher.wrap(module, f"{sync_class}.{method}", sync_wrapper(surface))
        patcher.wrap(module, f"{async_class}.{method}", async_wrapper(surface))
    rebuild_cached_wrappers(patcher, module, (sync_class, async_class))
