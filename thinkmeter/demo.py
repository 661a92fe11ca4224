"""The demo: a simulated reasoning workload through the real openai SDK, instrumented, into the store.

Every call's ground truth is known to the simulator, so after the run the demo checks what the store
holds against what was sent, then prints the report.
"""

from __future__ import annotations

import multiprocessing
import random
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import thinkmeter
from thinkmeter.config import Settings
from thinkmeter.pricing import PriceTable
from thinkmeter.schemas.record import Usage
from thinkmeter.simulator import Reply, Scenario, TrafficMix, start_simulator

STREAM_SHARE = 0.6
RESPONSES_SHARE = 0.4
PROMPT = [{"role": "user", "content": "Work through the task and answer briefly."}]


@dataclass
class Planned:
    tags: dict[str, str]
    scenario: Scenario
    api: str  # "chat" or "responses"
    stream: bool


@dataclass
class DemoResult:
    calls: int
    failed_calls: int
    seconds: float
    stored: int = 0
    mismatches: list[str] = field(default_factory=list)
    checked: int = 0
    # stored time to first visible token minus the simulator's, per streamed call
    ttfvt_errors_s: list[float] = field(default_factory=list)


def plan(calls: int, seed: int) -> list[Planned]:
    mix, rng = TrafficMix(seed), random.Random(seed)
    planned = []
    for _ in range(calls):
        tags, scenario = mix.draw()
        api = "responses" if rng.random() < RESPONSES_SHARE else "chat"
        planned.append(Planned(tags, scenario, api, rng.random() < STREAM_SHARE))
    return planned


def _serve(time_scale: float, conn: Any) -> None:
    with start_simulator(time_scale=time_scale) as simulator:
        conn.send(simulator.port)
        conn.recv()  # the demo is done
        conn.send(simulator.replies)


class SimulatorProcess:
    """The simulator in a process of its own, so the demo's client threads cannot delay its clock
    (they would, sharing one interpreter lock) and the timings it plays stay exact."""

    def __init__(self, time_scale: float) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(time_scale, child), daemon=True)
        self._process.start()
        self.port: int = self._conn.recv()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"

    def stop(self) -> list[Reply]:
        """Stop serving; returns the ground truth of every call served."""
        self._conn.send("stop")
        replies = self._conn.recv()
        self._process.join(timeout=30)
        return replies


def _call(client: Any, call: Planned) -> bool:
    import openai

    headers = call.scenario.headers()
    model = call.scenario.model or "o4-mini"
    try:
        with thinkmeter.tags(**call.tags):
            if call.api == "chat":
                reply = client.chat.completions.create(
                    model=model, messages=PROMPT, stream=call.stream, reasoning_effort="medium", extra_headers=headers
                )
            else:
                reply = client.responses.create(
                    model=model, input=PROMPT, stream=call.stream, reasoning={"effort": "medium"}, extra_headers=headers
                )
            if call.stream:
                for _ in reply:
                    pass
        return True
    except openai.OpenAIError:
        return False  # the simulator plays rate limits, server errors and dropped connections


class Progress:
    """A one-line progress bar on stderr."""

    def __init__(self, total: int) -> None:
        self.total, self.done = total, 0
        self._lock = threading.Lock()
        self._last = 0.0
        # A terminal gets a bar redrawn in place; a log gets a line every 10%.
        self._interactive = sys.stderr.isatty()

    def step(self) -> None:
        with self._lock:
            self.done += 1
            now = time.monotonic()
            finished = self.done == self.total
            if self._interactive:
                if now - self._last > 0.1 or finished:
                    self._last = now
                    self._draw("\r", "\n" if finished else "")
            elif self.done % max(1, self.total // 10) == 0 or finished:
                self._draw("", "\n")

    def _draw(self, start: str, end: str) -> None:
        filled = 30 * self.done // self.total
        sys.stderr.write(f"{start}  [{'#' * filled}{'.' * (30 - filled)}] {self.done}/{self.total} calls{end}")
        sys.stderr.flush()


def run(settings: Settings, calls: int, concurrency: int, time_scale: float, seed: int) -> DemoResult:
    import openai

    planned = plan(calls, seed)
    simulator = SimulatorProcess(time_scale)
    thinkmeter.instrument(
        exporter="clickhouse",
        clickhouse_url=settings.clickhouse_url,
        data_dir=settings.data_dir,
        providers={f"127.0.0.1:{simulator.port}": "openai"},
    )
    client = openai.OpenAI(base_url=simulator.base_url, api_key="demo", max_retries=0)
    progress = Progress(calls)
    started = time.monotonic()

    def one(call: Planned) -> bool:
        ok = _call(client, call)
        progress.step()
        return ok

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        outcomes = list(pool.map(one, planned))
    result = DemoResult(calls=calls, failed_calls=outcomes.count(False), seconds=time.monotonic() - started)
    replies = simulator.stop()
    thinkmeter.flush(timeout_s=60)
    verify(settings, replies, result)
    return result


def verify(settings: Settings, replies: list[Any], result: DemoResult) -> None:
    """Compare every completed reply's ground truth with the row the store holds for it."""
    from thinkmeter.store import store_session

    completed = {reply.id: reply for reply in replies if reply.outcome == "completed"}
    prices = PriceTable.load(settings.price_file)
    with store_session(settings) as client:
        rows = client.query(
            "SELECT response_id, input_tokens, cache_read_tokens, output_tokens, reasoning_tokens,"
            " visible_output_tokens, cost_usd, time_to_first_visible_token_s, stream"
            " FROM llm_calls WHERE response_id IN {ids:Array(String)}",
            parameters={"ids": list(completed)},
        ).named_results()
        result.stored = int(
            client.query("SELECT count() FROM llm_calls WHERE response_id IN {ids:Array(String)}", parameters={"ids": [r.id for r in replies]}).result_rows[0][0]
        )
    for row in rows:
        reply = completed[row["response_id"]]
        truth = reply.scenario
        expected = {
            "input_tokens": truth.input_tokens,
            "cache_read_tokens": truth.cached_input_tokens,
            "output_tokens": truth.output_tokens,
            "reasoning_tokens": truth.reasoning_tokens,
            "visible_output_tokens": truth.visible_tokens,
        }
        for column, value in expected.items():
            if row[column] != value:
                result.mismatches.append(f"{reply.id} {column}: stored {row[column]}, sent {value}")
        cost = prices.cost(
            reply.model,
            Usage(
                input_tokens=truth.input_tokens,
                cache_read_tokens=truth.cached_input_tokens,
                output_tokens=truth.output_tokens,
                reasoning_tokens=truth.reasoning_tokens,
            ),
        )
        stored_cost = row["cost_usd"]
        if (cost is None) != (stored_cost is None) or (cost is not None and abs(cost.total_usd - stored_cost) > 1e-12):
            result.mismatches.append(f"{reply.id} cost: stored {stored_cost}, expected {cost and cost.total_usd}")
        if row["stream"] and row["time_to_first_visible_token_s"] is not None:
            result.ttfvt_errors_s.append(row["time_to_first_visible_token_s"] - reply.first_visible_wall_s)
        result.checked += 1
