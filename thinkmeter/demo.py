"""The demo: a simulated reasoning workload from a mixed fleet, through the real SDKs, instrumented, into the store.

Calls go to OpenAI (chat and responses), Anthropic, Gemini, a vLLM server and Ollama, each played by a
loopback simulator that knows every call's ground truth. The calls run in an application process of
their own that does what a real application does: `thinkmeter.instrument()`, SDK calls, and an exit
without flush() (its spans become segments; it never opens the store). The demo then reads the way a
user does, through `thinkmeter serve` when it runs for the data dir and else by opening the store
(after ingesting the segments), checks what the store holds against what was sent, per provider, and
prints the report.
"""

from __future__ import annotations

import json
import multiprocessing
import random
import re
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import thinkmeter
from thinkmeter import demo_tasks
from thinkmeter.config import Settings
from thinkmeter.demo_tasks import GradedResult
from thinkmeter.pricing import PriceTable
from thinkmeter.schemas.record import Usage
from thinkmeter.simulator import Reply, Scenario, TrafficMix, start_simulator

STREAM_SHARE = 0.6
RESPONSES_SHARE = 0.4  # of the OpenAI calls; the rest use chat completions
PROMPT = "Work through task #{index} and answer briefly."  # the number ties the simulator's reply to the call
_CALL_NUMBER = re.compile(r"task #(\d+)")
ANTHROPIC_MAX_TOKENS = 16_000  # the SDK refuses non-streamed calls that may run past 10 minutes
OLLAMA_NUM_PREDICT = 8_192  # a local model's usual output budget; keeps runaway thinking bounded
STORED_WAIT_S = 30.0


@dataclass(frozen=True)
class Provider:
    name: str  # as stored in llm_calls.provider
    share: float
    model: str | None  # None: the traffic mix's OpenAI model (one of them deliberately unpriced)
    reasoning_estimated: bool = False  # the provider reports no reasoning count: the split is estimated
    reports_cache_writes: bool = False  # elsewhere the store's cache-write figure is not checked
    omits_zero_cache_reads: bool = False  # no cached-token field when nothing came from the cache: unknown


PROVIDERS = (
    Provider("openai", 0.50, None),
    Provider("anthropic", 0.15, "claude-sonnet-4-5", reports_cache_writes=True),
    Provider("gcp.gemini", 0.15, "gemini-2.5-flash", omits_zero_cache_reads=True),
    # A self-hosted vLLM reports reasoning tokens; an open-weight model has no shipped price (prices are per provider).
    Provider("vllm", 0.10, "qwen3-235b-a22b"),
    # Ollama counts thinking inside eval_count only; a local model has no price.
    Provider("ollama", 0.10, "qwq:32b", reasoning_estimated=True),
)
BY_NAME = {provider.name: provider for provider in PROVIDERS}


@dataclass
class Planned:
    index: int
    tags: dict[str, str]
    scenario: Scenario
    provider: str
    api: str  # "chat" or "responses" (OpenAI); the provider's own API otherwise
    stream: bool

    @property
    def prompt(self) -> str:
        return PROMPT.format(index=self.index)


@dataclass
class ProviderCheck:
    """What verify() found for one provider's completed calls."""

    checked: int = 0
    mismatches: int = 0
    estimated: int = 0  # calls whose reasoning split the store holds as an estimate
    true_reasoning: int = 0  # over the estimated calls: what the model really spent ...
    estimated_reasoning: int = 0  # ... and what the store estimated


@dataclass
class DemoResult:
    calls: int
    failed_calls: int
    seconds: float
    stored: int = 0
    mismatches: list[str] = field(default_factory=list)
    checked: int = 0
    by_provider: dict[str, ProviderCheck] = field(default_factory=dict)
    # stored time to first visible token minus the simulator's, per streamed call
    ttfvt_errors_s: list[float] = field(default_factory=list)
    graded: GradedResult | None = None
    window_s: int = 3600  # covers this run's rows


def plan(calls: int, seed: int) -> list[Planned]:
    mix, rng = TrafficMix(seed), random.Random(seed)
    planned = []
    for index in range(calls):
        tags, scenario = mix.draw()
        provider = rng.choices(PROVIDERS, weights=[p.share for p in PROVIDERS])[0]
        api = "responses" if provider.name == "openai" and rng.random() < RESPONSES_SHARE else "chat"
        if provider.model is not None:
            scenario = scenario.model_copy(update={"model": provider.model})
        if provider.name == "ollama":
            scenario = scenario.model_copy(update={"reasoning_text": "raw"})  # Ollama returns raw thinking, never hidden
        planned.append(Planned(index, tags, scenario, provider.name, api, rng.random() < STREAM_SHARE))
    return planned


def _serve(time_scale: float, options: dict[str, Any], conn: Any) -> None:
    with start_simulator(time_scale=time_scale, **options) as simulator:
        conn.send(simulator.port)
        conn.recv()  # the demo is done
        conn.send(simulator.replies)


class SimulatorProcess:
    """The simulator in a process of its own, so the demo's client threads cannot delay its clock
    (they would, sharing one interpreter lock) and the timings it plays stay exact.

    The process starts at construction; `port` waits until it serves."""

    def __init__(self, time_scale: float, **options: Any) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(time_scale, options, child), daemon=True)
        self._process.start()
        self._port: int | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            self._port = int(self._conn.recv())
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"  # OpenAI-style base URL

    def stop(self) -> list[Reply]:
        """Stop serving; returns the ground truth of every call served."""
        self._conn.send("stop")
        replies = self._conn.recv()
        self._process.join(timeout=30)
        return replies


class Fleet:
    """One simulator per kind of endpoint, each in a process of its own.

    Provider names follow the address a client calls, so the OpenAI server, the vLLM server and Ollama
    each get a simulator of their own; Anthropic and Gemini share one that no mapping names, where their
    SDKs name their own provider."""

    def __init__(self, time_scale: float) -> None:
        self.simulators = {
            "openai": SimulatorProcess(time_scale),
            "vllm": SimulatorProcess(time_scale, reasoning_field="reasoning"),
            "ollama": SimulatorProcess(time_scale),
            "native": SimulatorProcess(time_scale),  # anthropic and gemini
        }

    @property
    def providers(self) -> dict[str, str]:
        """The `providers=` mapping for thinkmeter.instrument()."""
        return {f"127.0.0.1:{self.simulators[name].port}": name for name in ("openai", "vllm", "ollama")}

    @property
    def urls(self) -> dict[str, str]:
        return {name: simulator.url for name, simulator in self.simulators.items()}

    def stop(self) -> list[Reply]:
        return [reply for simulator in self.simulators.values() for reply in simulator.stop()]


def _clients(urls: dict[str, str]) -> dict[str, Any]:
    import anthropic
    import openai
    from google import genai
    from google.genai import types

    return {
        "openai": openai.OpenAI(base_url=urls["openai"] + "/v1", api_key="demo", max_retries=0),
        "vllm": openai.OpenAI(base_url=urls["vllm"] + "/v1", api_key="demo", max_retries=0),
        "anthropic": anthropic.Anthropic(base_url=urls["native"], api_key="demo", max_retries=0),
        "gcp.gemini": genai.Client(api_key="demo", http_options=types.HttpOptions(base_url=urls["native"])),
    }


def _call(urls: dict[str, str], clients: dict[str, Any], call: Planned) -> str | None:
    """Make one call, a stream read to its end; returns what it raised, if anything."""
    try:
        with thinkmeter.tags(**call.tags, session=_session(call.index)):
            _request(urls, clients, call)
        return None
    except Exception as exc:  # the simulator plays rate limits, server errors and dropped connections
        return repr(exc)


def _drain(reply: Any, stream: bool) -> None:
    if stream:
        for _ in reply:
            pass


def _request(urls: dict[str, str], clients: dict[str, Any], call: Planned) -> None:
    headers = call.scenario.headers()
    model = call.scenario.model or "o4-mini"
    messages = [{"role": "user", "content": call.prompt}]
    if call.provider in ("openai", "vllm"):
        client = clients[call.provider]
        if call.api == "responses":
            reply = client.responses.create(
                model=model, input=messages, stream=call.stream, reasoning={"effort": "medium"}, extra_headers=headers
            )
        else:
            reply = client.chat.completions.create(
                model=model, messages=messages, stream=call.stream, reasoning_effort="medium", extra_headers=headers
            )
    elif call.provider == "anthropic":
        reply = clients["anthropic"].messages.create(
            model=model,
            max_tokens=ANTHROPIC_MAX_TOKENS,
            thinking={"type": "enabled", "budget_tokens": ANTHROPIC_MAX_TOKENS * 3 // 4},
            messages=messages,
            stream=call.stream,
            extra_headers=headers,
        )
    elif call.provider == "gcp.gemini":
        from google.genai import types

        config = types.GenerateContentConfig(
            thinking_config=types.ThinkingConfig(include_thoughts=True), http_options=types.HttpOptions(headers=headers)
        )
        models = clients["gcp.gemini"].models
        generate = models.generate_content_stream if call.stream else models.generate_content
        reply = generate(model=model, contents=call.prompt, config=config)
    else:
        import ollama

        # The scenario travels in a header, and the ollama client takes headers per client only.
        client = ollama.Client(host=urls["ollama"], headers=headers)
        try:
            options = {"num_predict": OLLAMA_NUM_PREDICT}
            _drain(client.chat(model=model, messages=messages, think=True, stream=call.stream, options=options), call.stream)
        finally:
            client.close()
        return
    _drain(reply, call.stream)


class Progress:
    """A one-line progress bar on stderr."""

    def __init__(self, total: int, unit: str = "calls") -> None:
        self.total, self.done, self.unit = total, 0, unit
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
        sys.stderr.write(f"{start}  [{'#' * filled}{'.' * (30 - filled)}] {self.done}/{self.total} {self.unit}{end}")
        sys.stderr.flush()


def run(settings: Settings, calls: int, concurrency: int, time_scale: float, seed: int, graded_per_budget: int = 0) -> DemoResult:
    """The mixed workload, then (graded_per_budget > 0) the graded tasks of demo_tasks, both in an
    application process of their own; then the checks, reading as a user does."""
    planned = plan(calls, seed)
    fleet = Fleet(time_scale)
    started = time.monotonic()
    errors, graded = run_application(settings, fleet, planned, concurrency, graded_per_budget, seed)
    result = DemoResult(calls=calls, failed_calls=sum(e is not None for e in errors), seconds=time.monotonic() - started)
    for call, error in zip(planned, errors, strict=True):
        if error is not None and call.scenario.error_status is None and call.scenario.disconnect_after_visible is None:
            result.mismatches.append(f"call {call.index} ({call.provider}) failed unplanned: {error}")
    result.graded = graded
    replies = fleet.stop()
    wait_until_stored(settings)
    result.window_s = int(time.monotonic() - started) + 60
    verify(settings, planned, replies, result)
    return result


def run_application(
    settings: Settings, fleet: Fleet, planned: list[Planned], concurrency: int, graded_per_budget: int, seed: int
) -> tuple[list[str | None], GradedResult | None]:
    """Run the calls in an application process of their own: what each call raised, and the graded tasks."""
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    application = context.Process(
        target=_application,
        args=(settings, fleet.urls, fleet.providers, planned, concurrency, graded_per_budget, seed, send),
    )
    application.start()
    send.close()
    errors, graded = receive.recv()
    application.join(timeout=120)
    if application.exitcode != 0:
        raise RuntimeError(f"the demo's application process failed (exit code {application.exitcode})")
    return errors, graded


def _application(
    settings: Settings, urls: dict[str, str], providers: dict[str, str], planned: list[Planned], concurrency: int,
    graded_per_budget: int, seed: int, send: Any,
) -> None:
    """What an instrumented application does: instrument, call, and exit (no flush: atexit writes the rest)."""
    thinkmeter.instrument(
        exporter="clickhouse", clickhouse_url=settings.clickhouse_url, data_dir=settings.data_dir, providers=providers
    )
    clients = _clients(urls)
    progress = Progress(len(planned))

    def one(call: Planned) -> str | None:
        error = _call(urls, clients, call)
        progress.step()
        return error

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        errors = list(pool.map(one, planned))
    graded = None
    if graded_per_budget > 0:
        graded = demo_tasks.run(
            settings, clients, urls["openai"] + "/v1", providers, graded_per_budget, concurrency, seed,
            prefix=f"demo-{uuid.uuid4().hex[:6]}", progress=Progress(len(demo_tasks.plan(graded_per_budget, seed, "")), "graded tasks").step,
        )  # fmt: skip
    send.send((errors, graded))


def wait_until_stored(settings: Settings) -> None:
    """Through `thinkmeter serve`, the application's last segments are stored within a second or two:
    wait until none is left (without serve, the reader ingests them itself)."""
    from thinkmeter.segments import kept_segments
    from thinkmeter.serve.discovery import find_serve

    if settings.clickhouse_url or find_serve(settings.data_dir) is None:
        return
    deadline = time.monotonic() + STORED_WAIT_S
    while kept_segments(settings.segments_dir) and time.monotonic() < deadline:
        time.sleep(0.2)


def _call_index(reply: Reply) -> int | None:
    found = _CALL_NUMBER.search(json.dumps(reply.ask.prompt, default=str))
    return int(found.group(1)) if found else None


def verify(settings: Settings, planned: list[Planned], replies: list[Reply], result: DemoResult) -> None:
    """Compare every completed reply's ground truth with the row the store holds for it.

    Rows are tied to calls by the session tag the demo sets on each one (`call-<n>`), and replies by the
    call number in the prompt. Counts the provider reports must match exactly; where the reasoning split
    is an estimate, the reported totals must match and the row must say `estimated`."""
    from thinkmeter.store import store_session

    by_index = {index: reply for reply in replies if (index := _call_index(reply)) is not None}
    completed = {index: reply for index, reply in by_index.items() if reply.outcome == "completed"}
    prices = PriceTable.load(settings.price_file)
    with store_session(settings) as client:
        rows = list(client.query(
            "SELECT session, provider, response_id, input_tokens, cache_read_tokens, cache_write_tokens,"
            " output_tokens, reasoning_tokens, visible_output_tokens, reasoning_source, cost_usd,"
            " time_to_first_visible_token_s, stream"
            " FROM llm_calls WHERE session IN {sessions:Array(String)}",
            parameters={"sessions": [_session(index) for index in by_index]},
        ).named_results())
    result.stored = len(rows)
    for row in rows:
        index = int(row["session"].removeprefix("call-"))
        reply = completed.get(index)
        if reply is None:
            continue
        call = planned[index]
        check = result.by_provider.setdefault(call.provider, ProviderCheck())
        problems = _compare(row, call, reply, prices, check)
        check.checked += 1
        check.mismatches += bool(problems)
        result.mismatches.extend(f"call {index} ({call.provider}) {problem}" for problem in problems)
        if row["stream"] and row["time_to_first_visible_token_s"] is not None:
            result.ttfvt_errors_s.append(row["time_to_first_visible_token_s"] - reply.first_visible_wall_s)
        result.checked += 1
    missing = len(completed) - result.checked
    if missing:
        result.mismatches.append(f"{missing} completed calls have no row in the store")


def _session(index: int) -> str:
    return f"call-{index}"


def _compare(row: dict[str, Any], call: Planned, reply: Reply, prices: PriceTable, check: ProviderCheck) -> list[str]:
    provider = BY_NAME[call.provider]
    truth = reply.scenario
    cache_write = truth.cache_write_tokens if provider.reports_cache_writes else None
    cache_read = truth.cached_input_tokens or (None if provider.omits_zero_cache_reads else 0)
    expected: dict[str, Any] = {
        "provider": provider.name,
        "response_id": "" if provider.name == "ollama" else reply.id,  # Ollama's replies carry no id
        "input_tokens": truth.input_tokens,
        "output_tokens": truth.output_tokens,
    }
    if provider.reports_cache_writes:
        expected["cache_write_tokens"] = cache_write
    if provider.reasoning_estimated:  # Ollama reports no cache either
        expected["reasoning_source"] = "estimated"
        check.estimated += 1
        check.true_reasoning += truth.reasoning_tokens
        check.estimated_reasoning += row["reasoning_tokens"] or 0
    else:
        expected |= {
            "cache_read_tokens": cache_read,
            "reasoning_tokens": truth.reasoning_tokens,
            "visible_output_tokens": truth.visible_tokens,
        }
    problems = [f"{column}: stored {row[column]!r}, sent {value!r}" for column, value in expected.items() if row[column] != value]
    usage = Usage(
        input_tokens=truth.input_tokens,
        cache_read_tokens=row["cache_read_tokens"] if provider.reasoning_estimated else cache_read,
        cache_write_tokens=cache_write,
        output_tokens=truth.output_tokens,
        # an estimate is priced as stored; its closeness to the truth is reported apart
        reasoning_tokens=row["reasoning_tokens"] if provider.reasoning_estimated else truth.reasoning_tokens,
    )
    cost = prices.cost(provider.name, reply.model, usage)
    stored_cost = row["cost_usd"]
    if (cost is None) != (stored_cost is None) or (cost is not None and abs(cost.total_usd - stored_cost) > 1e-12):
        problems.append(f"cost: stored {stored_cost}, expected {cost and cost.total_usd}")
    return problems
