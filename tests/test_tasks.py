"""Tasks: `thinkmeter.task(...)` and `record_outcome` through the real openai SDK, a loopback simulator, the
ClickHouse exporter and the store; `thinkmeter tasks` and `thinkmeter budget-curve` checked figure by figure
against expectations worked out here from the simulator's scenarios (costs from the price table's rates,
tokens from the scenarios, wall times from the raw spans in otel_traces), not from the code under test.

Each test module run uses task classes of its own (a random suffix), so the shared store's other rows
never enter its figures.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import openai
import pytest

import thinkmeter
from tests.conftest import make_traced
from tests.simulated import expected_cost
from thinkmeter.cli import main as cli_main
from thinkmeter.config import Settings
from thinkmeter.schemas import semconv as sc
from thinkmeter.simulator import UNPRICED_MODEL, Scenario, Simulator, start_simulator
from thinkmeter.store import query_rows
from thinkmeter.task_reports import BUCKET_KEYS, TASK_KEYS, budget_curve, recommend, tasks_report

TIME_SCALE = 0.01
PROMPT = [{"role": "user", "content": "Solve it."}]
SUFFIX = uuid.uuid4().hex[:8]
MATH, LOOKUP, CURVE = f"math-{SUFFIX}", f"lookup-{SUFFIX}", f"curve-{SUFFIX}"
WEEK_S = 7 * 86400
OTHER_SERVICE = f"test-tasks-other-{SUFFIX}"


def scenario(reasoning: int, model: str = "o4-mini", **changes: object) -> Scenario:
    fields: dict[str, object] = {
        "model": model, "input_tokens": 300 + reasoning % 97, "reasoning_tokens": reasoning, "visible_tokens": 6,
        "prefill_s": 0.05, "thinking_s": 0.1, "visible_tokens_per_s": 400,
    }  # fmt: skip
    return Scenario(**{**fields, **changes})


@dataclass
class Expected:
    """One task as the test planned it."""

    task_class: str
    scenarios: list[Scenario]  # the calls that completed (usage reported)
    failed_calls: int = 0
    correct: bool | None = None
    score: float | None = None

    @property
    def calls(self) -> int:
        return len(self.scenarios) + self.failed_calls

    @property
    def cost(self) -> float | None:
        if any(s.model == UNPRICED_MODEL for s in self.scenarios):
            return None
        return sum(expected_cost(s.model, s)[0] for s in self.scenarios)

    @property
    def reasoning(self) -> int:
        return sum(s.reasoning_tokens for s in self.scenarios)

    @property
    def graded(self) -> bool:
        return self.correct is not None or self.score is not None

    @property
    def solved(self) -> bool:
        return self.correct if self.correct is not None else (self.score is not None and self.score >= 0.5)


@pytest.fixture(scope="module")
def simulator() -> Iterator[Simulator]:
    with start_simulator(time_scale=TIME_SCALE) as sim:
        yield sim


@pytest.fixture(scope="module")
def providers(simulator: Simulator) -> dict[str, str]:
    return {f"127.0.0.1:{simulator.port}": "openai"}


@pytest.fixture(scope="module")
def traced_module(store_settings: Settings, providers: dict[str, str]) -> Iterator[object]:
    """thinkmeter instrumented for the module, its spans exported into the shared store."""
    provider, processor = make_traced(store_settings, f"test-tasks-{SUFFIX}")
    thinkmeter.uninstrument()
    thinkmeter.instrument(tracer_provider=provider, exporter="none", providers=providers)
    yield processor
    thinkmeter.uninstrument()
    provider.shutdown()


@pytest.fixture(scope="module")
def client(simulator: Simulator, traced_module: object) -> openai.OpenAI:
    return openai.OpenAI(base_url=simulator.base_url, api_key="test", max_retries=0)


def ask(client: openai.OpenAI, s: Scenario, **options: object) -> None:
    client.chat.completions.create(model=s.model or "o4-mini", messages=PROMPT, extra_headers=s.headers(), **options)


def flushed(processor: object) -> None:
    assert processor.force_flush(60_000), "the exporter did not flush"  # type: ignore[attr-defined]


# A second process that makes one call in a task whose id this process uses too, and grades it.
_OTHER_PROCESS = """
import sys, openai, thinkmeter
from thinkmeter.simulator import Scenario
port, task_id, task_class, scenario_json = sys.argv[1:5]
thinkmeter.instrument(exporter="clickhouse", providers={f"127.0.0.1:{port}": "openai"})
client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
scenario = Scenario.model_validate_json(scenario_json)
with thinkmeter.task(task_id, task_class=task_class):
    client.chat.completions.create(model=scenario.model, messages=[{"role": "user", "content": "verify"}], extra_headers=scenario.headers())
thinkmeter.record_outcome(task_id, correct=True)
"""


@pytest.fixture(scope="module")
def planned(client: openai.OpenAI, simulator: Simulator, traced_module: object) -> dict[str, Expected]:
    """Run the tasks; returns what each should show."""
    expected: dict[str, Expected] = {}

    def task_id(name: str) -> str:
        return f"{name}-{SUFFIX}"

    # 1. Best-of-3, graded inside the block (the outcome is on the task span too).
    tid = task_id("best-of-3")
    calls = [scenario(800), scenario(1200), scenario(950)]
    with thinkmeter.task(tid, task_class=MATH) as task:
        for s in calls:
            ask(client, s)
        task.outcome(correct=True)
    expected[tid] = Expected(MATH, calls, correct=True)

    # 2. Parallel calls: threads join the open task by id; graded after the block.
    tid = task_id("parallel")
    calls = [scenario(400 + 10 * i) for i in range(4)]

    def worker(s: Scenario) -> None:
        with thinkmeter.task(tid):
            ask(client, s)

    with thinkmeter.task(tid, task_class=MATH):
        threads = [threading.Thread(target=worker, args=(s,)) for s in calls]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    thinkmeter.record_outcome(tid, correct=False)
    expected[tid] = Expected(MATH, calls, correct=False)

    # 3. Never graded, with a failed call (a rate limit: no usage, no cost) among its calls.
    tid = task_id("ungraded")
    calls = [scenario(300)]
    with thinkmeter.task(tid, task_class=MATH):
        ask(client, calls[0])
        with pytest.raises(openai.RateLimitError):
            ask(client, scenario(10, error_status=429))
    expected[tid] = Expected(MATH, calls, failed_calls=1)

    # 4. Graded before it ran (a label known in advance), then re-graded: the latest counts.
    tid = task_id("graded-first")
    thinkmeter.record_outcome(tid, correct=False)
    thinkmeter.record_outcome(tid, correct=True)
    calls = [scenario(2000)]
    with thinkmeter.task(tid, task_class=MATH):
        ask(client, calls[0])
    expected[tid] = Expected(MATH, calls, correct=True)

    # 5. Nested: the inner task (another class) owns its calls; tags around and inside still apply.
    outer, inner = task_id("outer"), task_id("inner")
    outer_calls, inner_calls = [scenario(700)], [scenario(150), scenario(170)]
    with thinkmeter.tags(tenant=f"tenant-{SUFFIX}"), thinkmeter.task(outer, task_class=MATH) as task:
        ask(client, outer_calls[0])
        with thinkmeter.task(inner, task_class=LOOKUP) as subtask, thinkmeter.tags(feature="verify"):
            for s in inner_calls:
                ask(client, s)
            subtask.outcome(score=0.9)  # a score only: solved at >= 0.5
        task.outcome(correct=False, score=0.2)
    expected[outer] = Expected(MATH, outer_calls, correct=False, score=0.2)
    expected[inner] = Expected(LOOKUP, inner_calls, score=0.9)

    # 6. An unpriced model: counted, graded, left out of every cost figure.
    tid = task_id("unpriced")
    calls = [scenario(500, model=UNPRICED_MODEL)]
    with thinkmeter.task(tid, task_class=LOOKUP):
        ask(client, calls[0])
    thinkmeter.record_outcome(tid, score=0.3)
    expected[tid] = Expected(LOOKUP, calls, score=0.3)

    # 7. Async: parallel calls with asyncio.gather inside `async with`.
    tid = task_id("async")
    calls = [scenario(600 + i) for i in range(3)]

    async def run_async() -> None:
        aclient = openai.AsyncOpenAI(base_url=simulator.base_url, api_key="test", max_retries=0)
        async with thinkmeter.task(tid, task_class=LOOKUP) as task:
            await asyncio.gather(*(
                aclient.chat.completions.create(model="o4-mini", messages=PROMPT, extra_headers=s.headers()) for s in calls
            ))  # fmt: skip
            task.outcome(correct=True)
        await aclient.close()

    asyncio.run(run_async())
    expected[tid] = Expected(LOOKUP, calls, correct=True)

    # 8. A stream started inside the task and read after the block: the call still belongs to it (the
    # task span, ended before the call, counts no calls).
    tid = task_id("stream-after")
    calls = [scenario(250)]
    with thinkmeter.task(tid, task_class=LOOKUP):
        stream = client.chat.completions.create(model="o4-mini", messages=PROMPT, stream=True, extra_headers=calls[0].headers())
    for _ in stream:
        pass
    expected[tid] = Expected(LOOKUP, calls)

    # 9. One id in two processes: a call here, a verifier call and the grade in another process.
    tid = task_id("two-processes")
    here, there = scenario(900), scenario(100)
    with thinkmeter.task(tid, task_class=MATH):
        ask(client, here)
    flushed(traced_module)
    other = subprocess.run(
        [sys.executable, "-c", _OTHER_PROCESS, str(simulator.port), tid, MATH, there.model_dump_json()],
        capture_output=True, text=True, timeout=120, env={**os.environ, "OTEL_SERVICE_NAME": OTHER_SERVICE},
    )  # fmt: skip
    assert other.returncode == 0, other.stderr
    expected[tid] = Expected(MATH, [here, there], correct=True)
    flushed(traced_module)
    return expected


def walls(settings: Settings, task_ids: list[str]) -> dict[str, float]:
    """Wall time per task from the raw spans: first start to last end of its calls and task spans."""
    rows = query_rows(
        settings,
        "SELECT SpanAttributes['thinkmeter.task.id'] AS task_id, toUnixTimestamp64Nano(Timestamp) AS start_ns, Duration"
        " FROM otel_traces WHERE SpanAttributes['thinkmeter.task.id'] IN {ids:Array(String)} AND SpanName != 'task.outcome'",
        {"ids": task_ids},
    )
    spans: dict[str, list[tuple[int, int]]] = {}
    for row in rows:
        spans.setdefault(row["task_id"], []).append((row["start_ns"], row["start_ns"] + row["Duration"]))
    return {tid: (max(e for _, e in s) - min(b for b, _ in s)) / 1e9 for tid, s in spans.items()}


def p95(values: list[float]) -> float:
    """ClickHouse quantileExact: the element at floor(0.95 n) of the sorted values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def expected_rows(planned: dict[str, Expected], wall: dict[str, float]) -> dict[str, dict[str, object]]:
    rows = {}
    for task_class in (LOOKUP, MATH):
        tasks = {tid: t for tid, t in planned.items() if t.task_class == task_class}
        graded = [t for t in tasks.values() if t.graded]
        solved = [t for t in graded if t.solved]
        priced = [t for t in tasks.values() if t.cost is not None]
        graded_priced = [t for t in graded if t.cost is not None]
        solved_priced = [t for t in solved if t.cost is not None]
        cost = sum(t.cost for t in priced)  # type: ignore[misc]
        rows[task_class] = {
            "task_class": task_class,
            "tasks": len(tasks),
            "with_outcome": len(graded),
            "solved": len(solved),
            "accuracy": len(solved) / len(graded),
            "cost_usd": cost,
            "cost_per_task_usd": cost / len(priced),
            "cost_per_solved_usd": sum(t.cost for t in graded_priced) / len(solved_priced),  # type: ignore[misc]
            "calls_per_task": sum(t.calls for t in tasks.values()) / len(tasks),
            "reasoning_tokens_per_task": sum(t.reasoning for t in tasks.values()) / len(tasks),
            "wall_p95_s": p95([wall[tid] for tid in tasks]),
        }
    return rows


def test_tasks_report_figures(store_settings: Settings, planned: dict[str, Expected]) -> None:
    expected = expected_rows(planned, walls(store_settings, list(planned)))
    rows = {row["task_class"]: row for row in tasks_report(store_settings, WEEK_S) if row["task_class"] in expected}
    assert set(rows) == set(expected)
    for task_class, want in expected.items():
        got = rows[task_class]
        assert list(got) == list(TASK_KEYS)
        for key, value in want.items():
            if isinstance(value, float):
                assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-9), f"{task_class} {key}"
            else:
                assert got[key] == value, f"{task_class} {key}"


def test_calls_carry_the_task_and_the_task_span_parents_them(store_settings: Settings, planned: dict[str, Expected]) -> None:
    rows = query_rows(
        store_settings,
        "SELECT task_id, task_class, tenant, feature, TraceId, SpanId, ParentSpanId FROM llm_calls AS c"
        " INNER JOIN otel_traces AS t ON c.TraceId = t.TraceId AND c.SpanId = t.SpanId"
        " WHERE task_id IN {ids:Array(String)}",
        {"ids": list(planned)},
    )
    spans = query_rows(
        store_settings,
        "SELECT * FROM task_spans WHERE task_id IN {ids:Array(String)}",
        {"ids": list(planned)},
    )
    by_span = {(row["TraceId"], row["SpanId"]): row for row in spans}
    for tid, plan in planned.items():
        calls = [row for row in rows if row["task_id"] == tid]
        assert len(calls) == plan.calls, tid
        assert {row["task_class"] for row in calls} == {plan.task_class}
        for row in calls:  # every call's parent is a task span of its own task
            assert by_span[(row["TraceId"], row["ParentSpanId"])]["task_id"] == tid
    outer, inner = f"outer-{SUFFIX}", f"inner-{SUFFIX}"
    assert {(row["tenant"], row["feature"]) for row in rows if row["task_id"] == inner} == {(f"tenant-{SUFFIX}", "verify")}
    assert {(row["tenant"], row["feature"]) for row in rows if row["task_id"] == outer} == {(f"tenant-{SUFFIX}", "")}
    inner_span = next(row for row in spans if row["task_id"] == inner)
    outer_span = next(row for row in spans if row["task_id"] == outer)
    assert inner_span["parent_task_id"] == outer and inner_span["TraceId"] == outer_span["TraceId"]
    # The task span's totals: this process's calls of the task (the other process has its own span).
    for row in spans:
        plan = planned[row["task_id"]]
        mine = plan.scenarios
        if row["task_id"] == f"two-processes-{SUFFIX}":  # one call in each process
            mine = plan.scenarios[1:] if row["ServiceName"] == OTHER_SERVICE else plan.scenarios[:1]
        if row["task_id"] == f"stream-after-{SUFFIX}":  # the call ended after the task span
            mine = []
        assert row["calls"] == len(mine) + plan.failed_calls
        assert row["input_tokens"] == sum(s.input_tokens for s in mine)
        assert row["output_tokens"] == sum(s.output_tokens for s in mine)
        assert row["reasoning_tokens"] == sum(s.reasoning_tokens for s in mine)
        assert row["errors"] == plan.failed_calls
        if plan.cost is None:
            assert row["unpriced_calls"] == len(mine)
        else:
            assert row["unpriced_calls"] == 0
            assert row["cost_usd"] == pytest.approx(sum(expected_cost(s.model, s)[0] for s in mine), rel=1e-12)
    best = next(row for row in spans if row["task_id"] == f"best-of-3-{SUFFIX}")
    assert best["outcome_correct"] == 1 and best["outcome_score"] is None
    assert outer_span["outcome_correct"] == 0 and outer_span["outcome_score"] == 0.2


def test_tasks_cli_json_keys(planned: dict[str, Expected], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["tasks", "--window", "7d", "--format", "json"]) == 0
    rows = [row for row in json.loads(capsys.readouterr().out) if row["task_class"] in (MATH, LOOKUP)]
    assert len(rows) == 2 and all(list(row) == list(TASK_KEYS) for row in rows)
    assert cli_main(["tasks"]) == 0
    assert MATH in capsys.readouterr().out


# ------------------------------------------------------------------------------------------ budget curve

# budget -> (tasks, solved): accuracy 2/4, 3/4, 3/4, 1/4 (an inverted U; 2048 and 4096 tie on accuracy).
CURVE_PLAN = {1024: (4, 2), 2048: (4, 3), 4096: (4, 3), 8192: (4, 1)}


@pytest.fixture(scope="module")
def curve_planned(client: openai.OpenAI, traced_module: object) -> dict[int, list[tuple[str, Scenario, bool]]]:
    planned: dict[int, list[tuple[str, Scenario, bool]]] = {}
    for budget, (count, solved) in CURVE_PLAN.items():
        for index in range(count):
            tid = f"curve-{budget}-{index}-{SUFFIX}"
            # More budget, more thinking: reasoning uses about half of it, thinking time grows with it.
            s = scenario(budget // 2 + index, thinking_s=budget / 20_000)
            with thinkmeter.task(tid, task_class=CURVE):
                ask(client, s, max_completion_tokens=budget)
            thinkmeter.record_outcome(tid, correct=index < solved)
            planned.setdefault(budget, []).append((tid, s, index < solved))
    # One task graded never: not on the curve.
    with thinkmeter.task(f"curve-ungraded-{SUFFIX}", task_class=CURVE):
        ask(client, scenario(100), max_completion_tokens=1024)
    flushed(traced_module)
    return planned


def test_budget_curve_figures_and_recommendation(store_settings: Settings, curve_planned, capsys) -> None:
    wall = walls(store_settings, [tid for tasks in curve_planned.values() for tid, _, _ in tasks])
    buckets = []
    for budget, tasks in curve_planned.items():
        solved = sum(ok for _, _, ok in tasks)
        cost = sum(expected_cost(s.model, s)[0] for _, s, _ in tasks)
        buckets.append({
            "budget_max_tokens": budget, "tasks": len(tasks), "accuracy": solved / len(tasks),
            "cost_per_solved_usd": cost / solved, "wall_p95_s": p95([wall[tid] for tid, _, _ in tasks]),
        })  # fmt: skip
    curves = budget_curve(store_settings, WEEK_S, task_class=CURVE)
    assert list(curves) == [CURVE]
    got = curves[CURVE]["buckets"]
    assert [list(b) for b in got] == [list(BUCKET_KEYS)] * len(buckets)
    for want, have in zip(buckets, got, strict=True):
        assert have["budget_max_tokens"] == want["budget_max_tokens"] and have["tasks"] == want["tasks"]
        assert have["accuracy"] == want["accuracy"]
        assert have["cost_per_solved_usd"] == pytest.approx(want["cost_per_solved_usd"], rel=1e-9)
        assert have["wall_p95_s"] == pytest.approx(want["wall_p95_s"], abs=1e-6)
    # 2048 and 4096 tie at 3/4: the cheaper per solved task wins (2048 reasons half as much).
    assert curves[CURVE]["recommended"] == {
        "budget_max_tokens": 2048, "accuracy": 0.75, "cost_per_solved_usd": got[1]["cost_per_solved_usd"]
    }  # fmt: skip
    # An SLO only the 1024 bucket meets (its p95 below 2048's): 1024 is recommended.
    slo = (got[0]["wall_p95_s"] + got[1]["wall_p95_s"]) / 2
    if got[0]["wall_p95_s"] < got[1]["wall_p95_s"] and all(b["wall_p95_s"] > slo for b in got[1:]):
        constrained = budget_curve(store_settings, WEEK_S, task_class=CURVE, slo_p95_s=slo)[CURVE]["recommended"]
        assert constrained is not None and constrained["budget_max_tokens"] == 1024
    assert budget_curve(store_settings, WEEK_S, task_class=CURVE, slo_p95_s=1e-9)[CURVE]["recommended"] is None
    assert cli_main(["budget-curve", "--class", CURVE, "--format", "json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed) == {CURVE} and set(printed[CURVE]) == {"buckets", "recommended"}
    assert printed[CURVE]["recommended"]["budget_max_tokens"] == 2048
    assert cli_main(["budget-curve", "--class", CURVE]) == 0
    assert "recommended: 2048 tokens" in capsys.readouterr().out


def test_recommend_ties_and_unknown_cost() -> None:
    buckets = [
        {"budget_max_tokens": 512, "accuracy": 0.5, "cost_per_solved_usd": 0.01, "wall_p95_s": 1.0},
        {"budget_max_tokens": 1024, "accuracy": 0.8, "cost_per_solved_usd": None, "wall_p95_s": 2.0},
        {"budget_max_tokens": 2048, "accuracy": 0.8, "cost_per_solved_usd": 0.05, "wall_p95_s": 3.0},
        {"budget_max_tokens": 4096, "accuracy": 0.9, "cost_per_solved_usd": 0.09, "wall_p95_s": 9.0},
    ]
    assert recommend(buckets, None)["budget_max_tokens"] == 4096
    assert recommend(buckets, 5.0)["budget_max_tokens"] == 2048  # a known cost beats an unknown one
    assert recommend(buckets, 1.5)["budget_max_tokens"] == 512
    assert recommend(buckets, 0.5) is None


# ---------------------------------------------------------------------------------------------- the API


def test_api_errors_say_what_to_do() -> None:
    with pytest.raises(TypeError, match="non-empty task id"):
        thinkmeter.task("")
    with pytest.raises(TypeError, match="correct=True/False and/or score"):
        thinkmeter.record_outcome("t")
    with pytest.raises(TypeError, match="correct must be True or False"):
        thinkmeter.record_outcome("t", correct=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="finite number"):
        thinkmeter.record_outcome("t", score=float("nan"))


def test_without_instrument_tasks_tag_and_outcomes_are_dropped_with_one_line(caplog) -> None:
    thinkmeter.uninstrument()
    with thinkmeter.task("plain", task_class="c") as task:
        from thinkmeter.instrumentation._tags import current_tag_attributes

        assert current_tag_attributes()[sc.TASK_ID] == "plain"
        task.outcome(correct=True)
    thinkmeter.record_outcome("plain", score=1.0)
    assert caplog.text.count("was not recorded") <= 1


def test_a_failed_block_marks_its_task_span(simulator: Simulator) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    thinkmeter.uninstrument()
    thinkmeter.instrument(tracer_provider=provider, exporter="none", providers={f"127.0.0.1:{simulator.port}": "openai"})
    try:
        client = openai.OpenAI(base_url=simulator.base_url, api_key="test", max_retries=0)
        with pytest.raises(ValueError), thinkmeter.task("failing", task_class="c"):
            ask(client, scenario(50))
            raise ValueError("the application's own error passes through")
    finally:
        thinkmeter.uninstrument()
    task_span = next(span for span in exporter.get_finished_spans() if span.name == "task c")
    assert task_span.status.status_code.name == "ERROR"
    assert task_span.attributes[sc.ERROR_TYPE] == "ValueError" and task_span.attributes[sc.TASK_CALLS] == 1


@pytest.mark.parametrize("args", [["budget-curve", "--slo-p95-s", "-1"], ["budget-curve", "--slo-p95-s", "nan"], ["tasks", "--solved-score", "inf"]])
def test_bad_options_exit_2(args: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli_main(args)
    assert exit_info.value.code == 2
