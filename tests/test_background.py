"""With thinkmeter's own tracer provider (`instrument()` with no provider set), the end of each call
(pricing, attributes, the OTel span) runs on one background thread, not the caller's. Driven by a real
application process: the openai SDK against the loopback simulator, spans into the session's store.
Every call is stored once: after flush() and after an exit without flush. The thread itself is checked
across fork(): a pre-fork server's worker runs its own calls on its own thread, none of its parent's.

Not covered here: fork() after the embedded store was opened (the child hangs in chDB, with or without
the background thread); the segment writer of issue 10 replaces that path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from thinkmeter.config import Settings
from thinkmeter.simulator import start_simulator
from thinkmeter.store import query_rows

APP = textwrap.dedent(
    """
    import json, sys, threading
    import openai
    from opentelemetry import trace
    from opentelemetry.sdk.trace import SpanProcessor
    import thinkmeter

    thinkmeter.instrument()
    ended_on = set()
    task_calls = []

    class Where(SpanProcessor):  # an application may add its own processor to the global provider
        def on_end(self, span):
            if span.name.startswith("chat"):
                ended_on.add(threading.current_thread().name)
            else:  # the task's span: its totals count calls whose spans are still being built
                task_calls.append(span.attributes.get("thinkmeter.task.calls"))

    trace.get_tracer_provider().add_span_processor(Where())

    def calls(n):
        client = openai.OpenAI(base_url=sys.argv[1], api_key="test", max_retries=0)
        for _ in range(n):
            client.chat.completions.create(model="o4-mini", messages=[{"role": "user", "content": "hi"}])
        for _ in client.chat.completions.create(model="o4-mini", messages=[{"role": "user", "content": "hi"}], stream=True):
            pass

    calls(6)
    with thinkmeter.task("t-1"):
        calls(2)
    flushed = thinkmeter.flush(60)
    print(json.dumps({"flushed": flushed, "ended_on": sorted(ended_on), "task_calls": task_calls}), flush=True)
    calls(24)
    # no flush: atexit ends the calls still pending on the background thread and exports them
    """
)
COUNT = "SELECT count() AS n, uniqExact(TraceId) AS traces FROM llm_calls WHERE ServiceName = {service:String}"


def test_calls_end_off_the_callers_thread_and_every_one_is_stored(store_settings: Settings, service_name: str) -> None:
    env = {**os.environ, "THINKMETER_DATA_DIR": str(store_settings.data_dir), "OTEL_SERVICE_NAME": service_name}
    with start_simulator(time_scale=0.01) as simulator:
        app = subprocess.run(
            [sys.executable, "-c", APP, simulator.base_url], env=env, capture_output=True, text=True, timeout=180
        )
    assert app.returncode == 0, app.stderr
    first = json.loads(app.stdout.splitlines()[0])
    assert first == {"flushed": True, "ended_on": ["thinkmeter-calls"], "task_calls": [3]}
    assert query_rows(store_settings, COUNT, {"service": service_name}) == [{"n": 7 + 3 + 25, "traces": 7 + 1 + 25}]


FORKED = textwrap.dedent(
    """
    import json, os, sys, threading
    from thinkmeter.instrumentation._background import Background

    ran = []
    background = Background("worker")
    run = lambda item: ran.append((item, threading.current_thread().name))
    for n in range(3):
        background.submit(run, n)
    background.drain(10)
    child = os.fork()
    if child == 0:
        for n in range(10, 12):
            background.submit(run, n)
        background.drain(10)
        print(json.dumps({"child": ran[3:]}), flush=True)
        os._exit(0)
    os.waitpid(child, 0)
    background.submit(run, 3)
    background.close(10)
    print(json.dumps({"parent": ran, "refused_after_close": not background.submit(run, 4)}), flush=True)
    """
)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX only")
def test_background_thread_starts_again_in_a_forked_child() -> None:
    done = subprocess.run([sys.executable, "-c", FORKED], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    child, parent = (json.loads(line) for line in done.stdout.splitlines())
    assert child == {"child": [[10, "worker"], [11, "worker"]]}
    assert parent == {"parent": [[n, "worker"] for n in range(4)], "refused_after_close": True}
