"""One daemon thread that does work handed over by the application's threads, in order.

The instrumentation hands it the end of a call (attributes, the OTel SDK span, metrics: most of a
call's cost) when the spans go to thinkmeter's own exporter, and the metrics of a call when an
application's meter provider takes them, so the caller's thread only appends to a deque. Nothing is
dropped: while the thread is behind by MAX_PENDING items, callers do the work themselves. A forked
child starts with an empty queue and its own thread, started on first use.
"""

from __future__ import annotations

import functools
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

from thinkmeter.instrumentation._safety import log_once

MAX_PENDING = 10_000
YIELD_S = 0.001
# The thread wakes every PERIOD_S, or at once when WAKE_AT items wait: waking it per item cost the
# caller's thread a GIL handover per call, and at 10 calls/s waking every 50 ms cost 400 us per call.
PERIOD_S = 0.5
WAKE_AT = 256


class Background:
    def __init__(self, name: str) -> None:
        self._name = name
        self._reset()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=functools.partial(_reset_after_fork, weakref.ref(self)))

    def _reset(self) -> None:
        self._pending: deque[Any] = deque()
        self._wake = threading.Event()
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, run: Callable[[Any], None], item: Any) -> bool:
        """Queue run(item) for the thread; False (the caller runs it) when closed or too far behind."""
        if (self._thread is None or self._closed) and not self._start():
            return False
        pending = self._pending
        if len(pending) >= MAX_PENDING:
            return False
        pending.append((run, item))
        if len(pending) >= WAKE_AT and not self._wake.is_set():
            self._wake.set()
        return True

    def drain(self, timeout_s: float) -> bool:
        """Wait until everything submitted so far is done; False on timeout."""
        if self._thread is None:
            return True
        done = threading.Event()
        self._pending.append(done)
        self._wake.set()
        return done.wait(timeout_s)

    def close(self, timeout_s: float) -> bool:
        """Finish what is pending and stop the thread; later submits are refused."""
        with self._start_lock:
            self._closed = True
        drained = self.drain(timeout_s)
        if self._thread is not None:
            self._pending.append(None)
            self._wake.set()
        return drained

    def _start(self) -> bool:
        with self._start_lock:
            if self._closed:
                return False
            if self._thread is None:
                thread = threading.Thread(target=self._work, args=(self._pending, self._wake), name=self._name, daemon=True)
                thread.start()
                self._thread = thread
            return True

    def _work(self, pending: deque[Any], wake: threading.Event) -> None:
        clock = time.perf_counter
        while True:
            wake.wait(PERIOD_S)
            wake.clear()
            held_since = clock()
            while pending:
                entry = pending.popleft()
                if entry is None:
                    return
                if isinstance(entry, threading.Event):
                    entry.set()
                    continue
                try:
                    run, item = entry
                    run(item)
                except Exception:
                    log_once(f"{self._name}.run", "thinkmeter: %s failed; the call is recorded without some figures", self._name)
                # Through a backlog, hand the GIL over every YIELD_S: an application thread waiting for it
                # then waits that long at most, not the interpreter's 5 ms switch interval. (Not after
                # every item: a GIL handover costs about what an item does.)
                if clock() - held_since > YIELD_S:
                    time.sleep(0)
                    held_since = clock()


def _reset_after_fork(ref: weakref.ref[Background]) -> None:
    background = ref()
    if background is not None:
        background._reset()
