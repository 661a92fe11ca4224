"""What budgets cost an application, and how it should read the tenant windows serve publishes.

    python benchmarks/budgets.py [--repeat N] [--tenants N]

1. Tenant windows, file vs HTTP: one refresh of the published figures (`thinkmeter serve` writes them
   every 2 s) read as a file in the data dir (stat + read + JSON parse, what `TenantWindows` does) and
   fetched from a loopback HTTP endpoint serving the same JSON (keep-alive connection, http.client).
2. Per call: `TenantWindows.figures()` between refreshes (a clock read and a dict lookup), and a whole
   `Budgets.admit` for a capped class, next to the same call without a policy (nothing to do).
3. Per streamed chunk: a `StreamMeter` fed one reasoning delta and asked whether to cut, next to no meter.
CPU of the calling thread (`time.thread_time`), median of the repeats.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hot_path import per_op_us  # noqa: E402

from thinkmeter.budgets.policy import load_policy
from thinkmeter.budgets.windows import FILE_NAME, TenantWindows, window_start
from thinkmeter.published import write_atomically
from thinkmeter.instrumentation._budget import Budgets, StreamMeter
from thinkmeter.instrumentation._tags import tags
from thinkmeter.instrumentation._telemetry import Call, Telemetry
from thinkmeter.pricing import PriceTable
from thinkmeter.schemas.record import CallRecord


def published(tenants: int) -> bytes:
    now = time.time()
    start = window_start(now, 86400)
    document = {
        "published_at": now, "window_s": 86400, "window_start": start, "window_end": start + 86400,
        "tenants": {f"tenant-{i}": {"cost_usd": 1.5 * i, "reasoning_tokens": 1000 * i, "calls": i} for i in range(tenants)},
    }  # fmt: skip
    return json.dumps(document, separators=(",", ":")).encode()


def serve(body: bytes) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--tenants", type=int, default=100, help="tenants in the published document (default 100)")
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp())
    body = published(args.tenants)
    write_atomically(data_dir / FILE_NAME, body)
    print(f"tenant windows: {args.tenants} tenants, {len(body):,} bytes published")

    windows = TenantWindows(data_dir, 86400, stale_after_s=1e9)  # the run outlasts the freshness check

    def file_refresh() -> None:
        windows._mtime_ns = None  # force the read a changed file costs
        windows._look()

    server = serve(body)
    connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1])

    def http_refresh() -> None:
        connection.request("GET", "/budgets/tenants")
        json.loads(connection.getresponse().read())

    file_us = per_op_us(file_refresh, 2000, args.repeat)
    wall = time.perf_counter()
    http_us = per_op_us(http_refresh, 500, args.repeat)
    http_wall_us = (time.perf_counter() - wall) / (500 * args.repeat) * 1e6
    unchanged_us = per_op_us(windows._look, 20000, args.repeat)
    print(f"  one refresh, file (stat + read + parse):        {file_us:8.1f} us CPU")
    print(f"  one refresh, file unchanged (stat only):        {unchanged_us:8.1f} us CPU")
    print(f"  one refresh, HTTP GET on loopback (keep-alive): {http_us:8.1f} us CPU of the app, {http_wall_us:.0f} us wall"
          f" (x{http_us / file_us:.1f} the file's CPU; the server's own CPU not counted)")  # fmt: skip
    lookup_us = per_op_us(lambda: windows.figures("tenant-7"), 200000, args.repeat)
    print(f"  per call between refreshes, figures(tenant):    {lookup_us:8.2f} us CPU")

    policy_path = data_dir / "budgets.yaml"
    policy_path.write_text("task_classes:\n  lookup: {max_reasoning_tokens: 1024, max_cost_usd: 0.02}\ntenants:\n  tenant-7: {daily_usd: 1000}\n")
    prices = PriceTable.load()
    budgets = Budgets(load_policy(policy_path), windows, prices)
    telemetry = Telemetry(None, None, prices)

    class Surface:
        def inject(self, record: CallRecord, kwargs: dict[str, Any], caps: Any) -> list[str]:
            return []

    surface = Surface()

    def admit() -> None:
        call = Call(telemetry, CallRecord(provider="openai", request_model="o4-mini", stream=True))
        budgets.admit(surface, call, {})

    def plain() -> None:
        Call(telemetry, CallRecord(provider="openai", request_model="o4-mini", stream=True))

    with tags(tenant="tenant-7", task_class="lookup"):
        admit_us = per_op_us(admit, 20000, args.repeat)
        plain_us = per_op_us(plain, 20000, args.repeat)
    print(f"\nper call: Call start {plain_us:.2f} us; with a policy (tenant window + class caps + meter) {admit_us:.2f} us"
          f" (+{admit_us - plain_us:.2f} us)")  # fmt: skip

    call = Call(telemetry, CallRecord(provider="openai", request_model="o4-mini", stream=True))
    meter = StreamMeter(budgets, call, "task_classes.lookup", budgets.policy.task_classes["lookup"], "lookup", "tenant-7")
    meter.caps = meter.caps.model_copy(update={"max_reasoning_tokens": 10**12, "max_cost_usd": 10.0**9})

    def chunk() -> None:
        meter.reasoning(6)
        meter.should_cut()

    chunk_us = per_op_us(chunk, 200000, args.repeat)
    print(f"per streamed chunk under a cap: meter fed and asked {chunk_us:.2f} us (no policy: no meter, one attribute check)")
    connection.close()
    server.shutdown()


if __name__ == "__main__":
    main()
