"""CPU and wall time thinkmeter adds to an SDK call, and to each streamed chunk.

    python benchmarks/overhead.py [--quick] [--rounds N] [--calls N]

Two worker processes run the same SDK calls against an in-process transport (no sockets): one plain,
one after `thinkmeter.instrument(exporter="clickhouse", data_dir=tmp)`, so the enqueue path is
included while the export thread's CPU is not (the calling thread's time.thread_time is measured).
Batches of the two alternate, so machine drift hits both alike. Per chunk: the added cost of a stream
of LONG chunks minus that of a stream of SHORT chunks, divided by the difference in chunks.
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


def _scenarios(sdks: set[str]) -> dict[str, Callable[[], int]]:
    """name -> one call (stream consumed); returns the chunks the caller saw."""
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
    messages = [{"role": "user", "content": "What is 2 + 2?"}]

    def chat(route: str, stream: bool) -> Callable[[], int]:
        headers = {"x-bench": route}
        if not stream:
            return lambda: (oa.chat.completions.create(model=MODEL, messages=messages, extra_headers=headers), 1)[1]
        return lambda: sum(1 for _ in oa.chat.completions.create(model=MODEL, messages=messages, stream=True,
                                                                   extra_headers=headers))

    def responses(route: str, stream: bool) -> Callable[[], int]:
        headers = {"x-bench": route}
        if not stream:
            return lambda: (oa.responses.create(model=MODEL, input="What is 2 + 2?", extra_headers=headers), 1)[1]
        return lambda: sum(1 for _ in oa.responses.create(model=MODEL, input="What is 2 + 2?", stream=True,
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

        def messages_call(route: str, stream: bool) -> Callable[[], int]:
            headers = {"x-bench": route}
            kwargs = dict(model=ANTHROPIC_MODEL, max_tokens=1024, messages=messages, extra_headers=headers)
            if not stream:
                return lambda: (an.messages.create(**kwargs), 1)[1]
            return lambda: sum(1 for _ in an.messages.create(stream=True, **kwargs))

        calls.update(
            anthropic=messages_call("anthropic", False),
            anthropic_short=messages_call("anthropic_short", True),
            anthropic_long=messages_call("anthropic_long", True),
        )
    return calls


def worker(instrumented: bool) -> None:
    import importlib.util

    sdks = {name for name in ("anthropic",) if importlib.util.find_spec(name)}
    patched: list[str] = []
    if instrumented:
        import thinkmeter

        data_dir = tempfile.mkdtemp(prefix="thinkmeter-bench-")
        patched = thinkmeter.instrument(exporter="clickhouse", data_dir=data_dir)
        sdks &= set(patched)
    else:
        # The plain worker runs what the instrumented one can trace, so both run the same scenarios.
        sdks &= set(json.loads(sys.argv[sys.argv.index("--sdks") + 1]))
    calls = _scenarios(sdks)
    print(json.dumps({"ready": sorted(calls), "patched": patched}), flush=True)
    thread_time, perf_counter = time.thread_time_ns, time.perf_counter_ns
    for line in sys.stdin:
        name, count = line.split()
        call = calls[name]
        cpu, wall = [], []
        chunks = 0
        for _ in range(int(count)):
            c0, w0 = thread_time(), perf_counter()
            chunks = call()
            w1, c1 = perf_counter(), thread_time()
            cpu.append(c1 - c0)
            wall.append(w1 - w0)
        print(json.dumps({"cpu": cpu, "wall": wall, "chunks": chunks}), flush=True)
    if instrumented:
        thinkmeter.uninstrument()


# ------------------------------------------------------------------------------------------- parent side


class Worker:
    def __init__(self, instrumented: bool, sdks: list[str] | None = None) -> None:
        argv = [sys.executable, __file__, "--worker", "instrumented" if instrumented else "plain"]
        if sdks is not None:
            argv += ["--sdks", json.dumps(sdks)]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.hello = json.loads(self.proc.stdout.readline())

    def run(self, name: str, count: int) -> dict[str, Any]:
        self.proc.stdin.write(f"{name} {count}\n")
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
    parser.add_argument("--worker", choices=("plain", "instrumented"), help=argparse.SUPPRESS)
    parser.add_argument("--sdks", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker == "instrumented")
        return
    rounds = args.rounds or (4 if args.quick else 12)
    calls = args.calls or (100 if args.quick else 200)

    traced = Worker(True)
    plain = Worker(False, traced.hello["patched"])
    scenarios = traced.hello["ready"]
    print(f"thinkmeter overhead: patched {traced.hello['patched']}; {rounds} rounds; "
          f"streams of {SHORT} and {LONG} chunks")
    samples: dict[tuple[str, str], dict[str, list[int]]] = {}
    for name in scenarios:  # warm-up: imports, pydantic model building, first export batch
        for w in (plain, traced):
            w.run(name, 20)
    for r in range(rounds):
        for name in scenarios:
            count = calls if not name.endswith("_long") else max(5, calls // 20)
            order = (plain, traced) if r % 2 == 0 else (traced, plain)
            for w in order:
                variant = "traced" if w is traced else "plain"
                out = w.run(name, count)
                slot = samples.setdefault((name, variant), {"cpu": [], "wall": []})
                slot["cpu"] += out["cpu"]
                slot["wall"] += out["wall"]
    plain.close()
    traced.close()
    report(samples, scenarios)


def _median_us(values: list[int]) -> float:
    return statistics.median(values) / 1000


def report(samples: dict[tuple[str, str], dict[str, list[int]]], scenarios: list[str]) -> None:
    print(f"\n{'scenario':<18}{'plain cpu us':>14}{'traced cpu us':>15}{'added cpu us':>14}{'ratio':>8}"
          f"{'plain wall us':>15}{'added wall us':>15}")
    added: dict[str, tuple[float, float]] = {}
    for name in scenarios:
        p, t = samples[(name, "plain")], samples[(name, "traced")]
        pc, tc, pw, tw = _median_us(p["cpu"]), _median_us(t["cpu"]), _median_us(p["wall"]), _median_us(t["wall"])
        added[name] = (tc - pc, tw - pw)
        print(f"{name:<18}{pc:>14.1f}{tc:>15.1f}{tc - pc:>14.1f}{tc / pc:>8.3f}{pw:>15.1f}{tw - pw:>15.1f}")
    print("\nper streamed chunk (long - short stream, / chunks):")
    for family in ("chat", "responses", "anthropic"):
        if f"{family}_long" not in added:
            continue
        cpu = (added[f"{family}_long"][0] - added[f"{family}_short"][0]) / (LONG - SHORT)
        wall = (added[f"{family}_long"][1] - added[f"{family}_short"][1]) / (LONG - SHORT)
        p_long = _median_us(samples[(f"{family}_long", "plain")]["cpu"]) / LONG
        print(f"  {family:<12} added cpu {cpu:6.2f} us/chunk   added wall {wall:6.2f} us/chunk   "
              f"(SDK alone ~{p_long:.1f} us cpu/chunk)   target <= 1 us")
    print("\nper non-streamed call: added cpu median (target <= 25 us):")
    for family in ("chat", "responses", "anthropic"):
        if family in added:
            print(f"  {family:<12} {added[family][0]:6.1f} us")


if __name__ == "__main__":
    main()
