"""Engine and GPU snapshots as OTel metric points: the units and attributes thinkmeter emits (names in
schemas/semconv.py).

GPU metrics use the OTel hardware conventions (`hw.gpu.*`, and `hw.power` / `hw.energy` with
`hw.type=gpu`), with the instrument kinds they define: memory usage and limit are UpDownCounters, so
they land in otel_metrics_sum as non-monotonic cumulative sums, as they would through the Collector.
Readings the conventions have no name for, and all engine metrics, use `thinkmeter.*` names.
Counters and histograms are written as deltas over the sampling interval (AggregationTemporality 1).
"""

from __future__ import annotations

from thinkmeter.collectors.engines import EngineSnapshot, HistogramDelta
from thinkmeter.collectors.gpu import GpuDevice, GpuSnapshot
from thinkmeter.collectors.points import Gauge, Histogram, MetricPoint, Sum, Temporality
from thinkmeter.schemas import semconv as sc


def engine_attributes(
    engine: str | None, server_address: str, server_port: int | None, model: str | None
) -> dict[str, str]:
    attributes = {sc.SERVER_ADDRESS: server_address}
    if server_port is not None:
        attributes[sc.SERVER_PORT] = str(server_port)
    if engine:
        attributes[sc.ENGINE] = engine
    if model:
        attributes[sc.REQUEST_MODEL] = model
    return attributes


def engine_down_points(attributes: dict[str, str], time_unix_nano: int) -> list[MetricPoint]:
    """What a failed scrape records: the server was not up."""
    return [
        Gauge(sc.METRIC_ENGINE_UP, "1", "1 when the engine server answered the scrape, else 0", attributes, time_unix_nano, 0.0)
    ]


def engine_points(snapshot: EngineSnapshot) -> list[MetricPoint]:
    now = snapshot.time_unix_nano
    attributes = engine_attributes(snapshot.engine, snapshot.server_address, snapshot.server_port, snapshot.model)
    points: list[MetricPoint] = [
        Gauge(sc.METRIC_ENGINE_UP, "1", "1 when the engine server answered the scrape, else 0", attributes, now, 1.0)
    ]

    def gauge(name: str, unit: str, description: str, value: float | None) -> None:
        if value is not None:
            points.append(Gauge(name, unit, description, attributes, now, float(value)))

    kv_attributes = attributes
    if snapshot.kv_cache_layout is not None:
        kv_attributes = {**attributes, sc.ENGINE_KV_CACHE_LAYOUT: snapshot.kv_cache_layout}
    for name, unit, description, value in (
        (sc.METRIC_ENGINE_KV_CACHE_USAGE, "1", "Fraction of the KV-cache pool held by running requests", snapshot.kv_cache_usage),
        (sc.METRIC_ENGINE_KV_CACHE_CAPACITY, "{token}", "KV-cache capacity in tokens", snapshot.kv_cache_capacity_tokens),
    ):
        if value is not None:
            points.append(Gauge(name, unit, description, kv_attributes, now, float(value)))
    for name, description, value in (
        (sc.METRIC_ENGINE_KV_CACHE_USED_TOKENS, "KV-cache tokens held by running requests", snapshot.kv_cache_used_tokens),
        (sc.METRIC_ENGINE_KV_CACHE_EVICTABLE_TOKENS, "KV-cache tokens cached for reuse and reclaimable", snapshot.kv_cache_evictable_tokens),
        (sc.METRIC_ENGINE_KV_CACHE_AVAILABLE_TOKENS, "Free KV-cache tokens", snapshot.kv_cache_available_tokens),
    ):
        gauge(name, "{token}", description, value)
    gauge(sc.METRIC_ENGINE_REQUESTS_RUNNING, "{request}", "Requests being processed", snapshot.requests_running)
    gauge(sc.METRIC_ENGINE_REQUESTS_WAITING, "{request}", "Requests waiting to be scheduled", snapshot.requests_waiting)
    gauge(
        sc.METRIC_ENGINE_PREFIX_CACHE_HIT_RATE,
        "1",
        "Prompt tokens served from the prefix cache / prompt tokens looked up, over the interval",
        snapshot.prefix_cache_hit_rate,
    )
    gauge(
        sc.METRIC_ENGINE_GENERATION_TOKENS_RATE,
        "{token}/s",
        "Generated tokens per second over the interval, requests still generating included",
        snapshot.generation_tokens_rate,
    )
    start = snapshot.interval_start_unix_nano
    if snapshot.preemptions is not None and start is not None:
        points.append(
            Sum(
                sc.METRIC_ENGINE_PREEMPTIONS,
                "{preemption}",
                "Requests preempted (KV cache exhausted) during the interval",
                attributes,
                start,
                now,
                snapshot.preemptions,
                monotonic=True,
                temporality=Temporality.DELTA,
            )
        )
    for name, description, delta in (
        (
            sc.METRIC_ENGINE_TIME_TO_FIRST_TOKEN,
            "Engine-side time from request arrival to first token",
            snapshot.time_to_first_token,
        ),
        (
            sc.METRIC_ENGINE_INTER_TOKEN_LATENCY,
            "Engine-side time between consecutive output tokens",
            snapshot.inter_token_latency,
        ),
    ):
        if delta is not None and start is not None:
            points.append(_histogram(name, description, attributes, start, now, delta))

    if snapshot.engine == sc.ENGINE_OLLAMA:
        gauge(sc.METRIC_ENGINE_MODELS_LOADED, "{model}", "Models loaded in memory", len(snapshot.loaded_models))
        for model in snapshot.loaded_models:
            model_attributes = {**attributes, sc.REQUEST_MODEL: model.name}
            for name, unit, description, value in (
                (sc.METRIC_ENGINE_MODEL_SIZE, "By", "Memory the loaded model takes", model.size_bytes),
                (sc.METRIC_ENGINE_MODEL_SIZE_VRAM, "By", "GPU memory the loaded model takes", model.vram_bytes),
                (
                    sc.METRIC_ENGINE_MODEL_CONTEXT_LENGTH,
                    "{token}",
                    "Context length the model was loaded with",
                    model.context_length,
                ),
            ):
                if value is not None:
                    points.append(Gauge(name, unit, description, model_attributes, now, float(value)))
    return points


def _histogram(
    name: str, description: str, attributes: dict[str, str], start: int, now: int, delta: HistogramDelta
) -> Histogram:
    return Histogram(
        name,
        "s",
        description,
        attributes,
        start,
        now,
        bounds=delta.bounds,
        bucket_counts=delta.bucket_counts,
        count=delta.count,
        sum=delta.sum,
        temporality=Temporality.DELTA,
    )


def gpu_attributes(device: GpuDevice, driver_version: str | None) -> dict[str, str]:
    attributes = {
        sc.HW_ID: device.uuid,
        sc.HW_TYPE: "gpu",
        sc.HW_NAME: device.hw_name,
        sc.HW_MODEL: device.name,
        sc.HW_VENDOR: "NVIDIA",
    }
    if device.parent_uuid:
        attributes[sc.HW_PARENT] = device.parent_uuid
    if driver_version:
        attributes[sc.HW_DRIVER_VERSION] = driver_version
    return attributes


def gpu_points(snapshot: GpuSnapshot) -> list[MetricPoint]:
    return [point for device in snapshot.devices for point in _device_points(snapshot, device)]


def _device_points(snapshot: GpuSnapshot, device: GpuDevice) -> list[MetricPoint]:
    now = snapshot.time_unix_nano
    attributes = gpu_attributes(device, snapshot.driver_version)
    points: list[MetricPoint] = []

    def gauge(name: str, unit: str, description: str, value: float | None, extra: dict[str, str] | None = None) -> None:
        if value is not None:
            points.append(Gauge(name, unit, description, {**attributes, **(extra or {})}, now, float(value)))

    def updown(name: str, description: str, value: int | None, extra: dict[str, str] | None = None) -> None:
        if value is not None:
            points.append(
                Sum(
                    name,
                    "By",
                    description,
                    {**attributes, **(extra or {})},
                    snapshot.start_unix_nano,
                    now,
                    float(value),
                    monotonic=False,
                    temporality=Temporality.CUMULATIVE,
                )
            )

    gauge(
        sc.METRIC_HW_GPU_UTILIZATION,
        "1",
        "Fraction of time a kernel was running on the GPU",
        device.utilization,
        {sc.HW_GPU_TASK: "general"},
    )
    gauge(
        sc.METRIC_GPU_MEMORY_COPY_UTILIZATION,
        "1",
        "Fraction of time device memory was being read or written",
        device.memory_copy_utilization,
    )
    updown(sc.METRIC_HW_GPU_MEMORY_USAGE, "GPU memory used", device.memory_used_bytes)
    updown(sc.METRIC_HW_GPU_MEMORY_LIMIT, "GPU memory available in total", device.memory_total_bytes)
    if device.memory_used_bytes is not None and device.memory_total_bytes:
        gauge(
            sc.METRIC_HW_GPU_MEMORY_UTILIZATION,
            "1",
            "Fraction of GPU memory used",
            device.memory_used_bytes / device.memory_total_bytes,
        )
    gauge(sc.METRIC_HW_POWER, "W", "Power drawn by the GPU", device.power_watts)
    gauge(sc.METRIC_GPU_TEMPERATURE, "Cel", "GPU core temperature", device.temperature_celsius)
    gauge(sc.METRIC_GPU_SM_CLOCK, "Hz", "Streaming-multiprocessor clock frequency", device.sm_clock_hz)
    if device.energy_joules_delta is not None and snapshot.previous_unix_nano is not None:
        points.append(
            Sum(
                sc.METRIC_HW_ENERGY,
                "J",
                "Energy consumed by the GPU during the interval",
                attributes,
                snapshot.previous_unix_nano,
                now,
                device.energy_joules_delta,
                monotonic=True,
                temporality=Temporality.DELTA,
            )
        )
    for process in device.processes or ():
        updown(
            sc.METRIC_GPU_PROCESS_MEMORY_USAGE,
            "GPU memory used by one process",
            process.used_memory_bytes,
            {sc.PROCESS_PID: str(process.pid)},
        )
    return points
