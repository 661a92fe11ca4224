"""Reasoning text counted with the engine's own tokenizer, off the caller's thread.

Engines that stream their raw reasoning as text but count none of it apart (llama.cpp) expose the
model's tokenizer at `/tokenize`. The reasoning span is counted as the model generated it, between its
`<think>` tags (tags a model has as single tokens count as one each). One daemon thread asks the engine;
the call's span waits for the answer there, never on the caller. Nothing blocks: a full queue, an engine
without `/tokenize`, or one that does not answer in time leaves the 4-characters-per-token estimate that
is already on the record. Counts are cached per engine and text, and the caches are bounded.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Callable

from thinkmeter.schemas.semconv import ENGINE_LLAMA_CPP

# Engines whose /tokenize thinkmeter speaks, and the reasoning markers their reasoning parsers strip.
TOKENIZING_ENGINES = frozenset({ENGINE_LLAMA_CPP})
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
_MAX_PENDING = 256
_MAX_CACHED = 1024
_TIMEOUT_S = 2.0
_RETRY_AFTER_S = 60.0  # an engine that did not answer is not asked again for this long


class EngineTokenizer:
    """Counts texts with engines' `/tokenize` in one lazily started daemon thread."""

    def __init__(self) -> None:
        self._jobs: queue.Queue[tuple[str, str, Callable[[int | None], None]]] = queue.Queue(_MAX_PENDING)
        self._counts: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._unavailable: dict[str, float] = {}  # origin -> monotonic time until which it is not asked
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def submit(self, origin: str, text: str, done: Callable[[int | None], None]) -> bool:
        """Count `text` on the engine at `origin`, then call `done(count or None)` on the worker thread.
        False, without calling `done`, when it cannot be queued now (the caller finishes as it is)."""
        until = self._unavailable.get(origin)
        if until is not None and time.monotonic() < until:
            return False
        thread = self._thread
        if thread is None or not thread.is_alive():  # not started yet, or lost in a fork
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._jobs = queue.Queue(_MAX_PENDING)
                    self._thread = threading.Thread(target=self._run, name="thinkmeter-tokenize", daemon=True)
                    self._thread.start()
        try:
            self._jobs.put_nowait((origin, text, done))
        except queue.Full:
            return False
        return True

    def drain(self, timeout_s: float) -> bool:
        """Wait (at most timeout_s) until every queued count has been answered; True when none is left."""
        jobs = self._jobs
        deadline = time.monotonic() + timeout_s
        with jobs.all_tasks_done:
            while jobs.unfinished_tasks:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                jobs.all_tasks_done.wait(remaining)
        return True

    def _run(self) -> None:
        jobs = self._jobs
        while True:
            origin, text, done = jobs.get()
            try:
                done(self._count(origin, text))
            except Exception:  # done() guards itself; a failure here must not end the thread
                pass
            finally:
                jobs.task_done()

    def _count(self, origin: str, text: str) -> int | None:
        key = (origin, text)
        count = self._counts.get(key)
        if count is not None:
            self._counts.move_to_end(key)
            return count
        until = self._unavailable.get(origin)
        if until is not None and time.monotonic() < until:
            return None
        count = self._ask(origin, text)
        if count is None:
            self._unavailable[origin] = time.monotonic() + _RETRY_AFTER_S
            return None
        self._counts[key] = count
        if len(self._counts) > _MAX_CACHED:
            self._counts.popitem(last=False)
        return count

    def _ask(self, origin: str, text: str) -> int | None:
        """llama.cpp: POST /tokenize {"content", "parse_special"} -> {"tokens": [...]}."""
        body = json.dumps({"content": text, "add_special": False, "parse_special": True}).encode()
        request = urllib.request.Request(origin + "/tokenize", data=body, headers={"Content-Type": "application/json"})
        try:
            with self._opener.open(request, timeout=_TIMEOUT_S) as response:
                tokens = json.loads(response.read(4 * 1024 * 1024)).get("tokens")
        except (OSError, ValueError, AttributeError, urllib.error.HTTPError):
            return None
        return len(tokens) if isinstance(tokens, list) else None


def reasoning_span(text: str) -> str:
    """The reasoning as the model generated it: between its tags, unless the text still carries them."""
    return text if text.lstrip().startswith(THINK_OPEN) else f"{THINK_OPEN}{text}{THINK_CLOSE}"
