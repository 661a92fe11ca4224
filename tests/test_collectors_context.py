"""Per-request context: the span attributes a call to a self-hosted engine takes from the latest snapshots.

GPU snapshots come from a STAND-IN NVML module (tests/nvml_stand_in.py), not from a GPU.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from tests.engine_servers import EngineServer, sglang_metrics, vllm_metrics
from tests.nvml_stand_in import StandInGpu, stand_in_nvml
from thinkmeter.collectors import context, engine_context_attributes, latest_engine_snapshot
from thinkmeter.collectors.engines import EngineScraper
from thinkmeter.collectors.gpu import GpuCollector
from thinkmeter.collectors.runner import CollectorRunner

GIB = 2**30


@pytest.fixture
def vllm() -> Iterator[EngineServer]:
    server = EngineServer().start()
    server.serve("/metrics", vllm_metrics(running=6, waiting=2, kv_usage=0.875))
    yield server
    server.stop()


def test_engine_and_local_gpu_state_become_span_attributes(vllm: EngineServer) -> None:
    gpus = [
        StandInGpu("GPU-aaaa", utilization=(90, 40), memory=(80 * GIB, 70 * GIB)),
        StandInGpu("GPU-bbbb", utilization=(60, 20), memory=(80 * GIB, 10 * GIB)),
        # MIG-enabled: no utilization; its instances' memory is part of its own, so it is not counted twice.
        StandInGpu("GPU-cccc", utilization=3, memory=(80 * GIB, 8 * GIB), mig=[StandInGpu("MIG-1", utilization=3)]),
    ]
    runner = CollectorRunner(engines=[EngineScraper(vllm.url)], gpu=GpuCollector(nvml=stand_in_nvml(gpus)))
    runner.collect_once()
    try:
        expected = {
            "thinkmeter.engine.kv_cache.usage": 0.875,
            "thinkmeter.engine.requests.running": 6,
            "thinkmeter.engine.requests.waiting": 2,
            "thinkmeter.gpu.utilization": 0.75,
            "thinkmeter.gpu.memory.used_bytes": 88 * GIB,
        }
        # The same server, however the client spelled its address.
        for host in ("127.0.0.1", "localhost", "LOCALHOST", socket.gethostname()):
            assert engine_context_attributes(host, vllm.port) == expected
        assert engine_context_attributes("127.0.0.1") == expected  # the only engine on that host
        assert engine_context_attributes("127.0.0.1", vllm.port + 1) == {  # another server: only the host's GPUs
            "thinkmeter.gpu.utilization": 0.75,
            "thinkmeter.gpu.memory.used_bytes": 88 * GIB,
        }
        assert engine_context_attributes("gpu-box.example", 8000) == {}  # remote, unknown: nothing
    finally:
        runner.stop()
    assert engine_context_attributes("127.0.0.1", vllm.port) == {}  # a stopped collector lends nothing


def test_two_engines_on_one_host_need_the_port(vllm: EngineServer) -> None:
    sglang = EngineServer().start()
    sglang.serve("/metrics", sglang_metrics(running=1, queued=0, token_usage=0.1))
    runner = CollectorRunner(engines=[EngineScraper(vllm.url), EngineScraper(sglang.url)])
    try:
        runner.collect_once()
        assert engine_context_attributes("127.0.0.1", sglang.port) == {
            "thinkmeter.engine.kv_cache.usage": 0.1,
            "thinkmeter.engine.requests.running": 1,
            "thinkmeter.engine.requests.waiting": 0,
        }
        assert latest_engine_snapshot("127.0.0.1") is None  # ambiguous without the port
    finally:
        runner.stop()
        sglang.stop()


def test_a_snapshot_past_its_age_is_not_used(vllm: EngineServer) -> None:
    snapshot = EngineScraper(vllm.url).scrape()
    context.publish_engine(snapshot, max_age_s=0.05)
    assert latest_engine_snapshot("127.0.0.1", vllm.port) is snapshot
    time.sleep(0.1)
    assert latest_engine_snapshot("127.0.0.1", vllm.port) is None
    assert engine_context_attributes("127.0.0.1", vllm.port) == {}
    context.forget_engine("127.0.0.1", vllm.port)
