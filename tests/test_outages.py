"""Outages, restarts and crashes, with real processes and a store that is really unavailable.

The embedded store is made unavailable by another process holding it (thinkmeter's store lock and the
chDB directory); writers restart during the outage and one is SIGKILLed in the middle of ingesting the
spool. A ClickHouse server outage is a closed loopback port, then a loopback server answering 500 (no
ClickHouse server binary runs here: Debian's clickhouse-server 18.16 predates the schema's types).
Every case counts spans sent, stored, lost and stored twice.
"""

from __future__ import annotations

import http.server
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from thinkmeter.config import Settings
from thinkmeter.export import ClickHouseSpanProcessor
from thinkmeter.spool import BATCH_SUFFIX, pending_batches, read_batch

PRELUDE = """
import json, sys, time
from pathlib import Path
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from thinkmeter.config import Settings
settings = Settings(data_dir=Path(sys.argv[1]), flush_interval_s=0.05, batch_size=10)
"""
# Emits spans numbered [start, start + count), flushes briefly, reports; "linger" keeps it running
# (retrying the spool) until it is killed.
PRODUCER = (
    PRELUDE
    + """
from thinkmeter.export import ClickHouseSpanProcessor
service, start, count, mode = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
processor = ClickHouseSpanProcessor(settings)
provider = TracerProvider(resource=Resource.create({"service.name": service}))
provider.add_span_processor(processor)
tracer = provider.get_tracer("thinkmeter")
for i in range(start, start + count):
    with tracer.start_as_current_span("chat m") as span:
        span.set_attributes({"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "test.seq": i})
flushed = processor.force_flush(300)
print(json.dumps({"flushed": flushed, "dropped": processor.dropped_spans}), flush=True)
if mode == "linger":
    time.sleep(600)
provider.shutdown()
"""
)
# Holds the embedded store (lock and chDB directory) until killed.
HOLDER = (
    PRELUDE
    + """
from thinkmeter.store import embedded_store
with embedded_store(settings, 30) as client:
    client.query("SELECT 1")
    print("holding", flush=True)
    time.sleep(600)
"""
)
# Opens the store (which ingests the spool) and counts one service's rows.
READER = (
    PRELUDE
    + """
from thinkmeter.store import store_session
from thinkmeter.spool import pending_batches
service = sys.argv[2]
with store_session(settings) as client:
    p = {"s": service}
    rows, distinct = client.query(
        "SELECT count(), uniqExact(SpanAttributes['test.seq']) FROM otel_traces WHERE ServiceName = {s:String}", parameters=p
    ).result_rows[0]
    calls = client.query("SELECT count() FROM llm_calls WHERE ServiceName = {s:String}", parameters=p).result_rows[0][0]
print(json.dumps({"rows": rows, "distinct": distinct, "llm_calls": calls, "spooled": len(pending_batches(settings.spool_dir))}))
"""
)


def start(script: str, *args: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def first_line(process: subprocess.Popen[str], timeout_s: float = 120) -> str:
    result: list[str] = []
    reader = threading.Thread(
        target=lambda: result.append(process.stdout.readline()), daemon=True
    )  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout_s)
    assert result and result[0], (
        f"no output from child: {process.stderr.read() if process.poll() is not None else '(still running)'}"
    )  # type: ignore[union-attr]
    return result[0].strip()


def read_store(data_dir: Path, service: str) -> dict[str, int]:
    reader = start(READER, data_dir, service)
    out, err = reader.communicate(timeout=120)
    assert reader.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def kill(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(30)


def report(request: pytest.FixtureRequest, text: str) -> None:
    """Print the counts even under -q and output capture."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"\ntest_outages: {text}")


def test_store_outage_restart_and_sigkill_mid_ingest(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    data_dir, service, per_writer = tmp_path / "data", "outage", 300
    holder = start(HOLDER, data_dir)
    try:
        assert first_line(holder) == "holding"
        # Writer 1 runs and exits during the outage (a restart): its spans wait in the spool.
        writer1 = start(PRODUCER, data_dir, service, 0, per_writer, "exit")
        assert json.loads(first_line(writer1))["flushed"] is False
        assert writer1.wait(60) == 0
        # Writer 2 starts during the outage and stays up, retrying the spool.
        writer2 = start(PRODUCER, data_dir, service, per_writer, per_writer, "linger")
        assert json.loads(first_line(writer2))["dropped"] == 0
    finally:
        kill(holder)  # the outage ends (and the holder crashes while holding the store)
    spool = data_dir / "spool"
    spooled = len(pending_batches(spool))
    assert spooled == 2 * per_writer // 10
    # A copy of one batch stands for a crash between its insert and its deletion from the spool.
    replay = tmp_path / "replay"
    shutil.copy(pending_batches(spool)[0], replay)
    # Writer 2 now ingests the spool: SIGKILL it once part (not all) of the spool is in the store.
    deadline = time.monotonic() + 60
    while (
        len(pending_batches(spool)) > spooled * 2 // 3 and time.monotonic() < deadline
    ):
        time.sleep(0.002)
    left_at_kill = len(pending_batches(spool))
    kill(writer2)
    assert 0 < left_at_kill < spooled, (
        "the kill should land in the middle of the ingest"
    )
    shutil.copy(replay, spool / f"{read_batch(replay)[0]}{BATCH_SUFFIX}")
    counts = read_store(data_dir, service)
    sent = 2 * per_writer
    report(
        request,
        f"embedded outage: sent {sent}, stored {counts['distinct']}, lost {sent - counts['distinct']}, "
        f"stored twice {counts['rows'] - counts['distinct']} (writer SIGKILLed with {left_at_kill}/{spooled} batches "
        "left, one batch replayed)",
    )
    assert counts == {"rows": sent, "distinct": sent, "llm_calls": sent, "spooled": 0}


class RefusingServer(http.server.ThreadingHTTPServer):
    daemon_threads = True


class Error500(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(500)
        self.send_header("Content-Length", "34")
        self.end_headers()
        self.wfile.write(b"Code: 241. DB::Exception: no mem.\n")

    do_GET = do_POST


@pytest.fixture
def server_500() -> Iterator[int]:
    server = RefusingServer(("127.0.0.1", 0), Error500)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_port
    server.shutdown()
    server.server_close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def emit(
    settings: Settings, service: str, first: int, count: int
) -> ClickHouseSpanProcessor:
    processor = ClickHouseSpanProcessor(settings)
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("thinkmeter")
    for i in range(first, first + count):
        with tracer.start_as_current_span("chat m") as span:
            span.set_attributes({"gen_ai.operation.name": "chat", "test.seq": i})
    processor.force_flush(500)
    provider.shutdown()
    return processor


def spooled_seqs(spool: Path) -> list[str]:
    return [
        attrs["test.seq"]
        for path in pending_batches(spool)
        for attrs in read_batch(path)[1]["SpanAttributes"]
    ]


def test_server_refusing_then_failing_keeps_every_span_once(
    tmp_path: Path, server_500: int, request: pytest.FixtureRequest
) -> None:
    data_dir = tmp_path / "data"
    refused = Settings(
        clickhouse_url=f"http://w:pw@127.0.0.1:{closed_port()}/db",
        data_dir=data_dir,
        flush_interval_s=0.05,
        batch_size=25,
    )
    failing = refused.model_copy(
        update={"clickhouse_url": f"http://w:pw@127.0.0.1:{server_500}/db"}
    )
    assert emit(refused, "server-outage", 0, 200).dropped_spans == 0
    assert (
        emit(failing, "server-outage", 200, 200).dropped_spans == 0
    )  # a restart, pointing at the 500 server
    seqs = spooled_seqs(data_dir / "spool")
    # The server comes back: here the embedded store stands in for it and takes the spool.
    counts = read_store(data_dir, "server-outage")
    report(
        request,
        f"server outage: sent 400, spooled {len(seqs)} ({len(set(seqs))} distinct), stored {counts['distinct']}, "
        f"stored twice {counts['rows'] - counts['distinct']}",
    )
    assert sorted(map(int, seqs)) == list(range(400))
    assert counts == {"rows": 400, "distinct": 400, "llm_calls": 400, "spooled": 0}


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs as the spool (needs root); skipped where mounting is not allowed."""
    spool = tmp_path / "data" / "spool"
    spool.mkdir(parents=True)
    mounted = (
        os.geteuid() == 0
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(spool)],
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )
    if not mounted:
        pytest.skip(
            "cannot mount a small tmpfs here (needs root); disk-full is not simulated"
        )
    yield tmp_path / "data"
    subprocess.run(["umount", str(spool)], check=True)


def test_full_spool_disk_drops_with_a_counter_and_one_log_line(
    full_disk: Path, caplog: pytest.LogCaptureFixture, request: pytest.FixtureRequest
) -> None:
    settings = Settings(
        clickhouse_url=f"http://w:pw@127.0.0.1:{closed_port()}/db",
        data_dir=full_disk,
        flush_interval_s=0.05,
        batch_size=100,
    )
    sent = 3000
    with caplog.at_level(logging.WARNING, logger="thinkmeter"):
        processor = emit(
            settings, "full-disk", 0, sent
        )  # never raises into the caller, never blocks it
    kept = len(spooled_seqs(full_disk / "spool"))
    report(
        request,
        f"full spool disk: sent {sent}, spooled {kept}, dropped and counted {processor.dropped_spans}",
    )
    assert processor.dropped_spans > 0 and kept + processor.dropped_spans == sent
    lines = [
        r.getMessage()
        for r in caplog.records
        if "cannot write a span batch to the spool" in r.getMessage()
    ]
    assert len(lines) == 1 and "No space left on device" in lines[0]
