"""Memory growth over many instrumented calls, after warm-up (tracemalloc and RSS).

    python benchmarks/memory.py [--quick] [--calls N]

Runs non-streamed and streamed OpenAI chat and Responses calls in rotation against an in-process
transport, with thinkmeter.instrument(exporter="clickhouse") exporting as segments into a temporary data
dir (the application's side of the embedded store; nothing ingests them here), then flushes and compares Python heap (tracemalloc) and process RSS with the post-warm-up figures.
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import overhead  # noqa: E402

import thinkmeter  # noqa: E402

ROTATION = ("chat", "chat_short", "responses", "responses_short")


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10k calls instead of 100k")
    parser.add_argument("--calls", type=int, default=None)
    args = parser.parse_args()
    total = args.calls or (10_000 if args.quick else 100_000)

    thinkmeter.instrument(exporter="clickhouse", data_dir=tempfile.mkdtemp(prefix="thinkmeter-bench-mem-"))
    calls = overhead._scenarios(set())
    run = [calls[name] for name in ROTATION]

    def batch(n: int) -> None:
        for i in range(n):
            run[i % len(run)]()

    batch(2_000)  # warm-up: SDK model classes, price memo, first export batches and the store's caches
    thinkmeter.flush(60)
    gc.collect()
    tracemalloc.start(1)  # one frame per trace: deeper tracebacks slow every allocation down a lot
    heap0, rss0 = tracemalloc.get_traced_memory()[0], rss_mb()
    snapshot0 = tracemalloc.take_snapshot()
    t0 = time.perf_counter()
    step = max(1, total // 5)
    print(f"{'calls':>9}{'heap MB':>10}{'rss MB':>10}")
    done = 0
    while done < total:
        batch(min(step, total - done))
        done += min(step, total - done)
        print(f"{done:>9}{(tracemalloc.get_traced_memory()[0] - heap0) / 2**20:>10.3f}{rss_mb() - rss0:>10.2f}", flush=True)
    thinkmeter.flush(120)
    gc.collect()
    heap1, rss1 = tracemalloc.get_traced_memory()[0], rss_mb()
    print(f"\n{total} calls in {time.perf_counter() - t0:.1f} s, after flush + gc:")
    print(f"  Python heap growth {(heap1 - heap0) / 2**20:.3f} MB (target < 1 MB)")
    print(f"  RSS growth         {rss1 - rss0:.2f} MB (includes chDB's caches and allocator slack)")
    print("  top heap growth by line:")
    for stat in tracemalloc.take_snapshot().compare_to(snapshot0, "lineno")[:8]:
        print(f"    {stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d} blocks  {stat.traceback[0]}")
    thinkmeter.uninstrument()


if __name__ == "__main__":
    main()
