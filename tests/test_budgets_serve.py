"""Tenant windows end to end: `thinkmeter serve` publishes each tenant's spend for the current window, an
application in a process of its own reads it, refuses the tenant's calls once it is over its limit
(nothing sent), and lets them through again when the window rolls."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests.test_serve import ServeProcess
from thinkmeter.budgets.windows import FILE_NAME
from thinkmeter.simulator import start_simulator

WINDOW_S = 15  # room for serve's ingest (0.2 s), its publication (2 s) and the app's refresh (2 s) under load

APP = textwrap.dedent(
    """
    import json, sys, time
    import openai, thinkmeter
    thinkmeter.instrument(budgets=sys.argv[2])
    client = openai.OpenAI(base_url=sys.argv[1], api_key="x", max_retries=0)
    window_s, tenant = int(sys.argv[3]), sys.argv[4]
    time.sleep(window_s - time.time() % window_s + 0.2)  # start early in a window
    seen, deadline = [], time.time() + 3 * window_s
    while time.time() < deadline:
        try:
            with thinkmeter.tags(tenant=tenant):
                client.chat.completions.create(model="o4-mini", messages=[{"role": "user", "content": "hi"}])
            outcome = "sent"
        except thinkmeter.BudgetExceeded as error:
            outcome = "refused"
            print(json.dumps({"refused": str(error), "line": error.line, "cut": error.cut}), flush=True)
        print(json.dumps({"at": time.time(), "outcome": outcome}), flush=True)
        if not seen or seen[-1] != outcome:
            seen.append(outcome)
        if seen == ["sent", "refused", "sent"]:
            break
        time.sleep(0.3)
    """
)


def test_serve_publishes_tenant_windows_and_the_app_refuses_then_recovers(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    policy = tmp_path / "budgets.yaml"
    policy.write_text(f"tenants:\n  acme: {{daily_usd: 0.0000001}}\ntenant_window: {WINDOW_S}s\n")
    serve = ServeProcess(data_dir, "--budgets", str(policy))
    try:
        with start_simulator(time_scale=0.001) as sim:
            app = subprocess.run(
                [sys.executable, "-c", APP, sim.base_url, str(policy), str(WINDOW_S), "acme"],
                env={**os.environ, "THINKMETER_DATA_DIR": str(data_dir)},
                capture_output=True, text=True, timeout=5 * WINDOW_S + 60,
            )  # fmt: skip
            served = len(sim.replies)
        assert app.returncode == 0, app.stderr
        events = [json.loads(line) for line in app.stdout.splitlines()]
        calls = [e for e in events if "outcome" in e]
        outcomes = [c["outcome"] for c in calls]
        assert outcomes[0] == "sent" and "refused" in outcomes and outcomes[-1] == "sent", outcomes
        assert served == outcomes.count("sent")  # a refused call sent nothing
        first_refused = next(c["at"] for c in calls if c["outcome"] == "refused")
        recovered = next(c["at"] for c in calls if c["outcome"] == "sent" and c["at"] > first_refused)
        # Refused within the window the spend happened in; back when the next one began.
        assert int(first_refused // WINDOW_S) == int(calls[0]["at"] // WINDOW_S)
        assert int(recovered // WINDOW_S) > int(first_refused // WINDOW_S)
        refusal = next(e for e in events if "refused" in e)
        assert refusal["line"] == "tenants.acme.daily_usd" and refusal["cut"] is False
        published = json.loads((data_dir / FILE_NAME).read_text())
        assert published["window_s"] == WINDOW_S
    finally:
        returncode, err = serve.terminate()
    assert returncode == 0, err


def test_serve_with_a_bad_policy_exits_at_once_naming_the_line(tmp_path: Path) -> None:
    policy = tmp_path / "budgets.yaml"
    policy.write_text("tenants:\n  acme: {daily_usdd: 1}\n")
    serve = subprocess.run(
        [sys.executable, "-m", "thinkmeter", "serve", "--port", "0", "--budgets", str(policy)],
        env={**os.environ, "THINKMETER_DATA_DIR": str(tmp_path / "data")},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert serve.returncode == 1
    assert "budgets.yaml:2: tenants.acme.daily_usdd: unknown field" in serve.stderr
