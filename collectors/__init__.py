"""GPU and inference-engine collectors: metrics into otel_metrics_* tables, snapshots into request context."""

from thinkmeter.collectors.context import engine_context_attributes, latest_engine_snapshot, latest_gpu_snapshot
from thinkmeter.collectors.engines import EngineScraper, EngineSnapshot, ScrapeError
from thinkmeter.collectors.gpu import GpuCollector, GpuSnapshot
from thinkmeter.collectors.runner import CollectorRunner, start_collectors

__all__ = [
    "CollectorRunner",
    "EngineScraper",
    "EngineSnapshot",
    "GpuCollector",
    "GpuSnapshot",
    "ScrapeError",
    "engine_context_attributes",
    "latest_engine_snapshot",
    "latest_gpu_snapshot",
    "start_collectors",
]
