"""Application impact: what `thinkmeter.instrument()` (default exporter) costs a real application.

    python benchmarks/app_impact.py [--seconds 30] [--rate 10] [--calls 2200] [--rounds 3] [--ingest-spans 300000] [--quick]

Separate processes, all real: a loopback OpenAI-style server (canned replies, its own process),
`thinkmeter serve` on a temporary data dir, and an application process making the same real `openai`
SDK calls (1 in 10 streamed): plain, with `thinkmeter.instrument(exporter="none")` (spans built, not
exported: the instrumentation's own cost) and with `thinkmeter.instrument()` (the default exporter):
- steady: `--rate` calls per second for `--seconds`;
- full speed: `--calls` calls back to back.
The three run in turn, `--rounds` times; each figure is the median of its rounds (a VM's CPU time per call
drifts by 20 % from one minute to the next).
The application ends without calling flush(), as most do. Its CPU is the whole process's, every thread
and start-up included (os.wait4), also shown without start-up (imports, instrument()) and for the calls
alone (no exit either); its RSS is the peak (ru_maxrss); rows stored are counted in serve
afterwards. Then serve's own ingest: `--ingest-spans` realistic spans written as segments by the
exporter's code, ingested by a fresh serve-side store, sustained spans/s.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import _payloads  # noqa: E402

MODEL = "o4-mini"
STREAM_EVERY = 10

# ----------------------------------------------------------------------------------------- the server


def run_server() -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    plain, stream = _payloads.chat_completion(MODEL), _payloads.chat_stream(MODEL, 40)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out as two writes: without it each call waits 40 ms for a delayed ACK

        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            body = stream if request.get("stream") else plain
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream" if request.get("stream") else "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


# ---------------------------------------------------------------------------------------- the application


def run_app(instrumented: bool, port: int, rate: float, seconds: float, calls: int) -> None:
    if instrumented:
        import thinkmeter

        thinkmeter.instrument()
    import openai

    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="bench", max_retries=0)
    messages = [{"role": "user", "content": "What is two plus two?"}]
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of the process
    startup_cpu = usage.ru_utime + usage.ru_stime

    def call(index: int) -> None:
        if index % STREAM_EVERY == STREAM_EVERY - 1:
            for _ in client.chat.completions.create(model=MODEL, messages=messages, stream=True):
                pass
        else:
            client.chat.completions.create(model=MODEL, messages=messages)

    made = 0
    if rate:
        started = time.monotonic()
        total = int(rate * seconds)
        for index in range(total):
            time.sleep(max(0.0, started + index / rate - time.monotonic()))
            call(index)
        made = total
    else:
        for index in range(calls):
            call(index)
        made = calls
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"calls": made, "startup_cpu_s": startup_cpu, "calls_cpu_s": usage.ru_utime + usage.ru_stime - startup_cpu}), flush=True)
    # No flush(): the application just ends.


def measure_app(instrumented: bool, port: int, env: dict[str, str], rate: float, seconds: float, calls: int) -> dict[str, float]:
    args = [sys.executable, __file__, "--app", "instrumented" if instrumented else "plain", "--port", str(port),
            "--rate", str(rate), "--seconds", str(seconds), "--calls", str(calls)]
    started = time.monotonic()
    process = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.monotonic() - started
    out, err = process.stdout.read(), process.stderr.read()  # type: ignore[union-attr]
    if os.waitstatus_to_exitcode(status) != 0 or err.strip():
        raise SystemExit(f"application failed or wrote to stderr:\n{err.decode()}")
    report = json.loads(out.decode().strip().splitlines()[-1])
    cpu = usage.ru_utime + usage.ru_stime
    return {"cpu_s": cpu, "work_cpu_s": cpu - report["startup_cpu_s"], "calls_cpu_s": report.get("calls_cpu_s", 0.0),
            "rss_mb": usage.ru_maxrss / 1024, "calls": report["calls"], "wall_s": wall}


# ------------------------------------------------------------------------------------------------- serve


def start_serve(data_dir: Path) -> tuple[subprocess.Popen[bytes], int]:
    from thinkmeter.serve.discovery import find_serve

    process = subprocess.Popen(
        [sys.executable, "-m", "thinkmeter", "serve", "--port", "0"],
        env={**os.environ, "THINKMETER_DATA_DIR": str(data_dir)},
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = find_serve(data_dir)
        if found is not None:
            return process, found.port
        time.sleep(0.1)
    raise SystemExit("serve did not start")


def rows_stored(port: int, service: str, expected: int) -> int:
    import clickhouse_connect

    client = clickhouse_connect.get_client(host="127.0.0.1", port=port)
    deadline, count = time.monotonic() + 60, -1
    while time.monotonic() < deadline:
        count = client.query("SELECT count() FROM llm_calls WHERE ServiceName = {s:String}", parameters={"s": service}).first_row[0]
        if count >= expected:
            time.sleep(1.0)  # anything beyond expected (stored twice) would show now
            return client.query("SELECT count() FROM llm_calls WHERE ServiceName = {s:String}", parameters={"s": service}).first_row[0]
        time.sleep(0.2)
    return count


# ------------------------------------------------------------------------------------------------ ingest


def measure_ingest(total: int) -> None:
    """Segments of `total` realistic spans (2,000 per segment, as the exporter writes them), then one
    ingest into a fresh store, timed in this process (serve's ingest job is this same call)."""
    from export_throughput import realistic_spans

    from thinkmeter.config import Settings
    from thinkmeter.export import spans_to_columns
    from thinkmeter.segments import TRACES_TABLE, SegmentWriter, ingest_segments, trace_block
    from thinkmeter.store import embedded_store, ensure_schema

    data_dir = Path(tempfile.mkdtemp(prefix="tm-ingest-"))
    settings = Settings(data_dir=data_dir)
    writer = SegmentWriter(settings.segments_dir, 1 << 40)
    batch = 2_000
    spans = realistic_spans(batch)
    trace_block(spans_to_columns(spans))  # warm: the exporter's first batch pays for imports and caches
    started = time.process_time()
    block = trace_block(spans_to_columns(spans))
    encode_us = (time.process_time() - started) / batch * 1e6
    for _ in range(total // batch):
        writer.write(TRACES_TABLE, block)
    with embedded_store(settings) as client:
        ensure_schema(client, settings)
        started, cpu = time.monotonic(), time.process_time()
        ingested = ingest_segments(client, settings.segments_dir)
        seconds, cpu = time.monotonic() - started, time.process_time() - cpu
        stored = client.query("SELECT count() FROM llm_calls").first_row[0]
    print(f"  serve ingest: {ingested:,} spans in {seconds:.2f} s = {ingested / seconds:,.0f} spans/s sustained "
          f"(batches of up to 64 MiB, all materialized views); {stored:,} rows in llm_calls")
    print(f"  serve ingest CPU (all threads, chDB's included): {cpu / ingested * 1e6:.1f} us per span "
          f"= {ingested / cpu:,.0f} spans per CPU-second")
    print(f"  application side, per span: columns + Native block {encode_us:.1f} us CPU on the export thread")


# -------------------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--calls", type=int, default=2200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ingest-spans", type=int, default=300_000)
    parser.add_argument("--quick", action="store_true", help="10 s steady, 600 calls, 100k spans ingested, 1 round")
    parser.add_argument("--app", choices=("plain", "instrumented"), help=argparse.SUPPRESS)
    parser.add_argument("--server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.server:
        return run_server()
    if args.app:
        return run_app(args.app == "instrumented", args.port, args.rate, args.seconds, args.calls)
    if args.quick:
        args.seconds, args.calls, args.ingest_spans, args.rounds = 10.0, 600, 100_000, 1

    server = subprocess.Popen([sys.executable, __file__, "--server"], stdout=subprocess.PIPE)
    port = int(server.stdout.readline())  # type: ignore[union-attr]
    data_dir = Path(tempfile.mkdtemp(prefix="tm-app-impact-"))
    serve, serve_port = start_serve(data_dir)
    serve_cpu_before = _process_cpu(serve.pid)
    print(f"application impact, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; openai SDK against a loopback server; "
          f"1 in {STREAM_EVERY} calls streamed; instrumented = thinkmeter.instrument() defaults, `thinkmeter serve` running")
    try:
        for label, rate, seconds, calls in (("steady", args.rate, args.seconds, 0), ("full speed", 0.0, 0.0, args.calls)):
            service = f"bench-{label.replace(' ', '-')}-{os.getpid()}"
            env = {**os.environ, "THINKMETER_DATA_DIR": str(data_dir), "OTEL_SERVICE_NAME": service}
            rounds: dict[str, list[dict[str, float]]] = {"plain": [], "exporter=none": [], "instrumented": []}
            for _ in range(args.rounds):
                rounds["plain"].append(measure_app(False, port, env, rate, seconds, calls))
                rounds["exporter=none"].append(measure_app(True, port, {**env, "THINKMETER_EXPORTER": "none"}, rate, seconds, calls))
                rounds["instrumented"].append(measure_app(True, port, env, rate, seconds, calls))
            plain, spans_only, instrumented = (_median(rounds[name]) for name in rounds)
            n = int(instrumented["calls"])
            stored = rows_stored(serve_port, service, n * args.rounds)
            what = f"{rate:g} calls/s for {seconds:g} s" if rate else f"{calls} calls back to back"
            what += f"; medians of {args.rounds} rounds" if args.rounds > 1 else ""
            print(f"\n{label} ({what}):")
            for name, run in (("plain", plain), ("exporter=none", spans_only), ("instrumented", instrumented)):
                print(f"  {name:<13} CPU {run['cpu_s']:6.2f} s (after start-up {run['work_cpu_s']:6.2f} s, "
                      f"calls alone {run['calls_cpu_s']:6.2f} s)  "
                      f"peak RSS {run['rss_mb']:6.1f} MB  wall {run['wall_s']:5.1f} s")
            print(f"  whole process: CPU ratio {instrumented['cpu_s'] / plain['cpu_s']:.2f}x, added CPU per call "
                  f"{(instrumented['cpu_s'] - plain['cpu_s']) / n * 1e6:,.0f} us (all threads, start-up included); "
                  f"RSS +{instrumented['rss_mb'] - plain['rss_mb']:.1f} MB")
            print(f"  after start-up (imports and instrument() done): CPU ratio "
                  f"{instrumented['work_cpu_s'] / plain['work_cpu_s']:.2f}x, added CPU per call "
                  f"{(instrumented['work_cpu_s'] - plain['work_cpu_s']) / n * 1e6:,.0f} us (all threads, exit included)")
            print(f"  during the calls alone (no start-up, no exit): CPU ratio "
                  f"{instrumented['calls_cpu_s'] / plain['calls_cpu_s']:.2f}x, added CPU per call "
                  f"{(instrumented['calls_cpu_s'] - plain['calls_cpu_s']) / n * 1e6:,.0f} us (all threads)")
            print(f"  of which the span export (instrumented vs exporter=none, exit included): "
                  f"{(instrumented['work_cpu_s'] - spans_only['work_cpu_s']) / n * 1e6:,.0f} us CPU per call, "
                  f"RSS {instrumented['rss_mb'] - spans_only['rss_mb']:+.1f} MB")
            print(f"  rows stored (llm_calls, read through serve): {stored} of {n * args.rounds} calls"
                  f"{'' if stored == n * args.rounds else '  <-- MISMATCH'}; the application exited without flush() and wrote nothing to stderr")
        print(f"\n  serve meanwhile: {_process_cpu(serve.pid) - serve_cpu_before:.2f} s CPU (ingest + schema) in its own process")
    finally:
        serve.terminate()
        serve.wait(60)
        server.terminate()
    print()
    measure_ingest(args.ingest_spans)


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def _process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    main()
