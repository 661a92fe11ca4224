"""Collector rows in the store: otel_metrics_gauge / _sum / _histogram in the Collector exporter's format,
and `thinkmeter collect` as a process that stops cleanly on SIGTERM.

GPU rows come from a STAND-IN NVML module (tests/nvml_stand_in.py), not from a GPU.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from clickhouse_connect.driver.client import Client

from tests.engine_servers import VLLM_ITL_BUCKETS, VLLM_TTFT_BUCKETS, EngineServer, vllm_metrics
from tests.nvml_stand_in import StandInGpu, stand_in_nvml
from thinkmeter.schemas import semconv as sc
from thinkmeter.collectors.engines import EngineScraper
from thinkmeter.collectors.gpu import GpuCollector
from thinkmeter.collectors.runner import CollectorRunner, StoreSink
from thinkmeter.config import Settings
from thinkmeter.store import query_rows

GIB = 2**30


@pytest.fixture
def server() -> Iterator[EngineServer]:
    server = EngineServer().start()
    yield server
    server.stop()


def _rows(client: Client, table: str, columns: str, service: str) -> list[tuple]:
    return client.query(
        f"SELECT {columns} FROM {table} WHERE ServiceName = {{service:String}} "
        "ORDER BY TimeUnix, MetricName, toString(Attributes)",
        parameters={"service": service},
    ).result_rows


def test_engine_metrics_are_stored_as_the_collector_exporter_stores_them(
    store_settings: Settings, service_name: str, server: EngineServer
) -> None:
    server.serve("/metrics", vllm_metrics())
    resource = {"service.name": service_name, "host.name": "collector-host"}
    runner = CollectorRunner(engines=[EngineScraper(server.url)], sink=StoreSink(store_settings, resource))
    first = runner.collect_once()
    server.serve(
        "/metrics",
        vllm_metrics(
            running=7,
            waiting=4,
            kv_usage=0.93,
            prefix_queries=18432.0 + 1000,
            prefix_hits=12288.0 + 250,
            preemptions=2.0,
            generation_tokens=40960.0 + 600,
            ttft=(0.03, 0.05, 0.09, 0.3),
            itl=(0.02, 0.02, 0.03, 0.2, 0.2),
        ),
    )
    second = runner.collect_once()
    assert runner.flush()
    runner.stop()

    t1, t2 = first[0].time_unix_nano, second[0].time_unix_nano
    rate = next(p.value for p in second if p.name == sc.METRIC_ENGINE_GENERATION_TOKENS_RATE)
    series = {
        "server.address": "127.0.0.1",
        "server.port": str(server.port),
        "thinkmeter.engine": "vllm",
        "gen_ai.request.model": "Qwen/Qwen3-8B",
    }
    with _store(store_settings) as client:
        gauges = _rows(
            client,
            "otel_metrics_gauge",
            "MetricName, MetricUnit, Attributes, toUnixTimestamp64Nano(StartTimeUnix), "
            "toUnixTimestamp64Nano(TimeUnix), Value, Flags",
            service_name,
        )
        sums = _rows(
            client,
            "otel_metrics_sum",
            "MetricName, MetricUnit, Attributes, toUnixTimestamp64Nano(StartTimeUnix), "
            "toUnixTimestamp64Nano(TimeUnix), Value, AggregationTemporality, IsMonotonic",
            service_name,
        )
        histograms = _rows(
            client,
            "otel_metrics_histogram",
            "MetricName, MetricUnit, Attributes, toUnixTimestamp64Nano(StartTimeUnix), "
            "toUnixTimestamp64Nano(TimeUnix), Count, Sum, BucketCounts, ExplicitBounds, "
            "AggregationTemporality",
            service_name,
        )
        resources = client.query(
            "SELECT DISTINCT ResourceAttributes, ScopeName FROM otel_metrics_gauge WHERE ServiceName = {s:String}",
            parameters={"s": service_name},
        ).result_rows

    assert gauges == [
        ("thinkmeter.engine.kv_cache.capacity", "{token}", series, 0, t1, 439200.0, 0),
        ("thinkmeter.engine.kv_cache.usage", "1", series, 0, t1, 0.4125, 0),
        ("thinkmeter.engine.requests.running", "{request}", series, 0, t1, 3.0, 0),
        ("thinkmeter.engine.requests.waiting", "{request}", series, 0, t1, 1.0, 0),
        ("thinkmeter.engine.up", "1", series, 0, t1, 1.0, 0),
        ("thinkmeter.engine.generation_tokens.rate", "{token}/s", series, 0, t2, rate, 0),
        ("thinkmeter.engine.kv_cache.capacity", "{token}", series, 0, t2, 439200.0, 0),
        ("thinkmeter.engine.kv_cache.usage", "1", series, 0, t2, 0.93, 0),
        ("thinkmeter.engine.prefix_cache.hit_rate", "1", series, 0, t2, 0.25, 0),
        ("thinkmeter.engine.requests.running", "{request}", series, 0, t2, 7.0, 0),
        ("thinkmeter.engine.requests.waiting", "{request}", series, 0, t2, 4.0, 0),
        ("thinkmeter.engine.up", "1", series, 0, t2, 1.0, 0),
    ]
    assert rate * (t2 - t1) / 1e9 == pytest.approx(600, rel=0.05)  # scrape timing under load
    assert sums == [("thinkmeter.engine.preemptions", "{preemption}", series, t1, t2, 2.0, 1, True)]
    ttft_bounds = list(VLLM_TTFT_BUCKETS)
    itl_bounds = list(VLLM_ITL_BUCKETS)
    (itl, ttft) = histograms
    assert ttft[:6] == ("thinkmeter.engine.time_to_first_token", "s", series, t1, t2, 1)
    assert ttft[6] == pytest.approx(0.3)
    assert (ttft[7], ttft[8], ttft[9]) == ([0] * 9 + [1] + [0] * 13, ttft_bounds, 1)
    assert itl[:6] == ("thinkmeter.engine.inter_token_latency", "s", series, t1, t2, 2)
    assert (itl[6], itl[7], itl[8], itl[9]) == (pytest.approx(0.4), [0] * 6 + [2] + [0] * 13, itl_bounds, 1)
    assert resources == [({"service.name": service_name, "host.name": "collector-host"}, "thinkmeter.collectors")]


def test_gpu_metrics_are_stored_with_hw_gpu_names(store_settings: Settings, service_name: str) -> None:
    """Stand-in NVML module: one full GPU with a process, one MIG-enabled GPU with one instance."""
    instance = StandInGpu(
        "MIG-1111",
        name="NVIDIA H100 80GB HBM3 MIG 7g.80gb",
        utilization=3,
        memory=(80 * GIB, 5 * GIB),
        power_mw=None,
        energy_mj=None,
        temperature_c=None,
        sm_clock_mhz=None,
    )
    gpus = [
        StandInGpu("GPU-aaaa", processes=[(4242, 20 * GIB)]),
        StandInGpu("GPU-bbbb", utilization=3, memory=(80 * GIB, 6 * GIB), mig=[instance]),
    ]
    resource = {"service.name": service_name, "host.name": "gpu-host"}
    nvml = stand_in_nvml(gpus)
    runner = CollectorRunner(gpu=GpuCollector(nvml=nvml), sink=StoreSink(store_settings, resource))
    first = runner.collect_once()
    gpus[0].energy_mj += 4000
    gpus[1].energy_mj += 1000
    second = runner.collect_once()
    assert runner.flush()
    runner.stop()

    start = next(p for p in first if p.name == sc.METRIC_HW_GPU_MEMORY_USAGE).start_time_unix_nano
    t1, t2 = first[0].time_unix_nano, second[0].time_unix_nano
    base = {"hw.type": "gpu", "hw.vendor": "NVIDIA", "hw.driver_version": "575.57.08"}
    a = {**base, "hw.id": "GPU-aaaa", "hw.name": "gpu0", "hw.model": "NVIDIA H100 80GB HBM3"}
    b = {**base, "hw.id": "GPU-bbbb", "hw.name": "gpu1", "hw.model": "NVIDIA H100 80GB HBM3"}
    mig = {
        **base,
        "hw.id": "MIG-1111",
        "hw.name": "gpu1/mig0",
        "hw.model": "NVIDIA H100 80GB HBM3 MIG 7g.80gb",
        "hw.parent": "GPU-bbbb",
    }
    with _store(store_settings) as client:
        gauges = _rows(
            client,
            "otel_metrics_gauge",
            "MetricName, MetricUnit, Attributes, toUnixTimestamp64Nano(TimeUnix), Value",
            service_name,
        )
        sums = _rows(
            client,
            "otel_metrics_sum",
            "MetricName, MetricUnit, Attributes, toUnixTimestamp64Nano(StartTimeUnix), "
            "toUnixTimestamp64Nano(TimeUnix), Value, AggregationTemporality, IsMonotonic",
            service_name,
        )

    def gauges_at(t: int) -> list[tuple]:
        # No utilization for the MIG-enabled GPU and its instance: NVML does not report it there.
        return [
            ("hw.gpu.memory.utilization", "1", a, t, 0.375),
            ("hw.gpu.memory.utilization", "1", b, t, 0.075),
            ("hw.gpu.memory.utilization", "1", mig, t, 0.0625),
            ("hw.gpu.utilization", "1", {**a, "hw.gpu.task": "general"}, t, 0.87),
            ("hw.power", "W", a, t, 350.123),
            ("hw.power", "W", b, t, 350.123),
            ("thinkmeter.gpu.clock.sm", "Hz", a, t, 1755e6),
            ("thinkmeter.gpu.clock.sm", "Hz", b, t, 1755e6),
            ("thinkmeter.gpu.memory_copy.utilization", "1", a, t, 0.41),
            ("thinkmeter.gpu.temperature", "Cel", a, t, 64.0),
            ("thinkmeter.gpu.temperature", "Cel", b, t, 64.0),
        ]

    def memory_at(t: int) -> list[tuple]:
        return [
            ("hw.gpu.memory.limit", "By", a, start, t, float(80 * GIB), 2, False),
            ("hw.gpu.memory.limit", "By", b, start, t, float(80 * GIB), 2, False),
            ("hw.gpu.memory.limit", "By", mig, start, t, float(80 * GIB), 2, False),
            ("hw.gpu.memory.usage", "By", a, start, t, float(30 * GIB), 2, False),
            ("hw.gpu.memory.usage", "By", b, start, t, float(6 * GIB), 2, False),
            ("hw.gpu.memory.usage", "By", mig, start, t, float(5 * GIB), 2, False),
            (
                "thinkmeter.gpu.process.memory.usage",
                "By",
                {**a, "process.pid": "4242"},
                start,
                t,
                float(20 * GIB),
                2,
                False,
            ),
        ]

    energy = [
        ("hw.energy", "J", a, t1, t2, 4.0, 1, True),  # the delta between the two samples
        ("hw.energy", "J", b, t1, t2, 1.0, 1, True),
    ]
    assert _canonical(gauges) == _canonical(gauges_at(t1) + gauges_at(t2))
    assert _canonical(sums) == _canonical(memory_at(t1) + energy + memory_at(t2))


def test_collect_command_runs_until_sigterm_and_flushes(store_settings: Settings, server: EngineServer) -> None:
    server.serve("/metrics", vllm_metrics())
    process = subprocess.Popen(
        [sys.executable, "-m", "thinkmeter", "collect", "--engine", server.url, "--interval", "0.1"],
        env={**os.environ, "THINKMETER_DATA_DIR": str(store_settings.data_dir)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while server.hits.get("/metrics", 0) < 3 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    rows = query_rows(
        store_settings,
        "SELECT count() AS ups, min(Value) AS low FROM otel_metrics_gauge WHERE ServiceName = 'thinkmeter-collector' "
        "AND MetricName = 'thinkmeter.engine.up' AND Attributes['server.port'] = {port:String}",
        {"port": str(server.port)},
    )
    assert rows == [{"ups": server.hits["/metrics"], "low": 1.0}]  # every scrape stored, none lost at exit


def _canonical(rows: list[tuple]) -> list[tuple]:
    return sorted(rows, key=lambda r: (r[0], sorted(r[2].items()), r[3:]))


def _store(settings: Settings):
    from thinkmeter.store import store_session

    return store_session(settings)
