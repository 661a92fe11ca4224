"""Guards that keep thinkmeter's own failures out of the host application."""

from __future__ import annotations

import functools
import logging
from typing import Callable, TypeVar

logger = logging.getLogger("thinkmeter")

_reported: set[str] = set()
F = TypeVar("F", bound=Callable)


def log_once(key: str, message: str, *args: object) -> None:
    """Log a problem the first time it happens; a broken hook must not flood the host's logs."""
    if key not in _reported:
        _reported.add(key)
        logger.warning(message, *args, exc_info=True)


def dont_throw(fn: F) -> F:
    """Run a telemetry hook; on any exception log it once and return None instead of raising."""

    @functools.wraps(fn)
    def guarded(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception:
            log_once(fn.__qualname__, "thinkmeter: %s failed; the call goes on untraced", fn.__qualname__)
            return None

    return guarded  # type: ignore[return-value]
