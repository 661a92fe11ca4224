"""The latest engine and GPU snapshots of this process, and the span attributes a request takes from them.

Collectors publish here after every sample; the instrumentation reads at request start, which costs a
dictionary lookup under a lock (no I/O). A snapshot older than its `max_age_s` is treated as absent, so a
stopped or stuck collector never lends stale pressure to new requests.
"""

from __future__ import annotations

import socket
import threading
import time

from thinkmeter.collectors.engines import EngineSnapshot
from thinkmeter.collectors.gpu import GpuSnapshot
from thinkmeter.schemas.semconv import (
    ENGINE_KV_CACHE_LAYOUT as KV_CACHE_LAYOUT,
    ENGINE_KV_CACHE_USAGE as KV_CACHE_USAGE,
    ENGINE_REQUESTS_RUNNING as REQUESTS_RUNNING,
    ENGINE_REQUESTS_WAITING as REQUESTS_WAITING,
    GPU_MEMORY_USED_BYTES,
    GPU_UTILIZATION,
)

_LOCAL_HOSTS = frozenset({"localhost", "::1", "0.0.0.0", "::", socket.gethostname().lower()})

_lock = threading.Lock()
_engines: dict[tuple[str, int | None], tuple[EngineSnapshot, int]] = {}  # (host, port) -> (snapshot, expiry ns)
_gpu: tuple[GpuSnapshot, int] | None = None


def canonical_host(host: str) -> str:
    """One spelling per host, so `localhost`, `127.0.0.1` and this machine's name find the same engine."""
    host = host.strip().strip("[]").lower()
    if host in _LOCAL_HOSTS or host.startswith("127."):
        return "localhost"
    return host


def publish_engine(snapshot: EngineSnapshot, max_age_s: float) -> None:
    expiry = snapshot.time_unix_nano + int(max_age_s * 1e9)
    with _lock:
        _engines[(canonical_host(snapshot.server_address), snapshot.server_port)] = (snapshot, expiry)


def forget_engine(server_address: str, server_port: int | None) -> None:
    with _lock:
        _engines.pop((canonical_host(server_address), server_port), None)


def publish_gpu(snapshot: GpuSnapshot, max_age_s: float) -> None:
    global _gpu
    with _lock:
        _gpu = (snapshot, snapshot.time_unix_nano + int(max_age_s * 1e9))


def forget_gpu() -> None:
    global _gpu
    with _lock:
        _gpu = None


def latest_engine_snapshot(server_address: str, server_port: int | None = None) -> EngineSnapshot | None:
    """The engine at server_address (and port); without a port, the only engine known on that host."""
    host = canonical_host(server_address)
    now = time.time_ns()
    with _lock:
        if server_port is not None:
            entry = _engines.get((host, server_port))
        else:
            on_host = [entry for (h, _), entry in _engines.items() if h == host]
            entry = on_host[0] if len(on_host) == 1 else None
    if entry is None or entry[1] < now:
        return None
    return entry[0]


def latest_gpu_snapshot() -> GpuSnapshot | None:
    with _lock:
        entry = _gpu
    if entry is None or entry[1] < time.time_ns():
        return None
    return entry[0]


def engine_context_attributes(server_address: str, server_port: int | None = None) -> dict[str, float | int | str]:
    """Span attributes describing the pressure a request to this engine starts under; {} when unknown.

    GPU figures are added only for an engine on this host (the collector sees only local GPUs): mean
    utilization over the GPUs that report it and memory used summed over physical GPUs.
    """
    attributes: dict[str, float | int | str] = {}
    snapshot = latest_engine_snapshot(server_address, server_port)
    if snapshot is not None:
        for key, value in (
            (KV_CACHE_USAGE, snapshot.kv_cache_usage),
            (KV_CACHE_LAYOUT, snapshot.kv_cache_layout),
            (REQUESTS_RUNNING, snapshot.requests_running),
            (REQUESTS_WAITING, snapshot.requests_waiting),
        ):
            if value is not None:
                attributes[key] = value
    if canonical_host(server_address) != "localhost":
        return attributes
    gpu = latest_gpu_snapshot()
    if gpu is None:
        return attributes
    physical = [device for device in gpu.devices if not device.is_mig]
    utilizations = [d.utilization for d in physical if d.utilization is not None]
    if utilizations:
        attributes[GPU_UTILIZATION] = sum(utilizations) / len(utilizations)
    memory = [d.memory_used_bytes for d in physical if d.memory_used_bytes is not None]
    if memory:
        attributes[GPU_MEMORY_USED_BYTES] = sum(memory)
    return attributes
