"""Export throughput: the application's export thread (spans -> segments) and serve's ingest.

    python benchmarks/export_throughput.py [--quick] [--spans N]

1. Stages: CPU per span of each step of the application's export thread (spans -> columns, columns ->
   Native block, segment write), i.e. the spans/s one core sustains; then serve's side, the ingest of
   those segments into chDB with its materialized views.
2. Sustained: a caller hands N finished spans to ClickHouseSpanProcessor.on_end as fast as the queue
   takes them; spans/s until force_flush has them all in segments, spans dropped, and the caller's
   on_end latency percentiles while the export thread works (the GIL is shared: this is the "never
   blocked" figure).
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.trace import SpanKind

from thinkmeter.config import Settings
from thinkmeter.export import ClickHouseSpanProcessor, spans_to_columns
from thinkmeter.schemas import semconv as sc
from thinkmeter.segments import TRACES_TABLE, SegmentWriter, ingest_segments, trace_block
from thinkmeter.store import embedded_store, ensure_schema

MODELS = ("o4-mini", "gpt-5", "gpt-5-mini", "claude-sonnet-4-5", "gemini-2.5-pro", "qwen3-32b")


def realistic_spans(count: int, seed: int = 7) -> list[ReadableSpan]:
    """Finished LLM-call spans with the ~25 attributes thinkmeter sets on a streamed reasoning call."""
    rng = random.Random(seed)
    provider = TracerProvider(resource=Resource.create({"service.name": "bench-export"}))
    tracer = provider.get_tracer("thinkmeter", "0.1.0")
    spans = []
    for i in range(count):
        model = MODELS[i % len(MODELS)]
        output = rng.randint(50, 8000)
        reasoning = rng.randint(0, output)
        attrs: dict[str, Any] = {
            sc.OPERATION: "chat", sc.PROVIDER: "openai", sc.REQUEST_STREAM: True, sc.REQUEST_MODEL: model,
            sc.REQUEST_MAX_TOKENS: 16384, sc.REQUEST_REASONING_LEVEL: "medium", sc.SERVER_ADDRESS: "api.openai.com",
            sc.SERVER_PORT: 443, sc.RESPONSE_MODEL: f"{model}-2025-08-07", sc.RESPONSE_ID: f"chatcmpl-{i:016x}",
            sc.RESPONSE_FINISH_REASONS: ("stop",), sc.TIME_TO_FIRST_CHUNK: rng.uniform(0.1, 1.0),
            sc.TIME_TO_FIRST_TOKEN: rng.uniform(0.2, 2.0), sc.TIME_TO_FIRST_VISIBLE_TOKEN: rng.uniform(1, 30),
            sc.TIME_PER_OUTPUT_TOKEN: rng.uniform(0.005, 0.05), sc.COST_USD: output * 4.4e-6,
            sc.REASONING_COST_USD: reasoning * 4.4e-6, sc.COST_SOURCE: "price_table",
            sc.INPUT_TOKENS: rng.randint(100, 20000), sc.CACHE_READ_TOKENS: 1024, sc.OUTPUT_TOKENS: output,
            sc.REASONING_TOKENS: reasoning, sc.VISIBLE_OUTPUT_TOKENS: output - reasoning,
            sc.REASONING_SOURCE: "reported", sc.OUTPUT_SOURCE: "reported", sc.TENANT: f"tenant-{i % 50}",
            sc.FEATURE: ("search", "chat", "summarize")[i % 3],
        }
        span = tracer.start_span(f"chat {model}", kind=SpanKind.CLIENT, attributes=attrs)
        span.end()
        spans.append(span)
    return spans


def _per_span_us(seconds: float, spans: int) -> float:
    return seconds / spans * 1e6


def stages(spans: list[ReadableSpan], batch: int, data_dir: Path) -> None:
    settings = Settings(data_dir=data_dir)
    writer = SegmentWriter(settings.segments_dir, 1 << 40)
    batches = [spans[i : i + batch] for i in range(0, len(spans), batch)]
    n = len(spans)
    trace_block(spans_to_columns(batches[0]))  # warm-up
    t0 = time.process_time()
    columns = [spans_to_columns(b) for b in batches]
    to_columns = time.process_time() - t0
    t0 = time.process_time()
    blocks = [trace_block(c) for c in columns]
    to_blocks = time.process_time() - t0
    t0 = time.process_time()
    for block in blocks:
        writer.write(TRACES_TABLE, block)
    write = time.process_time() - t0
    total = to_columns + to_blocks + write
    print(f"stages, {n} spans in batches of {batch} (application's export thread, CPU per span):")
    print(f"  spans_to_columns           {_per_span_us(to_columns, n):7.2f} us")
    print(f"  columns -> Native block    {_per_span_us(to_blocks, n):7.2f} us  ({sum(map(len, blocks)) / n:.0f} bytes/span)")
    print(f"  segment write              {_per_span_us(write, n):7.2f} us")
    print(f"  export path total          {_per_span_us(total, n):7.2f} us  -> {n / total:,.0f} spans/s per core")
    with embedded_store(settings) as client:
        ensure_schema(client, settings)
        t0, w0 = time.process_time(), time.perf_counter()
        ingest_segments(client, settings.segments_dir)
        ingest_cpu, ingest_wall = time.process_time() - t0, time.perf_counter() - w0
        stored = client.query("SELECT count() FROM llm_calls").result_rows[0][0]
    print(f"  serve's ingest (chDB + MVs) {_per_span_us(ingest_cpu, n):6.2f} us cpu, {_per_span_us(ingest_wall, n):.2f} us wall"
          f" -> {n / ingest_wall:,.0f} spans/s  [{stored:,} rows in llm_calls]")


def sustained(spans: list[ReadableSpan], total: int, batch: int, data_dir: Path) -> None:
    settings = Settings(data_dir=data_dir, flush_interval_s=0.2, batch_size=batch)
    processor = ClickHouseSpanProcessor(settings)
    on_end = processor.on_end
    latencies = []
    perf = time.perf_counter_ns
    pool = len(spans)
    w0, c0 = time.perf_counter(), time.thread_time()
    for i in range(total):
        span = spans[i % pool]
        t = perf()
        on_end(span)
        latencies.append(perf() - t)
        if processor.pending_spans > settings.queue_size // 2:
            time.sleep(0.001)  # an app that produced spans faster than export would drop them
    offered = time.perf_counter() - w0
    caller_cpu = time.thread_time() - c0
    done = processor.force_flush(120_000)
    elapsed = time.perf_counter() - w0
    processor.shutdown()
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] / 1000

    print(f"\nsustained, {total} spans through ClickHouseSpanProcessor (batch_size={batch}, flush_interval_s=0.2):")
    print(f"  offered in {offered:.2f} s, all in segments after {elapsed:.2f} s (complete={done}, "
          f"dropped={processor.dropped_spans}) -> {total / elapsed:,.0f} spans/s end to end")
    print(f"  caller on_end: p50 {pct(0.5):.2f} us  p99 {pct(0.99):.2f} us  p99.9 {pct(0.999):.2f} us  "
          f"max {latencies[-1] / 1000:.0f} us   (caller CPU {caller_cpu / total * 1e6:.2f} us/span)")
    print(f"  mean on_end {statistics.fmean(latencies) / 1000:.2f} us")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20k spans instead of 200k")
    parser.add_argument("--spans", type=int, default=None)
    parser.add_argument("--batch", type=int, default=Settings().batch_size)
    args = parser.parse_args()
    total = args.spans or (20_000 if args.quick else 200_000)
    spans = realistic_spans(min(total, 20_000))
    root = Path(tempfile.mkdtemp(prefix="thinkmeter-bench-export-"))
    try:
        # One chDB data directory per process: both parts share it.
        stages(spans, args.batch, root)
        sustained(spans, total, args.batch, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
