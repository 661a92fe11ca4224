"""`thinkmeter demo`, `report` and `outliers` end to end, as a user runs them: a separate process with
its own embedded store, the simulators in processes of their own, the real openai, anthropic, google-genai
and ollama SDKs in between."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from thinkmeter.demo import PROVIDERS
from thinkmeter.simulator.grading import best_budget


def _thinkmeter(data_dir, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "THINKMETER_DATA_DIR": str(data_dir)}
    return subprocess.run(
        [sys.executable, "-m", "thinkmeter", *args], env=env, capture_output=True, text=True, timeout=600
    )


def test_demo_stores_what_the_simulator_sent(tmp_path):
    demo = _thinkmeter(tmp_path, "demo", "--calls", "150", "--time-scale", "0.002", "--graded-per-budget", "4", "--budget-calls", "60")
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "(tokens, cost): all match" in demo.stdout
    graded = re.search(r"(\d+) graded tasks \((\d+) calls: .*against the simulator's curves: all match", demo.stdout)
    assert graded, demo.stdout
    graded_calls = int(graded.group(2))
    for task_class in ("lookup", "math"):  # the budgets the simulator's curves favour, stratified over 4 tasks
        line = next(line for line in demo.stdout.splitlines() if line.startswith(f"    {task_class}: built to peak at"))
        assert line.endswith(f"recommended from the store: {best_budget(task_class, per_budget=4)}"), line
    assert "Tasks per class" in demo.stdout and "recommended: 2048 tokens" in demo.stdout
    assert "By task class" in demo.stdout and "By provider" in demo.stdout
    for provider in PROVIDERS:  # every provider of the fleet served calls, and each one's figures match
        assert f"    {provider.name}: " in demo.stdout, demo.stdout
    provider_lines = [line for line in demo.stdout.splitlines() if line.startswith("    ") and " calls, " in line]
    assert len(provider_lines) == len(PROVIDERS) and all(line.endswith(": all match") for line in provider_lines)
    assert "    ollama: " in next(line for line in provider_lines if "reasoning estimated" in line)

    # The second pass, under a budget policy: its table has a row per task class and a total.
    budgets = demo.stdout[demo.stdout.index("Budgets: 60 more calls") :]
    total = next(line.split() for line in budgets.splitlines() if line.strip().startswith("total"))
    assert total[1] == "60" and int(total[2]) > 0  # calls, calls that got caps injected
    assert float(total[-1]) >= 0  # saved USD: never more spent than planned

    report = json.loads(_thinkmeter(tmp_path, "report", "--format", "json").stdout)
    totals = report["totals"]
    assert totals["calls"] == 150 + graded_calls + 60  # one row per call: no SDK's own spans counted twice
    assert {row["provider"] for row in report["by"]["provider"]} == {provider.name for provider in PROVIDERS}
    # Reasoning is a subset of output, and the demo's reasoning models spend most of it hidden.
    assert 0 < totals["total_reasoning_tokens"] < totals["total_output_tokens"]
    assert totals["hidden_reasoning_share"] > 0.5
    assert totals["calls_without_price"] > 0  # the simulator's unpriced model: counted, never $0
    assert {row["task_class"] for row in report["by"]["task_class"]} >= {"lookup", "math"}

    outliers = json.loads(_thinkmeter(tmp_path, "outliers", "-k", "2", "--format", "json").stdout)
    for row in outliers:
        assert row["reasoning_tokens"] > 2 * row["class_quantile"]
