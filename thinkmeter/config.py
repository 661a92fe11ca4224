"""Settings: keyword arguments to `instrument()` override THINKMETER_* environment variables."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


def _env_flag(name: str) -> bool | None:
    value = os.environ.get(name)
    if value is None:
        return None
    return value.strip().lower() in ("1", "true", "yes", "on")


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Where spans go. "clickhouse": the embedded store (chDB under data_dir) unless clickhouse_url
    # names a server; "otlp": the standard OTEL_EXPORTER_OTLP_* variables; "none": the caller's own
    # tracer provider does the exporting.
    exporter: Literal["clickhouse", "otlp", "none"] = "clickhouse"
    clickhouse_url: str | None = None
    data_dir: Path = Field(default_factory=lambda: Path.home() / ".thinkmeter")
    # Export queue: the caller only enqueues; beyond this many pending spans new ones are dropped
    # and counted.
    queue_size: int = 20_000
    batch_size: int = 2_000
    flush_interval_s: float = 1.0
    price_file: Path | None = None
    capture_content: bool = False
    # "host" or "host:port" of a client's base URL -> provider name (e.g. a self-hosted "vllm").
    providers: dict[str, str] = Field(default_factory=dict)

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"

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
        capture = _env_flag("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT")
        if capture is not None:
            values["capture_content"] = capture
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)
