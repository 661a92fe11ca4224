"""GPU collector.

The no-driver path runs for real: this machine has no NVIDIA driver, so the real `pynvml.nvmlInit()`
raises. Sampling, MIG and error handling run against a STAND-IN NVML module (tests/nvml_stand_in.py):
the real nvidia-ml-py error classes, constants and structures, with device readings that are not NVML.
"""

from __future__ import annotations

import logging
import time

import pynvml
import pytest

from tests.engine_servers import EngineServer, vllm_metrics
from tests.nvml_stand_in import StandInGpu, stand_in_nvml
from thinkmeter.collectors import context
from thinkmeter.collectors.engines import EngineScraper
from thinkmeter.collectors.gpu import GpuCollector
from thinkmeter.collectors.runner import CollectorRunner

GIB = 2**30


def _nvml_works() -> bool:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return True


@pytest.mark.skipif(_nvml_works(), reason="this machine has an NVIDIA driver; the no-driver path cannot run")
def test_without_a_driver_one_log_line_and_the_gpu_collector_stops(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="thinkmeter")
    collector = GpuCollector(interval_s=0.05)  # the real pynvml
    assert collector.start() is False
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 1
    assert "GPU collection is off" in messages[0] and "NVML Shared Library Not Found" in messages[0]

    runner = CollectorRunner(gpu=GpuCollector(interval_s=0.05))
    runner.start()
    deadline = time.monotonic() + 5
    while runner.is_running() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not runner.is_running()  # nothing left to sample: the thread ended
    runner.stop()
    assert context.latest_gpu_snapshot() is None


@pytest.mark.skipif(_nvml_works(), reason="this machine has an NVIDIA driver; the no-driver path cannot run")
def test_without_a_driver_engines_are_still_collected() -> None:
    server = EngineServer().start()
    server.serve("/metrics", vllm_metrics())
    runner = CollectorRunner(engines=[EngineScraper(server.url, interval_s=0.05)], gpu=GpuCollector(interval_s=0.05))
    try:
        runner.start()
        deadline = time.monotonic() + 5
        while server.hits.get("/metrics", 0) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert runner.is_running()
        assert context.latest_engine_snapshot("127.0.0.1", server.port) is not None
    finally:
        runner.stop()
        server.stop()


def test_sampling_reads_every_device_with_units_converted() -> None:
    """Stand-in NVML module, not a GPU."""
    gpus = [
        StandInGpu("GPU-aaaa", processes=[(4242, 20 * GIB), (4343, None)]),
        StandInGpu("GPU-bbbb", name="NVIDIA L4", utilization=(5, 1), memory=(24 * GIB, GIB), mig_capable=False),
    ]
    collector = GpuCollector(interval_s=1.0, nvml=stand_in_nvml(gpus))
    assert collector.start() is True

    first = collector.sample()
    gpus[0].energy_mj += 250_500  # 250.5 J between the samples
    second = collector.sample()

    assert first.driver_version == "575.57.08"
    assert first.previous_unix_nano is None and second.previous_unix_nano == first.time_unix_nano
    a, b = second.devices
    assert (a.index, a.uuid, a.name, a.hw_name, a.is_mig) == (0, "GPU-aaaa", "NVIDIA H100 80GB HBM3", "gpu0", False)
    assert (a.utilization, a.memory_copy_utilization) == (0.87, 0.41)
    assert (a.memory_total_bytes, a.memory_used_bytes) == (80 * GIB, 30 * GIB)
    assert (a.power_watts, a.temperature_celsius, a.sm_clock_hz) == (350.123, 64.0, 1755e6)
    assert a.energy_joules == 1250.5 and a.energy_joules_delta == 250.5
    assert first.devices[0].energy_joules_delta is None  # no previous sample
    assert [(p.pid, p.used_memory_bytes) for p in a.processes] == [(4242, 20 * GIB), (4343, None)]
    assert a.unsupported == ()
    assert (b.name, b.utilization, b.memory_used_bytes, b.processes) == ("NVIDIA L4", 0.05, GIB, ())
    collector.close()


def test_mig_instances_report_memory_and_say_utilization_is_not_supported(caplog: pytest.LogCaptureFixture) -> None:
    """Stand-in NVML module: an H100 in MIG mode, as NVML answers it (utilization NotSupported)."""
    caplog.set_level(logging.INFO, logger="thinkmeter")
    not_supported = pynvml.NVML_ERROR_NOT_SUPPORTED
    instances = [
        StandInGpu(
            "MIG-1111",
            name="NVIDIA H100 80GB HBM3 MIG 3g.40gb",
            utilization=not_supported,
            memory=(40 * GIB, 12 * GIB),
            power_mw=None,
            energy_mj=None,
            temperature_c=None,
            sm_clock_mhz=None,
            processes=[(777, 11 * GIB)],
        ),
        None,  # an empty slot: NVML raises NotFound
        StandInGpu(
            "MIG-2222",
            name="NVIDIA H100 80GB HBM3 MIG 3g.40gb",
            utilization=not_supported,
            memory=(40 * GIB, 0),
            power_mw=None,
            energy_mj=None,
            temperature_c=None,
            sm_clock_mhz=None,
        ),
    ]
    parent = StandInGpu("GPU-cccc", utilization=not_supported, memory=(80 * GIB, 13 * GIB), mig=instances)
    nvml = stand_in_nvml([parent])
    collector = GpuCollector(nvml=nvml)
    assert collector.start()

    snapshot = collector.sample()
    collector.sample()

    physical, first, second = snapshot.devices
    assert (physical.uuid, physical.is_mig, physical.utilization, physical.memory_used_bytes) == (
        "GPU-cccc",
        False,
        None,
        13 * GIB,
    )
    assert physical.power_watts == 350.123 and physical.unsupported == ("utilization",)
    assert (first.uuid, first.parent_uuid, first.hw_name, first.mig_index) == ("MIG-1111", "GPU-cccc", "gpu0/mig0", 0)
    assert (first.utilization, first.memory_total_bytes, first.memory_used_bytes) == (None, 40 * GIB, 12 * GIB)
    assert first.unsupported == ("energy", "power", "sm clock", "temperature", "utilization")
    assert [(p.pid, p.used_memory_bytes) for p in first.processes] == [(777, 11 * GIB)]
    assert (second.uuid, second.mig_index) == ("MIG-2222", 2)
    # Said once per device and reading, and not asked again.
    said = [r.getMessage() for r in caplog.records if "MIG-1111 does not report utilization" in r.getMessage()]
    assert len(said) == 1
    assert nvml.calls.count(("utilization", "MIG-1111")) == 1
    assert nvml.calls.count(("memory", "MIG-1111")) == 2


def test_a_failing_reading_is_left_out_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    """Stand-in NVML module: a GPU whose power reading fails (GPU lost), another that is fine."""
    caplog.set_level(logging.INFO, logger="thinkmeter")
    broken = StandInGpu("GPU-dddd", failing={"power": pynvml.NVML_ERROR_GPU_IS_LOST})
    collector = GpuCollector(nvml=stand_in_nvml([broken, StandInGpu("GPU-eeee")]))
    assert collector.start()
    collector.sample()
    snapshot = collector.sample()
    lost, fine = snapshot.devices
    assert lost.power_watts is None and lost.utilization == 0.87 and lost.unsupported == ()
    assert fine.power_watts == 350.123
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["thinkmeter: reading power of GPU GPU-dddd failed: GPU is lost"]


def test_driver_not_loaded_is_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    """Stand-in NVML module whose nvmlInit fails as with the kernel module unloaded."""
    caplog.set_level(logging.DEBUG, logger="thinkmeter")
    collector = GpuCollector(nvml=stand_in_nvml([], init_error=pynvml.NVML_ERROR_DRIVER_NOT_LOADED))
    assert collector.start() is False
    assert [r.getMessage() for r in caplog.records] == [
        "thinkmeter: GPU collection is off: NVML cannot start (Driver Not Loaded); no NVIDIA driver here?"
    ]
    with pytest.raises(RuntimeError):
        collector.sample()


def test_old_driver_without_the_versioned_temperature_call() -> None:
    """Stand-in NVML module: nvmlDeviceGetTemperatureV missing from the driver (FunctionNotFound)."""
    nvml = stand_in_nvml([StandInGpu("GPU-ffff", temperature_c=None)])

    def missing(handle: object, sensor: int) -> int:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)

    nvml.nvmlDeviceGetTemperatureV = missing
    nvml.nvmlDeviceGetTemperature = lambda handle, sensor: 71
    collector = GpuCollector(nvml=nvml)
    assert collector.start()
    assert collector.sample().devices[0].temperature_celsius == 71.0
