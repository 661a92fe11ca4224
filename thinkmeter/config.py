"""Settings: keyword arguments to `instrument()` override THINKMETER_* environment variables."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator


def redacted_url(url: str) -> str:
    """A URL fit for messages: any password replaced by ***."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.rsplit("@", 1)[1]
        return parts._replace(netloc=f"{parts.username}:***@{netloc}").geturl()
    except ValueError:
        return "(unparsable URL)"


def _env_flag(name: str) -> bool | None:
    value = os.environ.get(name)
    if value is None:
        return None
    return value.strip().lower() in ("1", "true", "yes", "on")


class Settings(BaseModel):
    # Validation errors never echo inputs: a bad clickhouse_url may carry a password.
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    # Where spans go. "clickhouse": the embedded store (chDB under data_dir) unless clickhouse_url
    # names a server; "otlp": the standard OTEL_EXPORTER_OTLP_* variables; "none": the caller's own
    # tracer provider does the exporting.
    exporter: Literal["clickhouse", "otlp", "none"] = "clickhouse"
    clickhouse_url: str | None = Field(default=None, repr=False)  # may hold a password
    data_dir: Path = Field(default_factory=lambda: Path.home() / ".thinkmeter")
    # Export queue: the caller only enqueues; beyond this many pending spans new ones are dropped
    # and counted.
    queue_size: int = Field(default=20_000, gt=0)
    # Spans per insert: every insert makes a part in each table its views feed, whatever its size, so
    # few large inserts cost less CPU and memory than many small ones.
    batch_size: int = Field(default=10_000, gt=0)
    flush_interval_s: float = Field(default=1.0, gt=0)
    # Bound on the segments waiting for `thinkmeter serve` (or a server that is down): beyond it new
    # batches are dropped and counted (~2 million spans per GiB).
    segments_max_bytes: int = Field(default=1 << 30, gt=0)
    price_file: Path | None = None
    capture_content: bool = False
    # With capture on: each of gen_ai.input.messages / gen_ai.output.messages holds at most this many
    # characters of text, after `redact` (str -> str) has run on every text.
    content_max_chars: int = Field(default=20_000, gt=0)
    redact: Callable[[str], str] | None = None
    # "host" or "host:port" of a client's base URL -> provider name (e.g. a self-hosted "vllm").
    providers: dict[str, str] = Field(default_factory=dict)
    # A budget policy file (YAML or JSON; thinkmeter/budgets/policy.py).
    budgets: Path | None = None

    @field_validator("clickhouse_url")
    @classmethod
    def _server_url(cls, url: str | None) -> str | None:
        # Checked here so a typo fails at start-up, not at the first export; never echo the password.
        if not url:
            return None
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018  (raises on a port that is not a number)
        except ValueError as exc:
            raise ValueError(f"clickhouse_url {redacted_url(url)} is not a valid URL ({exc})") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"clickhouse_url {redacted_url(url)} is not a ClickHouse HTTP URL; "
                "use http(s)://user:password@host:port/database"
            )
        return url

    @property
    def segments_dir(self) -> Path:
        """Where applications write their rows for `thinkmeter serve` (see thinkmeter.segments)."""
        return self.data_dir / "segments"

    @property
    def chdb_dir(self) -> Path:
        return self.data_dir / "chdb"

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        values: dict[str, object] = {}
        env = os.environ
        if "THINKMETER_EXPORTER" in env:
            values["exporter"] = env["THINKMETER_EXPORTER"]
        if "THINKMETER_CLICKHOUSE_URL" in env:
            values["clickhouse_url"] = env["THINKMETER_CLICKHOUSE_URL"]
        if "THINKMETER_DATA_DIR" in env:
            values["data_dir"] = Path(env["THINKMETER_DATA_DIR"])
        if "THINKMETER_PRICE_FILE" in env:
            values["price_file"] = Path(env["THINKMETER_PRICE_FILE"])
        if env.get("THINKMETER_BUDGETS", "").strip():
            values["budgets"] = Path(env["THINKMETER_BUDGETS"].strip())
        capture = _env_flag("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT")
        if capture is not None:
            values["capture_content"] = capture
        unknown = sorted(set(overrides) - set(cls.model_fields))
        if unknown:
            raise ValueError(f"unknown setting(s) {unknown}; known settings are {sorted(cls.model_fields)}")
        if "THINKMETER_CONTENT_MAX_CHARS" in env:
            values["content_max_chars"] = env["THINKMETER_CONTENT_MAX_CHARS"]
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)
