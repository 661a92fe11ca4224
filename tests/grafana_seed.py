"""Seed the shared store for the dashboard and alert tests through the real path: the loopback simulator,
the openai SDK, thinkmeter.instrument() and the ClickHouse span exporter; engine and GPU metrics through
the collectors (EngineScraper on a loopback vLLM /metrics, GpuCollector on the NVML stand-in).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import openai
from clickhouse_connect.driver.client import Client
from thinkmeter.collectors import context
from thinkmeter.collectors.engines import EngineScraper
from thinkmeter.collectors.gpu import GpuCollector
from thinkmeter.collectors.metrics import engine_points, gpu_points
from thinkmeter.collectors.metrics_table import MetricsTableWriter
from thinkmeter.schemas import semconv as sc

import thinkmeter
from tests.conftest import ingest, make_traced
from tests.engine_servers import EngineServer
from tests.nvml_stand_in import StandInGpu, stand_in_nvml
from thinkmeter.config import Settings
from thinkmeter.simulator import Scenario, Simulator, TrafficMix, start_simulator

TIME_SCALE = 0.0005  # a 20 s thinking phase plays in 10 ms
PROMPT = [{"role": "user", "content": "Work through the task and answer briefly."}]
EFFORTS = ("low", "medium", "high")


@dataclass(frozen=True)
class Call:
    tags: dict[str, str]
    scenario: Scenario
    stream: bool = True
    api: str = "chat"  # or "responses"
    effort: str = "medium"


def mixed_calls(count: int, seed: int, max_visible_tokens: int = 40) -> list[Call]:
    """The simulator's traffic mix, alternating streaming, API surface and reasoning effort. Answers
    are capped at max_visible_tokens: streaming them chunk by chunk is what takes test time."""
    mix = TrafficMix(seed)
    calls = []
    for index in range(count):
        tags, scenario = mix.draw()
        scenario = scenario.model_copy(update={"visible_tokens": min(scenario.visible_tokens, max_visible_tokens)})
        calls.append(
            Call(tags, scenario, stream=index % 4 != 3, api="responses" if index % 3 == 2 else "chat", effort=EFFORTS[index % 3])
        )
    return calls


@contextmanager
def instrumented_client(settings: Settings, service: str, budgets: Path | None = None) -> Iterator[openai.OpenAI]:
    """An openai client on a fresh simulator, instrumented into the store under ServiceName `service`
    (under the budget policy file `budgets`, if given); every span is in the store when the block ends."""
    provider, processor = make_traced(settings, service)
    simulator: Simulator
    with start_simulator(time_scale=TIME_SCALE) as simulator:
        thinkmeter.uninstrument()
        thinkmeter.instrument(
            tracer_provider=provider, exporter="none", providers={f"127.0.0.1:{simulator.port}": "openai"}, budgets=budgets
        )
        try:
            yield openai.OpenAI(base_url=simulator.base_url, api_key="test", max_retries=0)
        finally:
            thinkmeter.uninstrument()
    assert processor.force_flush(60_000), "the exporter did not flush the seeded spans"
    provider.shutdown()
    ingest(settings)


def make_calls(client: openai.OpenAI, calls: Iterable[Call], concurrency: int = 4) -> int:
    """Runs the calls; returns how many failed (the mix plays rate limits, errors and disconnects)."""
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return sum(not ok for ok in pool.map(lambda call: _call(client, call), calls))


def _call(client: openai.OpenAI, call: Call) -> bool:
    model = call.scenario.model or "o4-mini"
    headers = call.scenario.headers()
    try:
        with thinkmeter.tags(**call.tags):
            if call.api == "chat":
                reply = client.chat.completions.create(
                    model=model, messages=PROMPT, stream=call.stream, reasoning_effort=call.effort, extra_headers=headers
                )
            else:
                reply = client.responses.create(
                    model=model, input=PROMPT, stream=call.stream, reasoning={"effort": call.effort}, extra_headers=headers
                )
            if call.stream:
                for _ in reply:
                    pass
        return True
    except openai.OpenAIError:
        return False


def seed_calls(settings: Settings, service: str, calls: Iterable[Call]) -> int:
    with instrumented_client(settings, service) as client:
        return make_calls(client, calls)


def seed_budget_actions(settings: Settings, service: str, tags: dict[str, str], policy_dir: Path) -> None:
    """A runaway stream of `tags`' task class cut at its thinking time, and the same under observe mode
    (it runs on, marked would_cut)."""
    # A long think, but few tokens: the runaway-reasoning rule must not take it for an outlier.
    runaway = Call(tags, Scenario(model="o4-mini", input_tokens=300, reasoning_tokens=500, visible_tokens=10,
                                  prefill_s=0.1, thinking_s=240))  # fmt: skip
    for mode in ("enforce", "observe"):
        policy = policy_dir / f"budgets-{mode}.yaml"
        policy.write_text(f"task_classes:\n  {tags['task_class']}: {{max_thinking_s: 0.05}}\nmode: {mode}\n")
        with instrumented_client(settings, service, policy) as client:
            try:
                _call(client, runaway)
            except thinkmeter.BudgetExceeded:
                assert mode == "enforce"


def seed_engine_metrics(client: Client, metrics_texts: Iterable[str], host: str) -> str:
    """Scrape a loopback vLLM once per /metrics text and write the points, as `thinkmeter collect` does;
    returns the engine's `server.address:server.port`."""
    server = EngineServer().start()
    try:
        scraper = EngineScraper(server.url, engine="vllm")
        writer = MetricsTableWriter(resource={"service.name": "thinkmeter-collector", "host.name": host})
        for text in metrics_texts:
            server.serve("/metrics", text)
            writer.write(client, engine_points(scraper.scrape()))
        return f"127.0.0.1:{server.port}"
    finally:
        server.stop()


def seed_gpu_metrics(client: Client, host: str, samples: int, gpus: Iterable[StandInGpu]) -> None:
    """Sample stand-in GPUs through GpuCollector and write the points under host.name = `host`."""
    collector = GpuCollector(nvml=stand_in_nvml(list(gpus)))
    assert collector.start()
    writer = MetricsTableWriter(resource={"service.name": "thinkmeter-collector", "host.name": host})
    try:
        for _ in itertools.repeat(None, samples):
            writer.write(client, gpu_points(collector.sample()))
    finally:
        collector.close()


def seed_engine_context_spans(settings: Settings, service: str, kv_usages: Iterable[float], reasoning_tokens: int) -> None:
    """LLM-call spans carrying the engine state at request start, through the exporter's span path.

    Stands in for the instrumentation, which is to copy collectors.context.engine_context_attributes()
    onto spans of calls to a watched engine; the attribute names are that module's.
    """
    provider, processor = make_traced(settings, service)
    tracer = provider.get_tracer("thinkmeter")
    for index, kv_usage in enumerate(kv_usages):
        with tracer.start_as_current_span("chat qwen3-8b") as span:
            span.set_attributes({
                sc.OPERATION: "chat", sc.PROVIDER: "vllm", sc.REQUEST_MODEL: "qwen3-8b", sc.ENGINE: "vllm",
                sc.OUTPUT_TOKENS: reasoning_tokens + index + 20, sc.REASONING_TOKENS: reasoning_tokens + index,
                context.KV_CACHE_USAGE: kv_usage, context.REQUESTS_RUNNING: 4, context.REQUESTS_WAITING: 1,
            })
    assert processor.force_flush(30_000)
    provider.shutdown()
    ingest(settings)


@dataclass(frozen=True)
class SeededTasks:
    task_class: str
    baseline_cost_per_solved: float  # the tasks copied two days back
    recent_cost_per_solved: float  # what the last day's graded tasks cost per solved one


def seed_tasks(settings: Settings, client: Client, service: str, task_class: str, tasks: int = 10, baseline: bool = True) -> SeededTasks:
    """Graded tasks of one class, 1-3 calls each with a budget, through the real SDK path. Cheap ones run
    first and (with `baseline`) are copied two days back under new ids, their outcomes too; then ones
    that think 40 times longer. Six of every ten are solved."""
    from tests.simulated import expected_cost

    cheap = Scenario(model="o4-mini", input_tokens=200, reasoning_tokens=200, visible_tokens=10, prefill_s=0.05, thinking_s=0.5)
    dear = cheap.model_copy(update={"reasoning_tokens": 8_000, "thinking_s": 2.0})
    costs: dict[str, float] = {}
    with instrumented_client(settings, service) as openai_client:
        for kind, scenario in (("base", cheap), ("now", dear)):
            for index in range(tasks):
                task_id = f"{service}-{kind}-{index}"
                with thinkmeter.task(task_id, task_class=task_class):
                    for _ in range(1 + index % 3):
                        openai_client.chat.completions.create(
                            model="o4-mini", messages=PROMPT, max_completion_tokens=16_384, extra_headers=scenario.headers()
                        )
                thinkmeter.record_outcome(task_id, correct=index % 10 < 6)
                costs[task_id] = (1 + index % 3) * expected_cost("o4-mini", scenario)[0]
    shifted = {"s": service, "base": f"{service}-base-%"}
    for table, time_shift in (("llm_calls", True), ("task_spans", True), ("task_outcomes", False)) if baseline else ():
        moved = "Timestamp - INTERVAL 2 DAY AS Timestamp, " if time_shift else ""
        client.command(
            f"INSERT INTO {table} SELECT * REPLACE ({moved}concat(task_id, '-past') AS task_id) FROM {table} "
            "WHERE task_id LIKE {base:String}",
            parameters=shifted,
        )

    def per_solved(ids: list[str]) -> float:
        return sum(costs[i] for i in ids) / sum(int(i.rsplit("-", 1)[1]) % 10 < 6 for i in ids)

    base = [i for i in costs if "-base-" in i]
    return SeededTasks(task_class, per_solved(base), per_solved(list(costs)))
