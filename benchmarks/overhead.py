"""CPU and wall time thinkmeter adds to an SDK call, and to each streamed chunk.

    python benchmarks/overhead.py [--quick] [--rounds N] [--calls N] [--setup default|none|caller] [--in-process]

Two worker processes run the same SDK calls against an in-process transport (no sockets): one plain,
one instrumented. `--setup` picks how:
  default  thinkmeter.instrument(exporter="clickhouse", data_dir=tmp): thinkmeter's own tracer
           provider and exporter, what `instrument()` does with no settings
  none     thinkmeter.instrument(exporter="none"): spans built, not exported
  caller   the application's own providers: instrument(tracer_provider=an SDK TracerProvider with a
           BatchSpanProcessor, meter_provider=an SDK MeterProvider, exporter="none"), so spans and
           metrics are recorded into them (the exporter behind the batch processor discards)
The calling thread's CPU (time.thread_time) is the caller-thread cost; the process CPU of each batch
(time.process_time, all threads: export and any background work) is the whole cost.
Batches of the two alternate, so machine drift hits both alike. Per chunk: the added cost of a stream
of LONG chunks minus that of a stream of SHORT chunks, divided by the difference in chunks, from the
lower quartile of each distribution (other jobs on the machine only ever add time).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _payloads  # noqa: E402

SHORT, LONG = 10, 400
SETUPS = ("default", "none", "caller")
MODEL = "o4-mini"
ANTHROPIC_MODEL = "claude-sonnet-4-5"


# ------------------------------------------------------------------------------------------- worker side


def _openai_client(routes: dict[str, bytes]) -> Any:
    import httpx2
    import openai

    def handler(request: httpx2.Request) -> httpx2.Response:
        body = routes[request.headers["x-bench"]]
        stream = body.startswith(b"data:") or body.startswith(b"event:")
        kind = "text/event-stream" if stream else "application/json"
        return httpx2.Response(200, content=body, headers={"content-type": kind})

    return openai.OpenAI(
        api_key="sk-bench",
        base_url="https://api.openai.com/v1",
        http_client=openai.DefaultHttpxClient(transport=httpx2.MockTransport(handler)),
        max_retries=0,
    )


def _anthropic_client(routes: dict[str, bytes]) -> Any:
    import anthropic
    import httpx2

    def handler(request: httpx2.Request) -> httpx2.Response:
        body = routes[request.headers["x-bench"]]
        kind = "text/event-stream" if body.startswith(b"event:") else "application/json"
        return httpx2.Response(200, content=body, headers={"content-type": kind})

    return anthropic.Anthropic(
        api_key="sk-bench",
        http_client=anthropic.DefaultHttpxClient(transport=httpx2.MockTransport(handler)),
        max_retries=0,
    )


def _unpatched(method: Any) -> Any:
    """The SDK's own method under thinkmeter's wrapper (a wrapt proxy), for plain calls in a patched process."""
    import wrapt

    return method.__wrapped__ if isinstance(method, wrapt.BoundFunctionWrapper) else method


def _scenarios(sdks: set[str], plain: bool = False) -> dict[str, Callable[[], int]]:
    """name -> one call (stream consumed); returns the chunks the caller saw. `plain`: call the SDK
    methods under thinkmeter's patches."""
    routes = {
        "chat": _payloads.chat_completion(MODEL),
        "chat_short": _payloads.chat_stream(MODEL, SHORT),
        "chat_long": _payloads.chat_stream(MODEL, LONG),
        "responses": _payloads.response(MODEL),
        "responses_short": _payloads.responses_stream(MODEL, SHORT),
        "responses_long": _payloads.responses_stream(MODEL, LONG),
        "anthropic": _payloads.anthropic_message(ANTHROPIC_MODEL),
        "anthropic_short": _payloads.anthropic_stream(ANTHROPIC_MODEL, SHORT),
        "anthropic_long": _payloads.anthropic_stream(ANTHROPIC_MODEL, LONG),
    }
    oa = _openai_client(routes)
    create = _unpatched(oa.chat.completions.create) if plain else oa.chat.completions.create
    respond = _unpatched(oa.responses.create) if plain else oa.responses.create
    messages = [{"role": "user", "content": "What is 2 + 2?"}]

    def chat(route: str, stream: bool) -> Callable[[], int]:
        headers = {"x-bench": route}
        if not stream:
            return lambda: (create(model=MODEL, messages=messages, extra_headers=headers), 1)[1]
        return lambda: sum(1 for _ in create(model=MODEL, messages=messages, stream=True,
                                                                   extra_headers=headers))

    def responses(route: str, stream: bool) -> Callable[[], int]:
        headers = {"x-bench": route}
        if not stream:
            return lambda: (respond(model=MODEL, input="What is 2 + 2?", extra_headers=headers), 1)[1]
        return lambda: sum(1 for _ in respond(model=MODEL, input="What is 2 + 2?", stream=True,
                                                            extra_headers=headers))

    calls: dict[str, Callable[[], int]] = {
        "chat": chat("chat", False),
        "chat_short": chat("chat_short", True),
        "chat_long": chat("chat_long", True),
        "responses": responses("responses", False),
        "responses_short": responses("responses_short", True),
        "responses_long": responses("responses_long", True),
    }
    if "anthropic" in sdks:
        an = _anthropic_client(routes)
        send = _unpatched(an.messages.create) if plain else an.messages.create

        def messages_call(route: str, stream: bool) -> Callable[[], int]:
            headers = {"x-bench": route}
            kwargs = dict(model=ANTHROPIC_MODEL, max_tokens=1024, messages=messages, extra_headers=headers)
            if not stream:
                return lambda: (send(**kwargs), 1)[1]
            return lambda: sum(1 for _ in send(stream=True, **kwargs))

        calls.update(
            anthropic=messages_call("anthropic", False),
            anthropic_short=messages_call("anthropic_short", True),
            anthropic_long=messages_call("anthropic_long", True),
        )
    return calls


def _instrument(setup: str) -> list[str]:
    import thinkmeter

    if setup == "default":
        return thinkmeter.instrument(exporter="clickhouse", data_dir=tempfile.mkdtemp(prefix="thinkmeter-bench-"))
    if setup == "none":
        return thinkmeter.instrument(exporter="none")
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Discard(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(Discard()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    return thinkmeter.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider, exporter="none")


def worker(setup: str | None) -> None:
    import importlib.util

    sdks = {name for name in ("anthropic",) if importlib.util.find_spec(name)}
    patched: list[str] = []
    if setup is not None:
        import thinkmeter

        patched = _instrument(setup)
        sdks &= set(patched)
    else:
        # The plain worker runs what the instrumented one can trace, so both run the same scenarios.
        sdks &= set(json.loads(sys.argv[sys.argv.index("--sdks") + 1]))
    calls = {"traced": _scenarios(sdks), "plain": _scenarios(sdks, plain=True)}
    print(json.dumps({"ready": sorted(calls["traced"]), "patched": patched}), flush=True)
    thread_time, perf_counter, process_time = time.thread_time_ns, time.perf_counter_ns, time.process_time_ns
    for line in sys.stdin:
        name, variant, count = line.split()
        call = calls[variant][name]
        cpu, wall = [], []
        chunks = 0
        p0 = process_time()
        for _ in range(int(count)):
            c0, w0 = thread_time(), perf_counter()
            chunks = call()
            w1, c1 = perf_counter(), thread_time()
            cpu.append(c1 - c0)
            wall.append(w1 - w0)
        process_cpu = process_time() - p0
        print(json.dumps({"cpu": cpu, "wall": wall, "chunks": chunks, "process_cpu": process_cpu}), flush=True)
    if setup is not None:
        thinkmeter.uninstrument()


# ------------------------------------------------------------------------------------------- parent side


class Worker:
    def __init__(self, setup: str | None, sdks: list[str] | None = None) -> None:
        argv = [sys.executable, __file__, "--worker", setup or "plain"]
        if sdks is not None:
            argv += ["--sdks", json.dumps(sdks)]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.hello = json.loads(self.proc.stdout.readline())

    def run(self, name: str, variant: str, count: int) -> dict[str, Any]:
        self.proc.stdin.write(f"{name} {variant} {count}\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer rounds (about 20 s)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved batches per scenario and variant")
    parser.add_argument("--calls", type=int, default=None, help="calls per non-streamed batch")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="plain calls in the instrumented process (the SDK methods under the patches): same heap, imports and "
        "threads, so only thinkmeter's per-call path differs",
    )
    parser.add_argument("--setup", choices=SETUPS, default="default", help="how the instrumented worker is set up")
    parser.add_argument("--worker", choices=("plain", *SETUPS), help=argparse.SUPPRESS)
    parser.add_argument("--sdks", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(None if args.worker == "plain" else args.worker)
        return
    rounds = args.rounds or (4 if args.quick else 12)
    calls = args.calls or (100 if args.quick else 200)

    traced = Worker(args.setup)
    # --in-process: plain calls go to the SDK methods under the patches, in the instrumented process.
    plain = traced if args.in_process else Worker(None, traced.hello["patched"])
    scenarios = traced.hello["ready"]
    where = "one process" if args.in_process else "two processes"
    print(f"thinkmeter overhead, setup {args.setup!r}, {where}: patched {traced.hello['patched']}; {rounds} rounds; "
          f"streams of {SHORT} and {LONG} chunks")
    samples: dict[tuple[str, str], dict[str, list[int]]] = {}
    workers = {"plain": plain, "traced": traced}
    for name in scenarios:  # warm-up: imports, pydantic model building, first export batch
        for variant, w in workers.items():
            w.run(name, variant, 20)
    for r in range(rounds):
        for name in scenarios:
            count = calls if not name.endswith("_long") else max(5, calls // 20)
            for variant in ("plain", "traced") if r % 2 == 0 else ("traced", "plain"):
                out = workers[variant].run(name, variant, count)
                slot = samples.setdefault((name, variant), {"cpu": [], "wall": [], "process_cpu": [], "calls": []})
                slot["cpu"] += out["cpu"]
                slot["wall"] += out["wall"]
                slot["process_cpu"].append(out["process_cpu"])
                slot["calls"].append(count)
    traced.close()
    if plain is not traced:
        plain.close()
    report(samples, scenarios)


def _median_us(values: list[int]) -> float:
    return statistics.median(values) / 1000


def _quartile_us(values: list[int]) -> float:
    return statistics.quantiles(values, n=4)[0] / 1000


def _process_us(slot: dict[str, list[int]]) -> float:
    """Process CPU (all threads) per call over every batch of a scenario."""
    return sum(slot["process_cpu"]) / sum(slot["calls"]) / 1000


def report(samples: dict[tuple[str, str], dict[str, list[int]]], scenarios: list[str]) -> None:
    print("\ncalling thread: median CPU per call; all threads: process CPU per call; wall: median")
    print(f"{'scenario':<18}{'plain cpu us':>13}{'traced cpu us':>14}{'added':>9}{'ratio':>7}"
          f"{'plain all us':>13}{'traced all us':>14}{'added':>9}{'ratio':>7}{'added wall us':>14}")
    added: dict[str, tuple[float, float, float]] = {}
    for name in scenarios:
        p, t = samples[(name, "plain")], samples[(name, "traced")]
        pc, tc, pw, tw = _median_us(p["cpu"]), _median_us(t["cpu"]), _median_us(p["wall"]), _median_us(t["wall"])
        pa, ta = _process_us(p), _process_us(t)
        added[name] = (tc - pc, tw - pw, ta - pa)
        print(f"{name:<18}{pc:>13.1f}{tc:>14.1f}{tc - pc:>9.1f}{tc / pc:>7.3f}"
              f"{pa:>13.1f}{ta:>14.1f}{ta - pa:>9.1f}{ta / pa:>7.3f}{tw - pw:>14.1f}")
    print("\nper streamed chunk, calling thread (long - short stream, / chunks; lower quartiles):")
    for family in ("chat", "responses", "anthropic"):
        if f"{family}_long" not in added:
            continue
        q = {
            (length, variant): _quartile_us(samples[(f"{family}_{length}", variant)]["cpu"])
            for length in ("long", "short")
            for variant in ("plain", "traced")
        }
        cpu = ((q["long", "traced"] - q["long", "plain"]) - (q["short", "traced"] - q["short", "plain"])) / (LONG - SHORT)
        sdk = (q["long", "plain"] - q["short", "plain"]) / (LONG - SHORT)
        print(f"  {family:<12} added {cpu:6.2f} us/chunk   SDK alone {sdk:6.1f} us/chunk   "
              f"ratio {(sdk + cpu) / sdk:6.3f}   target <= 1 us")
    print("\nper non-streamed call, added CPU (target <= 60 us on the calling thread):")
    for family in ("chat", "responses", "anthropic"):
        if family in added:
            print(f"  {family:<12} calling thread {added[family][0]:6.1f} us   all threads {added[family][2]:6.1f} us")


if __name__ == "__main__":
    main()
