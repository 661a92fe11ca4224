"""GPU and inference-engine collectors: metrics into otel_metrics_* tables, snapshots into request context.

Names are loaded on first use: the instrumentation imports `collectors.context` on every
`instrument()`, and that must not load the scrapers, NVML or the store code of the runner.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CollectorRunner": "runner",
    "EngineScraper": "engines",
    "EngineSnapshot": "engines",
    "GpuCollector": "gpu",
    "GpuSnapshot": "gpu",
    "ScrapeError": "engines",
    "engine_context_attributes": "context",
    "latest_engine_snapshot": "context",
    "latest_gpu_snapshot": "context",
    "start_collectors": "runner",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
