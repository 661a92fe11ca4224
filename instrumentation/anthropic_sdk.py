"""Patch points of the anthropic SDK (0.40 to 2.x): the Messages resources, plain and beta.

create() and parse() post the request themselves; stream() builds a manager that posts on enter, so
it is patched on its own (it does not go through create()). Beta message threads and tool runners
call beta create() / stream() and are covered by them.
"""

from __future__ import annotations

import functools
from typing import Any

from thinkmeter.instrumentation._endpoints import EndpointResolver
from thinkmeter.instrumentation._patch import Patcher, async_wrapper, sync_wrapper
from thinkmeter.instrumentation._stainless import rebuild_cached_wrappers
from thinkmeter.instrumentation._telemetry import Telemetry
from thinkmeter.instrumentation.anthropic_messages import MessagesSurface, stream_manager_wrapper

MESSAGES = "anthropic.resources.messages.messages"
BETA_MESSAGES = "anthropic.resources.beta.messages.messages"
# Older anthropic SDKs (0.40) kept messages in a module named after the resource.
OLD_MESSAGES = "anthropic.resources.messages"
OLD_BETA_MESSAGES = "anthropic.resources.beta.messages"


def instrument(patcher: Patcher, telemetry: Telemetry, resolver: EndpointResolver) -> None:
    surface = MessagesSurface(telemetry, resolver)
    stream = stream_manager_wrapper(surface)
    for module in (MESSAGES, BETA_MESSAGES, OLD_MESSAGES, OLD_BETA_MESSAGES):
        patcher.on_import(module, functools.partial(_patch, patcher, module, surface, stream))


def _patch(patcher: Patcher, module: str, surface: MessagesSurface, stream: Any) -> None:
    for method in ("create", "parse"):
        patcher.wrap(module, f"Messages.{method}", sync_wrapper(surface))
        patcher.wrap(module, f"AsyncMessages.{method}", async_wrapper(surface))
    patcher.wrap(module, "Messages.stream", stream)
    patcher.wrap(module, "AsyncMessages.stream", stream)
    rebuild_cached_wrappers(patcher, module, ("Messages", "AsyncMessages"))
