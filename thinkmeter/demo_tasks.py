"""The demo's graded tasks: accuracy against thinking budget, best-of-N and a verifier in another process.

Run through the demo's fleet after its main workload: curve tasks on Anthropic with a thinking budget
(`lookup`, mildly peaked; `math`, steeply), best-of-N samples in parallel on OpenAI (`code`), and
`summarize` tasks whose verifier call and outcome come from a second process under the same task ids.
The store's `budget-curve` must then show, per class, the accuracy each budget was built with, and
recommend the budget the simulator's curve favours.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import thinkmeter
from thinkmeter.config import Settings
from thinkmeter.simulator import Scenario
from thinkmeter.simulator.grading import BUDGETS, CURVES, GradedTask, GradedWorkload, best_budget

CURVE_MODEL = "claude-sonnet-4-5"  # Anthropic: the budget is thinking.budget_tokens
CURVE_CLASSES = ("lookup", "math")
BEST_OF_N = {"task_class": "code", "model": "o4-mini", "budget": 4096, "widths": (1, 3, 5)}
VERIFIED = {"task_class": "summarize", "model": "gpt-5-mini", "budget": 2048, "verifier_model": "o4-mini"}
PROMPT = "Graded task {task_id}: answer briefly."
ANSWER_ALLOWANCE = 1024  # Anthropic's max_tokens must exceed the thinking budget


@dataclass
class GradedResult:
    tasks: list[GradedTask]
    calls: int = 0
    failed: list[str] = field(default_factory=list)

    @property
    def per_budget(self) -> dict[tuple[str, int], tuple[int, int]]:
        """(class, budget) -> (tasks, solved), as planned."""
        counts: dict[tuple[str, int], tuple[int, int]] = {}
        for task in self.tasks:
            total, solved = counts.get((task.task_class, task.budget), (0, 0))
            counts[(task.task_class, task.budget)] = (total + 1, solved + task.solved)
        return counts


def plan(per_budget: int, seed: int, prefix: str) -> list[GradedTask]:
    workload = GradedWorkload(seed, prefix)
    tasks = [task for task_class in CURVE_CLASSES for task in workload.curve_tasks(task_class, CURVE_MODEL, per_budget)]
    tasks += workload.best_of_n_tasks(**BEST_OF_N, per_width=max(1, per_budget * 3 // 5))  # type: ignore[arg-type]
    tasks += workload.verified_tasks(**VERIFIED, count=per_budget)  # type: ignore[arg-type]
    return tasks


def _messages(task: GradedTask) -> list[dict[str, str]]:
    return [{"role": "user", "content": PROMPT.format(task_id=task.task_id)}]


def _anthropic(clients: dict[str, Any], task: GradedTask, sample: Scenario) -> None:
    clients["anthropic"].messages.create(
        model=CURVE_MODEL,
        max_tokens=task.budget + ANSWER_ALLOWANCE,
        thinking={"type": "enabled", "budget_tokens": task.budget},
        messages=_messages(task),
        extra_headers=sample.headers(),
    )


def _openai(client: Any, task: GradedTask, sample: Scenario) -> None:
    # A reasoning model's output cap covers its reasoning: the cap is the budget.
    client.chat.completions.create(
        model=sample.model, messages=_messages(task), max_completion_tokens=task.budget, extra_headers=sample.headers()
    )


def _run_task(clients: dict[str, Any], task: GradedTask) -> None:
    with thinkmeter.task(task.task_id, task_class=task.task_class) as handle:
        if task.task_class in CURVE_CLASSES:
            _anthropic(clients, task, task.samples[0])
            handle.outcome(correct=task.solved)
        elif task.task_class == BEST_OF_N["task_class"]:
            # The N samples in parallel: each thread joins the open task by its id.
            def sample(scenario: Scenario) -> None:
                with thinkmeter.task(task.task_id):
                    _openai(clients["openai"], task, scenario)

            threads = [threading.Thread(target=sample, args=(scenario,)) for scenario in task.samples]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            handle.outcome(correct=task.solved)
        else:  # the generator here; the verifier and the outcome in another process
            _openai(clients["openai"], task, task.samples[0])


def _verifier_process(settings: dict[str, Any], base_url: str, providers: dict[str, str], tasks: list[GradedTask]) -> None:
    import openai

    thinkmeter.instrument(exporter="clickhouse", providers=providers, **settings)
    client = openai.OpenAI(base_url=base_url, api_key="demo", max_retries=0)
    for task in tasks:
        with thinkmeter.task(task.task_id, task_class=task.task_class):
            verifier = task.samples[1]
            client.chat.completions.create(
                model=verifier.model, messages=_messages(task), max_completion_tokens=1024, extra_headers=verifier.headers()
            )
        thinkmeter.record_outcome(task.task_id, correct=task.solved)
    thinkmeter.flush(timeout_s=120)


def run(
    settings: Settings,
    clients: dict[str, Any],
    openai_base_url: str,
    providers: dict[str, str],
    per_budget: int,
    concurrency: int,
    seed: int,
    prefix: str,
    progress: Callable[[], None] = lambda: None,
) -> GradedResult:
    result = GradedResult(plan(per_budget, seed, prefix))
    result.calls = sum(len(task.samples) for task in result.tasks)

    def one(task: GradedTask) -> None:
        try:
            _run_task(clients, task)
        except Exception as error:  # the graded workload plays no failures: any is a finding
            result.failed.append(f"graded task {task.task_id} failed: {error!r}")
        progress()

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(one, result.tasks))
    verified = [task for task in result.tasks if task.task_class == VERIFIED["task_class"]]
    context = multiprocessing.get_context("spawn")
    store = {"clickhouse_url": settings.clickhouse_url, "data_dir": str(settings.data_dir)}
    process = context.Process(target=_verifier_process, args=(store, openai_base_url, providers, verified))
    process.start()
    process.join(timeout=600)
    if process.exitcode != 0:
        result.failed.append(f"the verifier process exited with {process.exitcode}")
    return result


def verify(settings: Settings, result: GradedResult, window_s: int) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The store's budget curve against the plan: every bucket's tasks and accuracy, and the recommended
    budget of each curve class against the simulator's curve. Returns (curves, mismatches)."""
    from thinkmeter.task_reports import budget_curve

    curves = budget_curve(settings, window_s)
    mismatches = list(result.failed)
    for (task_class, budget), (tasks, solved) in sorted(result.per_budget.items()):
        bucket = next((b for b in curves.get(task_class, {}).get("buckets", []) if b["budget_max_tokens"] == budget), None)
        if bucket is None or bucket["tasks"] != tasks or bucket["accuracy"] != solved / tasks:
            mismatches.append(f"budget curve {task_class} @ {budget}: stored {bucket}, planned {solved}/{tasks} solved")
    per_budget = len([t for t in result.tasks if t.task_class == CURVE_CLASSES[0] and t.budget == BUDGETS[0]])
    for task_class in CURVE_CLASSES:
        recommended = (curves.get(task_class) or {}).get("recommended") or {}
        expected = best_budget(task_class, per_budget=per_budget)
        if recommended.get("budget_max_tokens") != expected:
            mismatches.append(f"{task_class}: recommended {recommended.get('budget_max_tokens')}, the simulator's curve peaks at {expected}")
    return curves, mismatches


def curve_lines(curves: dict[str, dict[str, Any]]) -> list[str]:
    """One line per curve class: the curve it was built with against what the store recommends."""
    lines = []
    for task_class in CURVE_CLASSES:
        curve = CURVES[task_class]
        recommended = (curves.get(task_class) or {}).get("recommended") or {}
        lines.append(
            f"    {task_class}: built to peak at {curve.best_budget} thinking tokens (accuracy {curve.peak:.0%},"
            f" {curve.floor:.0%} far from it); recommended from the store: {recommended.get('budget_max_tokens')}"
        )
    return lines
