"""Tenant windows: `thinkmeter serve` publishes each tenant's spend and reasoning in the current window
to a small file in the data dir; applications read it at most every few seconds.

A file, not an HTTP endpoint: an application then needs no port, no connection and no request on its
call path, only a stat() every refresh (and a read of a few kilobytes when it changed);
`benchmarks/budgets.py` measures both ways (111 us of CPU a refresh as a file, 442 us over HTTP).
The file is replaced atomically (write, fsync, rename), so a reader never sees half of it.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thinkmeter.published import write_atomically

log = logging.getLogger("thinkmeter")

FILE_NAME = "tenant-windows.json"
PUBLISH_INTERVAL_S = 2.0
# Applications look at the file at most this often.
REFRESH_S = 2.0
# Figures older than this are stale: serve stopped or fell behind, and the limits fail open.
STALE_AFTER_S = 60.0


def window_start(now: float, window_s: int) -> int:
    """Start of the window holding `now`, windows aligned to the UTC epoch (a 1d window is the UTC day)."""
    return int(now // window_s) * window_s


_WINDOW_SQL = """
SELECT tenant, sum(ifNull(cost_usd, 0)) AS cost_usd, sum(ifNull(reasoning_tokens, 0)) AS reasoning_tokens, count() AS calls
FROM llm_calls
WHERE Timestamp >= toDateTime({start:UInt32}, 'UTC') AND tenant != ''
GROUP BY tenant
"""


class TenantWindowPublisher:
    """A periodic job (serve's scheduler runs it every `interval_s`): the store's figures for the current
    window of every tenant, written to data_dir/tenant-windows.json."""

    interval_s = PUBLISH_INTERVAL_S
    name = "tenant-windows"

    def __init__(
        self,
        data_dir: Path,
        window_s: int,
        query: Callable[[str, dict[str, Any]], list[dict[str, Any]]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(data_dir) / FILE_NAME
        self.window_s = window_s
        self._query = query
        self._clock = clock

    def __call__(self) -> dict[str, Any]:
        now = self._clock()
        start = window_start(now, self.window_s)
        rows = self._query(_WINDOW_SQL, {"start": start})
        document = {
            "published_at": now,
            "window_s": self.window_s,
            "window_start": start,
            "window_end": start + self.window_s,
            "tenants": {
                row["tenant"]: {"cost_usd": float(row["cost_usd"]), "reasoning_tokens": int(row["reasoning_tokens"]), "calls": int(row["calls"])}
                for row in rows
            },
        }
        write_atomically(self.path, json.dumps(document, separators=(",", ":")).encode())
        return document


def published_window_s(policy_file: Path | None) -> int:
    """The window length serve publishes: the policy's `tenant_window` (THINKMETER_BUDGETS or `serve
    --budgets`), a UTC day without one. Applications whose policy asks for another length fail open.
    A bad policy file raises PolicyError (serve checks it before it starts anything)."""
    from thinkmeter.budgets.policy import load_policy

    return load_policy(policy_file).policy.tenant_window_s if policy_file is not None else 86400


@dataclass(frozen=True, slots=True)
class TenantFigures:
    cost_usd: float
    reasoning_tokens: int


_NEW_WINDOW = TenantFigures(0.0, 0)


class TenantWindows:
    """The application's view of the published windows. `figures(tenant)` is None where nothing can be
    said (no serve, stale figures, another window length): the limits then fail open, said once in the log."""

    def __init__(
        self,
        data_dir: Path,
        window_s: int,
        refresh_s: float = REFRESH_S,
        stale_after_s: float = STALE_AFTER_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(data_dir) / FILE_NAME
        self.window_s = window_s
        self.refresh_s = refresh_s
        self.stale_after_s = stale_after_s
        self._clock = clock
        self._lock = threading.Lock()
        self._next_look = 0.0
        self._mtime_ns: int | None = None
        self._document: dict[str, Any] | None = None
        self._problem: str | None = None  # the reason the limits fail open, said once

    def figures(self, tenant: str) -> TenantFigures | None:
        now = self._clock()
        if now >= self._next_look:
            with self._lock:
                if now >= self._next_look:
                    self._next_look = now + self.refresh_s
                    self._look()
        document = self._document
        problem = self._usable(document, now)
        if problem is not None:
            self._fail_open(*problem)
            return None
        assert document is not None
        if now >= document["window_end"]:
            return _NEW_WINDOW  # the window rolled; serve has not published the new one yet
        entry = document["tenants"].get(tenant)
        if entry is None:
            return _NEW_WINDOW
        return TenantFigures(float(entry["cost_usd"]), int(entry["reasoning_tokens"]))

    def _look(self) -> None:
        try:
            mtime_ns = os.stat(self.path).st_mtime_ns
        except OSError:
            self._document, self._mtime_ns = None, None
            return
        if mtime_ns == self._mtime_ns:
            return
        try:
            document = json.loads(self.path.read_bytes())
            document["tenants"], document["window_end"], document["published_at"]  # noqa: B018
        except (OSError, ValueError, KeyError, TypeError):
            self._document, self._mtime_ns = None, None
            return
        self._document, self._mtime_ns = document, mtime_ns

    def _usable(self, document: dict[str, Any] | None, now: float) -> tuple[str, str] | None:
        """None, or (kind, message) of why the figures cannot be used."""
        if document is None:
            return "missing", f"no tenant figures at {self.path} (is `thinkmeter serve` running for this data dir?)"
        age = now - document["published_at"]
        if age > self.stale_after_s:
            return "stale", f"the tenant figures at {self.path} are {age:.0f} s old (is `thinkmeter serve` still running?)"
        if document.get("window_s") != self.window_s:
            return "window", f"serve publishes {document.get('window_s')} s tenant windows, the policy asks for {self.window_s} s"
        if self._problem is not None:
            log.warning("thinkmeter: tenant budget figures are available again; tenant limits apply")
            self._problem = None
        return None

    def _fail_open(self, kind: str, message: str) -> None:
        if self._problem != kind:
            self._problem = kind
            log.warning("thinkmeter: %s; tenant limits are not enforced until that changes", message)
