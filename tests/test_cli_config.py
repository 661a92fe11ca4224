"""Bad configuration: the CLI exits 1 with one clear line; instrument() logs once and the app runs on.
Secrets (a password in THINKMETER_CLICKHOUSE_URL) never show in messages, logs or labels."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import thinkmeter
from thinkmeter.config import Settings
from thinkmeter.export import ClickHouseSpanProcessor
from thinkmeter.segments import kept_segments
from thinkmeter.store import store_label

SECRET = "s3cr3t-Pa55"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def thinkmeter_cli(
    tmp_path: Path, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith("THINKMETER_")
    }
    environment.update(THINKMETER_DATA_DIR=str(tmp_path / "data"), **env)
    return subprocess.run(
        [sys.executable, "-m", "thinkmeter", *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("env", "args", "expected"),
    [
        ({"THINKMETER_EXPORTER": "bogus"}, ["report"], "exporter"),
        (
            {"THINKMETER_CLICKHOUSE_URL": f"ftp://bob:{SECRET}@db:21/x"},
            ["report"],
            "is not a ClickHouse HTTP URL",
        ),
        (
            {"THINKMETER_CLICKHOUSE_URL": f"http://bob:{SECRET}@db:port/x"},
            ["report"],
            "is not a valid URL",
        ),
        (
            {
                "THINKMETER_CLICKHOUSE_URL": f"http://bob:{SECRET}@127.0.0.1:{closed_port()}/x"
            },
            ["report"],
            "ClickHouse",
        ),
        ({"THINKMETER_CONTENT_MAX_CHARS": "-5"}, ["report"], "content_max_chars"),
        ({}, ["report", "--window", "forever"], "window"),
    ],
)
def test_cli_exits_with_a_clear_message(
    tmp_path: Path, env: dict[str, str], args: list[str], expected: str
) -> None:
    result = thinkmeter_cli(tmp_path, *args, **env)
    assert result.returncode in (1, 2), result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert SECRET not in result.stderr + result.stdout


def test_collect_config_with_unknown_keys(tmp_path: Path) -> None:
    config = tmp_path / "collect.json"
    config.write_text(json.dumps({"gpu": True, "intervall_s": 5}))
    result = thinkmeter_cli(tmp_path, "collect", "--config", str(config))
    assert result.returncode == 1
    assert "intervall_s" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "cannot read price file"),
        ("{not json", "cannot read price file"),
        ('{"models": {"m": 5}}', "is not like"),
        ('{"models": {"m": {"input": "cheap", "output": 1}}}', "non-negative numbers"),
        ('{"models": {"m": {"input": 1}}}', "lacks 'output'"),
    ],
)
def test_bad_price_file_leaves_the_app_running(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: str | None, expected: str
) -> None:
    price_file = tmp_path / "prices.json"
    if content is not None:
        price_file.write_text(content)
    thinkmeter.uninstrument()
    with caplog.at_level(logging.ERROR, logger="thinkmeter"):
        assert thinkmeter.instrument(exporter="none", price_file=price_file) == []
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and expected in errors[0].getMessage()
    thinkmeter.uninstrument()


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"exporter": "none", "queue_size": 0}, "queue_size"),
        ({"clickhouse_url": f"ftp://bob:{SECRET}@db/x"}, "not a ClickHouse HTTP URL"),
        ({"exporter": "none", "content_max_chars": 0}, "content_max_chars"),
    ],
)
def test_instrument_logs_bad_settings_once(
    caplog: pytest.LogCaptureFixture, options: dict[str, object], expected: str
) -> None:
    thinkmeter.uninstrument()
    with caplog.at_level(logging.ERROR, logger="thinkmeter"):
        assert thinkmeter.instrument(**options) == []
    assert [expected in r.getMessage() for r in caplog.records] == [True]
    assert SECRET not in caplog.text


@pytest.mark.parametrize("typo", ["tracer_provder", "capture_contnet", "engine"])
def test_an_unknown_instrument_keyword_is_a_type_error(typo: str) -> None:
    # A typo would otherwise leave the application silently untraced.
    thinkmeter.uninstrument()
    with pytest.raises(TypeError, match=typo):
        thinkmeter.instrument(exporter="none", **{typo: True})


@pytest.mark.parametrize(
    ("variable", "value"),
    [("THINKMETER_COLLECT_INTERVAL", "soon"), ("THINKMETER_COLLECT_INTERVAL", "-5")],
)
def test_a_bad_collect_variable_is_logged_and_leaves_the_app_untraced(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    thinkmeter.uninstrument()
    with caplog.at_level(logging.ERROR, logger="thinkmeter"):
        assert thinkmeter.instrument(exporter="none") == []
    assert len([r for r in caplog.records if r.levelno >= logging.ERROR]) == 1
    thinkmeter.uninstrument()


def test_password_stays_out_of_labels_reprs_and_export_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"http://writer:{SECRET}@127.0.0.1:{closed_port()}/thinkmeter"
    settings = Settings(clickhouse_url=url, data_dir=tmp_path, flush_interval_s=0.05)
    assert SECRET not in store_label(settings) and SECRET not in repr(settings)
    from opentelemetry.sdk.trace import TracerProvider

    processor = ClickHouseSpanProcessor(settings)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    with caplog.at_level(logging.DEBUG):
        with provider.get_tracer("thinkmeter").start_as_current_span("chat m"):
            pass
        assert not processor.force_flush(3_000)  # the server is down: kept as a segment
        provider.shutdown()
    assert kept_segments(settings.segments_dir)
    assert "could not write spans" in caplog.text or "segments" in caplog.text
    assert SECRET not in caplog.text


def test_schema_roles_are_least_privilege_and_carry_no_secret(tmp_path: Path) -> None:
    result = thinkmeter_cli(
        tmp_path,
        "schema",
        "roles",
        "--database",
        "tm",
        THINKMETER_WRITER_PASSWORD=SECRET,
    )
    assert result.returncode == 0, result.stderr
    statements = [line.rstrip(";") for line in result.stdout.splitlines()]
    writer = [s for s in statements if s.endswith("TO thinkmeter_writer")]
    reader = [s for s in statements if s.endswith("TO thinkmeter_reader")]
    assert writer and all(
        s.startswith("GRANT INSERT ON tm.")
        for s in writer
        if "thinkmeter_schema_migrations" not in s
    )
    assert (
        "GRANT SELECT ON tm.thinkmeter_schema_migrations TO thinkmeter_writer" in writer
    )
    assert reader and all(s.startswith("GRANT SELECT ON tm.") for s in reader)
    assert "GRANT SELECT ON tm.llm_calls TO thinkmeter_reader" in reader
    assert "GRANT thinkmeter_writer TO thinkmeter_ingest" in statements
    assert not any(
        "thinkmeter_grafana" in s for s in statements
    )  # no reader password given: no reader user
    assert SECRET not in result.stdout


def test_schema_roles_apply_needs_a_server(tmp_path: Path) -> None:
    result = thinkmeter_cli(tmp_path, "schema", "roles", "--apply")
    assert result.returncode == 1 and "chDB has no users or roles" in result.stderr
