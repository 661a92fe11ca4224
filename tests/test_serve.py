"""`thinkmeter serve` as a real process: applications write segments, serve ingests them, and readers
(clickhouse-connect over HTTP, `thinkmeter report`, `query_rows`) go through its read-only ClickHouse
HTTP interface. Writers, serve crashes (SIGKILL) and restarts are real processes; every case counts
spans sent, stored, lost and stored twice."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import clickhouse_connect
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from tests.conftest import finish_span_emitter, start_span_emitter
from tests.engine_servers import EngineServer, vllm_metrics
from tests.terminal import report
from thinkmeter.config import Settings
from thinkmeter.segments import SEGMENT_SUFFIX, kept_segments, pending_segments
from thinkmeter.serve.discovery import FILE_NAME, PASSWORD_ENV, ServeAddress, find_serve
from thinkmeter.store import query_rows

START_TIMEOUT_S = 120


class ServeProcess:
    def __init__(self, data_dir: Path, *args: str, env: dict[str, str] | None = None):
        self.data_dir = data_dir
        self.process = subprocess.Popen(
            [sys.executable, "-m", "thinkmeter", "serve", "--port", "0", "--ingest-interval", "0.2", *args],
            env={**os.environ, "THINKMETER_DATA_DIR": str(data_dir), **(env or {})},
            stderr=subprocess.PIPE,
            text=True,
        )
        self.address = self._wait_for_address()

    def _wait_for_address(self) -> ServeAddress:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            found = find_serve(self.data_dir)
            if found is not None and found.pid == self.process.pid:
                return found
            if self.process.poll() is not None:
                raise AssertionError(f"serve exited {self.process.returncode}: {self.process.stderr.read()}")
            time.sleep(0.05)
        raise AssertionError("serve did not advertise itself")

    def client(self, password: str = "") -> clickhouse_connect.driver.client.Client:
        return clickhouse_connect.get_client(host="127.0.0.1", port=self.address.port, username="grafana", password=password)

    def terminate(self) -> tuple[int, str]:
        self.process.send_signal(signal.SIGTERM)
        _, err = self.process.communicate(timeout=120)
        return self.process.returncode, err

    def kill(self) -> None:
        self.process.kill()
        self.process.communicate(timeout=30)


def http(address: ServeAddress, path: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(address.url + path, data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def wait_for_count(client: clickhouse_connect.driver.client.Client, sql: str, expected: int, timeout_s: float = 120) -> int:
    deadline = time.monotonic() + timeout_s
    count = -1
    while time.monotonic() < deadline:
        count = client.query(sql).first_row[0]
        if count >= expected:
            return count
        time.sleep(0.2)
    return count


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    process = ServeProcess(tmp_path_factory.mktemp("serve-data"))
    yield process
    returncode, err = process.terminate()
    assert returncode == 0, err
    assert not (process.data_dir / FILE_NAME).exists()


# -------------------------------------------------------------------------- ClickHouse's HTTP interface


def test_clickhouse_connect_reads_what_an_application_wrote(serve: ServeProcess, service_name: str) -> None:
    result = finish_span_emitter(start_span_emitter(serve.data_dir, service_name, 120, 30_000))
    assert result == {"flushed": True, "dropped": 0}
    client = serve.client()
    count_sql = f"SELECT count() FROM llm_calls WHERE ServiceName = '{service_name}'"
    assert wait_for_count(client, count_sql, 120) == 120
    rows = client.query(
        "SELECT count() AS calls, sum(output_tokens) AS tokens FROM llm_calls WHERE ServiceName = {s:String}",
        parameters={"s": service_name},
    ).named_results()
    assert list(rows) == [{"calls": 120, "tokens": sum(range(120))}]
    assert client.query("SELECT 1 AS x FROM otel_traces LIMIT 0").column_names == ("x",)


def test_ping_formats_parameters_and_errors_as_clickhouse_gives_them(serve: ServeProcess) -> None:
    address = serve.address
    assert http(address, "/ping")[::2] == (200, b"Ok.\n")
    assert http(address, "/")[::2] == (200, b"Ok.\n")
    status, headers, body = http(address, "/?query=SELECT%201%20AS%20x%20FORMAT%20JSONEachRow")
    assert (status, body, headers["X-ClickHouse-Format"]) == (200, b'{"x":1}\n', "JSONEachRow")
    status, _, body = http(address, "/?default_format=CSV", body=b"SELECT 'a' AS s, 2 AS n")
    assert (status, body) == (200, b'"a",2\n')
    status, _, body = http(address, "/?param_n=41&query=SELECT%20%7Bn%3AUInt8%7D%20%2B%201")
    assert (status, body) == (200, b"42\n")
    status, _, body = http(address, "/?database=system", body=b"SELECT count() > 0 FROM tables")
    assert (status, body) == (200, b"1\n")
    status, headers, body = http(address, "/", body=b"SELECT * FROM no_such_table")
    assert status == 404 and headers["X-ClickHouse-Exception-Code"] == "60"
    assert body.startswith(b"Code: 60. DB::Exception: ") and b"(UNKNOWN_TABLE)" in body and b"(version " in body
    status, headers, _ = http(address, "/", body=b"SELEC 1")
    assert status == 400 and headers["X-ClickHouse-Exception-Code"] == "62"


@pytest.mark.parametrize(
    "statement",
    [
        "DROP TABLE llm_calls",
        "INSERT INTO otel_traces (SpanName) VALUES ('x')",
        "ALTER TABLE otel_traces DELETE WHERE 1",
        "TRUNCATE TABLE llm_calls",
        "CREATE TABLE sneaky (a Int8) ENGINE = Memory",
        "SELECT * FROM file('/etc/hostname', 'LineAsString')",
        "SELECT 1 SETTINGS readonly = 0",
    ],
)
def test_writes_over_http_are_refused(serve: ServeProcess, statement: str) -> None:
    status, headers, body = http(serve.address, "/?readonly=0", body=statement.encode())
    assert status == 500 and headers["X-ClickHouse-Exception-Code"] == "164", body
    assert b"(READONLY)" in body
    with pytest.raises(DatabaseError, match="READONLY"):
        serve.client().command(statement)
    assert serve.client().query("EXISTS TABLE llm_calls").first_row[0] == 1


def test_readers_go_through_serve_while_it_owns_the_store(serve: ServeProcess, service_name: str) -> None:
    # serve holds the store lock: a reader that opened the store itself would wait and fail.
    finish_span_emitter(start_span_emitter(serve.data_dir, service_name, 30, 30_000))
    wait_for_count(serve.client(), f"SELECT count() FROM llm_calls WHERE ServiceName = '{service_name}'", 30)
    settings = Settings(data_dir=serve.data_dir)
    assert query_rows(settings, "SELECT count() AS n FROM llm_calls WHERE ServiceName = {s:String}", {"s": service_name}) == [{"n": 30}]
    env = {**os.environ, "THINKMETER_DATA_DIR": str(serve.data_dir)}
    report = subprocess.run(
        [sys.executable, "-m", "thinkmeter", "report", "--format", "json", "--window", "1h"], env=env, capture_output=True, text=True, timeout=120
    )
    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout)["totals"]["calls"] >= 30
    check = subprocess.run([sys.executable, "-m", "thinkmeter", "alerts", "check"], env=env, capture_output=True, text=True, timeout=120)
    assert check.returncode in (0, 3), check.stderr


def test_application_exit_without_flush_stores_everything_silently(serve: ServeProcess, service_name: str) -> None:
    app = textwrap.dedent(
        """
        import opentelemetry.trace, thinkmeter
        thinkmeter.instrument()
        tracer = opentelemetry.trace.get_tracer("thinkmeter")
        for n in range(75):
            with tracer.start_as_current_span("chat m", attributes={"gen_ai.operation.name": "chat"}):
                pass
        """
    )
    env = {**os.environ, "THINKMETER_DATA_DIR": str(serve.data_dir), "OTEL_SERVICE_NAME": service_name}
    done = subprocess.run([sys.executable, "-c", app], env=env, capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stderr) == (0, "")
    count = wait_for_count(serve.client(), f"SELECT count() FROM llm_calls WHERE ServiceName = '{service_name}'", 75)
    assert count == 75


def test_demo_writes_like_an_application_and_reads_through_serve(serve: ServeProcess) -> None:
    env = {**os.environ, "THINKMETER_DATA_DIR": str(serve.data_dir)}
    demo = subprocess.run(
        [sys.executable, "-m", "thinkmeter", "demo", "--calls", "80", "--time-scale", "0.002"],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "(tokens, cost): all match" in demo.stdout and "80 spans stored" in demo.stdout


def test_serve_runs_the_collectors_and_the_alert_evaluator(tmp_path: Path) -> None:
    engine = EngineServer().start()
    engine.serve("/metrics", vllm_metrics(kv_usage=0.97, waiting=1, preemptions=0))
    serve = ServeProcess(tmp_path, "--engine", engine.url, "--collect-interval", "0.3", "--alerts", "--alerts-interval", "0.5")
    try:
        client = serve.client()
        assert wait_for_count(client, "SELECT count() FROM otel_metrics_gauge WHERE ServiceName = 'thinkmeter-collector'", 1) > 0
        engine.serve("/metrics", vllm_metrics(kv_usage=0.99, waiting=8, preemptions=3))  # the queue grows
        fired = wait_for_count(
            client, "SELECT count() FROM thinkmeter_alert_events WHERE rule_uid = 'thinkmeter-kv-cache-saturation'", 1
        )
    finally:
        returncode, err = serve.terminate()
        engine.stop()
    assert fired >= 1, err
    assert returncode == 0, err
    assert "FIRING   thinkmeter-kv-cache-saturation" in err


# ------------------------------------------------------------------------------------------ passwords


def test_a_password_is_required_when_set_and_beyond_loopback(tmp_path: Path) -> None:
    refused = subprocess.run(
        [sys.executable, "-m", "thinkmeter", "serve", "--host", "0.0.0.0", "--port", "0"],
        env={**os.environ, "THINKMETER_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 1 and PASSWORD_ENV in refused.stderr

    serve = ServeProcess(tmp_path, "--host", "0.0.0.0", env={PASSWORD_ENV: "s3cret"})
    try:
        assert http(serve.address, "/ping")[0] == 200  # like clickhouse-server: /ping needs no password
        status, headers, _ = http(serve.address, "/", body=b"SELECT 1")
        assert status == 401 and headers["X-ClickHouse-Exception-Code"] == "194"
        status, headers, _ = http(serve.address, "/", body=b"SELECT 1", headers={"X-ClickHouse-User": "grafana", "X-ClickHouse-Key": "nope"})
        assert status == 403 and headers["X-ClickHouse-Exception-Code"] == "516"
        basic = base64.b64encode(b"grafana:s3cret").decode()
        assert http(serve.address, "/", body=b"SELECT 1", headers={"Authorization": f"Basic {basic}"})[::2] == (200, b"1\n")
        assert serve.client(password="s3cret").query("SELECT 2").first_row[0] == 2
        with pytest.raises(DatabaseError, match="516"):
            serve.client(password="wrong")
    finally:
        returncode, err = serve.terminate()
    assert returncode == 0, err


# ------------------------------------------------------------------- many writers, crashes and restarts


def test_many_writers_serve_killed_and_restarted_store_every_span_once(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    data_dir, writers, per_writer = tmp_path / "data", 4, 600
    services = [f"writer-{index}" for index in range(writers)]
    # Writers start before serve (their segments wait), serve starts while they write, and is SIGKILLed.
    emitters = [start_span_emitter(data_dir, service, per_writer, 60_000) for service in services[:2]]
    # A long ingest interval: segments written after serve's first ingest are still pending when it dies.
    serve = ServeProcess(data_dir, "--ingest-interval", "30")
    emitters += [start_span_emitter(data_dir, service, per_writer, 60_000) for service in services[2:]]
    time.sleep(0.5)
    serve.kill()
    assert (data_dir / FILE_NAME).exists() and find_serve(data_dir) is None  # a stale file is ignored
    results = [finish_span_emitter(emitter) for emitter in emitters]
    assert results == [{"flushed": True, "dropped": 0}] * writers

    # The restarted serve ingests the pending segments as one batch (claims the killed one left first).
    segments = data_dir / "segments"
    pending = pending_segments(segments)
    contents = {path.name: path.read_bytes() for path in pending}
    first_id = pending[0].name[len("otel_traces.") : -len(SEGMENT_SUFFIX)]

    serve = ServeProcess(data_dir)
    try:
        client = serve.client()
        sent = writers * per_writer
        wait_for_count(client, "SELECT count() FROM llm_calls WHERE ServiceName LIKE 'writer-%'", sent)
        # A crash after that batch's insert and before its deletion: the same claim is back.
        replay = segments / ".claimed" / f"otel_traces.{first_id}+{len(pending)}"
        replay.mkdir(parents=True)
        for name, data in contents.items():
            (replay / name).write_bytes(data)
        deadline = time.monotonic() + 60
        while replay.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not replay.exists(), "serve did not ingest the replayed claim"
        rows, distinct, calls = client.query(
            "SELECT count(), uniqExact(SpanId), (SELECT count() FROM llm_calls WHERE ServiceName LIKE 'writer-%')"
            " FROM otel_traces WHERE ServiceName LIKE 'writer-%'"
        ).first_row
        per_service = dict(client.query("SELECT ServiceName, count() FROM llm_calls GROUP BY ServiceName").result_rows)
    finally:
        returncode, err = serve.terminate()
    report(
        request,
        f"{writers} writers sent {sent}, serve SIGKILLed and restarted, a batch of {len(pending)} "
        f"segments replayed: stored {distinct}, lost {sent - distinct}, stored twice {rows - distinct}",
    )
    assert returncode == 0, err
    assert (rows, distinct, calls) == (sent, sent, sent)
    assert per_service == dict.fromkeys(services, per_writer)
    assert kept_segments(segments) == []
    assert not (data_dir / FILE_NAME).exists()
