"""Outages of a ClickHouse server, with real processes: a closed loopback port, then a loopback server
answering 500 (no ClickHouse server binary runs here: Debian's clickhouse-server 18.16 predates the
schema's types), and a full disk under the segments. Every case counts spans sent, stored, lost and
stored twice. (Outages and crashes of `thinkmeter serve` itself: tests/test_serve.py.)
"""

from __future__ import annotations

import http.server
import json
import logging
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from tests.terminal import report
from thinkmeter.config import Settings
from thinkmeter.export import ClickHouseSpanProcessor
from thinkmeter.segments import kept_segments

PRELUDE = """
import json, sys, time
from pathlib import Path
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from thinkmeter.config import Settings
settings = Settings(data_dir=Path(sys.argv[1]), flush_interval_s=0.05, batch_size=10)
"""
# Opens the store (which ingests the pending segments) and counts one service's rows.
READER = (
    PRELUDE
    + """
from thinkmeter.store import store_session
from thinkmeter.segments import pending_segments
service = sys.argv[2]
with store_session(settings) as client:
    p = {"s": service}
    rows, distinct = client.query(
        "SELECT count(), uniqExact(SpanAttributes['test.seq']) FROM otel_traces WHERE ServiceName = {s:String}", parameters=p
    ).result_rows[0]
    calls = client.query("SELECT count() FROM llm_calls WHERE ServiceName = {s:String}", parameters=p).result_rows[0][0]
print(json.dumps({"rows": rows, "distinct": distinct, "llm_calls": calls, "pending": len(pending_segments(settings.segments_dir))}))
"""
)


def start(script: str, *args: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_store(data_dir: Path, service: str) -> dict[str, int]:
    reader = start(READER, data_dir, service)
    out, err = reader.communicate(timeout=120)
    assert reader.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


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


def kept_seqs(segments: Path, store: Client) -> list[str]:
    """test.seq of every span kept in the segments, read by ClickHouse itself (file(..., Native))."""
    return [
        row[0]
        for path in kept_segments(segments)
        for row in store.query(f"SELECT SpanAttributes['test.seq'] FROM file('{path}', Native)").result_rows
    ]


def test_server_refusing_then_failing_keeps_every_span_once(
    tmp_path: Path, server_500: int, store: Client, request: pytest.FixtureRequest
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
    seqs = kept_seqs(data_dir / "segments", store)
    # The server comes back: here the embedded store stands in for it and takes the segments.
    counts = read_store(data_dir, "server-outage")
    report(
        request,
        f"server outage: sent 400, kept {len(seqs)} ({len(set(seqs))} distinct), stored {counts['distinct']}, "
        f"stored twice {counts['rows'] - counts['distinct']}",
    )
    assert sorted(map(int, seqs)) == list(range(400))
    assert counts == {"rows": 400, "distinct": 400, "llm_calls": 400, "pending": 0}


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs as the segments directory (needs root); skipped where mounting is not allowed."""
    segments = tmp_path / "data" / "segments"
    segments.mkdir(parents=True)
    mounted = (
        os.geteuid() == 0
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(segments)],
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
    subprocess.run(["umount", str(segments)], check=True)


def test_full_segments_disk_drops_with_a_counter_and_one_log_line(
    full_disk: Path, store: Client, caplog: pytest.LogCaptureFixture, request: pytest.FixtureRequest
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
    kept = len(kept_seqs(full_disk / "segments", store))
    report(
        request,
        f"full segments disk: sent {sent}, kept {kept}, dropped and counted {processor.dropped_spans}",
    )
    assert processor.dropped_spans > 0 and kept + processor.dropped_spans == sent
    lines = [
        r.getMessage()
        for r in caplog.records
        if "cannot write a segment" in r.getMessage()
    ]
    assert len(lines) == 1 and "No space left on device" in lines[0]
