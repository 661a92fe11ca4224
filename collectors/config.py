"""What to collect: from arguments, then THINKMETER_COLLECT_* variables, then a JSON file, then defaults.

File format (every key optional):

    {"gpu": true, "interval_s": 5,
     "engines": ["http://127.0.0.1:8000", {"url": "http://gpu-box:30000", "engine": "sglang", "model": "qwen3-8b"}]}
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from thinkmeter.collectors.runner import DEFAULT_INTERVAL_S, EngineSpec

ENV_ENGINES = "THINKMETER_COLLECT_ENGINES"  # comma-separated URLs
ENV_GPU = "THINKMETER_COLLECT_GPU"  # 1/true/yes/on
ENV_INTERVAL = "THINKMETER_COLLECT_INTERVAL"  # seconds


@dataclass(frozen=True)
class CollectConfig:
    gpu: bool = False
    engines: tuple[EngineSpec, ...] = field(default_factory=tuple)
    interval_s: float = DEFAULT_INTERVAL_S

    @classmethod
    def resolve(
        cls,
        gpu: bool | None = None,
        engines: Sequence[EngineSpec] | None = None,
        interval_s: float | None = None,
        config_file: Path | None = None,
        environ: Mapping[str, str] = os.environ,
    ) -> CollectConfig:
        file_values = _read_file(config_file) if config_file is not None else {}
        if gpu is None and ENV_GPU in environ:
            gpu = environ[ENV_GPU].strip().lower() in ("1", "true", "yes", "on")
        if engines is None and environ.get(ENV_ENGINES, "").strip():
            engines = [url.strip() for url in environ[ENV_ENGINES].split(",") if url.strip()]
        if interval_s is None and ENV_INTERVAL in environ:
            interval_s = _seconds(environ[ENV_INTERVAL], ENV_INTERVAL)
        if gpu is None:
            gpu = bool(file_values.get("gpu", False))
        if engines is None:
            engines = file_values.get("engines", [])
        if interval_s is None:
            interval_s = _seconds(file_values.get("interval_s", DEFAULT_INTERVAL_S), "interval_s")
        if interval_s <= 0:
            raise ValueError(f"the collection interval must be a positive number of seconds, got {interval_s:g}")
        return cls(gpu=gpu, engines=tuple(engines), interval_s=interval_s)


def _read_file(path: Path) -> dict:
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"collector config {path} is not valid JSON: {exc}") from None
    if not isinstance(values, dict):
        raise ValueError(f"collector config {path} must hold a JSON object with gpu, engines and interval_s")
    unknown = set(values) - {"gpu", "engines", "interval_s"}
    if unknown:
        raise ValueError(f"collector config {path}: unknown keys {sorted(unknown)}; use gpu, engines, interval_s")
    if not isinstance(values.get("engines", []), list):
        raise ValueError(f"collector config {path}: engines must be a list of URLs or {{url, engine, model, kv_layout}} objects")
    return values


def _seconds(value: object, name: str) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number of seconds, got {value!r}") from None
