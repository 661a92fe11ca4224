"""Shutdown, driven by real processes: an application that exits without flush() writes every span (as
segments; it never opens the store), quickly and without a word on stderr, even while a reader holds the
store; and `thinkmeter alerts run` exits cleanly on SIGTERM. (serve's SIGTERM: tests/test_serve.py.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from thinkmeter.config import Settings
from thinkmeter.store import query_rows, store_session

APP = textwrap.dedent(
    """
    import opentelemetry.trace
    import thinkmeter

    thinkmeter.instrument()
    tracer = opentelemetry.trace.get_tracer("thinkmeter")
    for n in range(50):
        with tracer.start_as_current_span("chat m", attributes={"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai"}):
            pass
    # no flush: the process just ends, and atexit must export within its bound
    """
)


def _env(data_dir: Path, service: str) -> dict[str, str]:
    return {**os.environ, "THINKMETER_DATA_DIR": str(data_dir), "OTEL_SERVICE_NAME": service}


# chDB opens one data directory per process: these tests share the session's store (store_settings).
COUNT = "SELECT count() AS n FROM llm_calls WHERE ServiceName = {service:String}"


def test_exit_without_flush_is_quick_silent_and_loses_nothing_while_the_store_is_held(store_settings: Settings, service_name: str) -> None:
    with store_session(store_settings):  # this process holds the store for the app's whole life
        started = time.monotonic()
        app = subprocess.run(
            [sys.executable, "-c", APP], env=_env(store_settings.data_dir, service_name), capture_output=True, text=True, timeout=120
        )
        exit_s = time.monotonic() - started
    assert app.returncode == 0, app.stderr
    assert app.stderr == ""
    assert exit_s < 30, f"the application took {exit_s:.1f} s to exit"
    # Written as segments at exit, ingested by the next session on the store.
    assert query_rows(store_settings, COUNT, {"service": service_name}) == [{"n": 50}]


def test_exit_without_flush_writes_pending_spans_silently(store_settings: Settings, service_name: str) -> None:
    app = subprocess.run(
        [sys.executable, "-c", APP], env=_env(store_settings.data_dir, service_name), capture_output=True, text=True, timeout=120
    )
    assert app.returncode == 0, app.stderr
    assert app.stderr == ""
    assert query_rows(store_settings, COUNT, {"service": service_name}) == [{"n": 50}]


def test_alerts_run_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    # Its own store: the daemon is the only process that opens it.
    daemon = subprocess.Popen(
        [sys.executable, "-m", "thinkmeter", "alerts", "run", "--interval", "0.5"],
        env=_env(tmp_path, "alerts"),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        line = ""
        while "evaluating" not in line and time.monotonic() < deadline:
            line = daemon.stderr.readline()
        assert "evaluating" in line, "alerts run did not start"
        time.sleep(1.0)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
