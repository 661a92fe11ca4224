"""NVIDIA GPU state through NVML (`nvidia-ml-py`, module `pynvml`).

Every reading is taken on its own: a reading NVML does not support on a device (utilization on a MIG
instance, power on some boards) is left out of the snapshot, named in `GpuDevice.unsupported`, logged
once, and not asked for again. No library or no driver: `start()` logs one line and returns False.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

logger = logging.getLogger("thinkmeter.collectors")

# Errors that mean "this device does not offer that reading", as opposed to a reading that failed.
_NOT_AVAILABLE = ("NVMLError_NotSupported", "NVMLError_NoPermission", "NVMLError_FunctionNotFound")


@dataclass(frozen=True)
class GpuProcess:
    pid: int
    used_memory_bytes: int | None  # None where the driver does not report it (Windows WDDM)


@dataclass(frozen=True)
class GpuDevice:
    index: int
    uuid: str
    name: str
    parent_uuid: str | None = None  # set for a MIG instance: the physical GPU it is carved from
    mig_index: int | None = None
    utilization: float | None = None  # 0-1, fraction of time a kernel was running
    memory_copy_utilization: float | None = None  # 0-1, fraction of time device memory was read or written
    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None
    power_watts: float | None = None
    energy_joules: float | None = None  # since the driver was loaded
    energy_joules_delta: float | None = None  # since the previous sample
    temperature_celsius: float | None = None
    sm_clock_hz: float | None = None
    processes: tuple[GpuProcess, ...] | None = None
    unsupported: tuple[str, ...] = ()

    @property
    def is_mig(self) -> bool:
        return self.parent_uuid is not None

    @property
    def hw_name(self) -> str:
        return f"gpu{self.index}" if self.mig_index is None else f"gpu{self.index}/mig{self.mig_index}"


@dataclass(frozen=True)
class GpuSnapshot:
    time_unix_nano: int
    start_unix_nano: int  # when the collector started (start of its cumulative sums)
    previous_unix_nano: int | None  # the previous sample (start of the deltas); None on the first
    driver_version: str | None
    devices: tuple[GpuDevice, ...] = ()


class GpuCollector:
    """Samples every GPU (and MIG instance) of this host. The `nvml` module is injectable for tests."""

    def __init__(self, interval_s: float = 1.0, nvml: ModuleType | None = None) -> None:
        self.interval_s = interval_s
        self._nvml = nvml
        self._started = False
        self._driver_version: str | None = None
        self._unsupported: dict[str, set[str]] = {}  # device uuid -> readings NVML refused
        self._failed: set[tuple[str, str]] = set()  # (device, reading) errors already logged
        self._start_ns = 0
        self._previous_ns: int | None = None
        self._energy: dict[str, float] = {}  # device uuid -> joules at the previous sample

    def start(self) -> bool:
        """Initialize NVML; False (after one log line) when there is no usable NVIDIA driver."""
        if self._nvml is None:
            try:
                import pynvml
            except ImportError:
                logger.warning(
                    "thinkmeter: GPU collection is off: nvidia-ml-py is not installed (pip install 'thinkmeter[gpu]')"
                )
                return False
            self._nvml = pynvml
        try:
            self._nvml.nvmlInit()
        except self._nvml.NVMLError as exc:
            logger.warning("thinkmeter: GPU collection is off: NVML cannot start (%s); no NVIDIA driver here?", exc)
            return False
        self._started = True
        self._start_ns = time.time_ns()
        try:
            self._driver_version = _text(self._nvml.nvmlSystemGetDriverVersion())
        except self._nvml.NVMLError:
            self._driver_version = None
        return True

    def close(self) -> None:
        if self._started:
            self._started = False
            try:
                self._nvml.nvmlShutdown()
            except self._nvml.NVMLError:
                pass

    def sample(self) -> GpuSnapshot:
        if not self._started:
            raise RuntimeError("GpuCollector.sample() before a successful start()")
        nvml = self._nvml
        now_ns = time.time_ns()
        devices: list[GpuDevice] = []
        try:
            count = nvml.nvmlDeviceGetCount()
        except nvml.NVMLError as exc:
            self._log_failure("all", "device count", exc)
            count = 0
        for index in range(count):
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
            except nvml.NVMLError as exc:
                self._log_failure(f"gpu{index}", "handle", exc)
                continue
            device = self._read(index, handle)
            if device is None:
                continue
            devices.append(device)
            devices.extend(self._mig_instances(index, handle, device.uuid))
        snapshot = GpuSnapshot(
            time_unix_nano=now_ns,
            start_unix_nano=self._start_ns,
            previous_unix_nano=self._previous_ns,
            driver_version=self._driver_version,
            devices=tuple(devices),
        )
        self._previous_ns = now_ns
        return snapshot

    def _mig_instances(self, index: int, handle: Any, parent_uuid: str) -> list[GpuDevice]:
        nvml = self._nvml
        try:
            if nvml.nvmlDeviceGetMigMode(handle)[0] != nvml.NVML_DEVICE_MIG_ENABLE:
                return []
            slots = nvml.nvmlDeviceGetMaxMigDeviceCount(handle)
        except nvml.NVMLError:  # not MIG-capable (NotSupported): a plain GPU
            return []
        instances = []
        for slot in range(slots):
            try:
                mig_handle = nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)
            except nvml.NVMLError:
                continue  # an empty slot raises NotFound
            instance = self._read(index, mig_handle, parent_uuid=parent_uuid, mig_index=slot)
            if instance is not None:
                instances.append(instance)
        return instances

    def _read(
        self, index: int, handle: Any, parent_uuid: str | None = None, mig_index: int | None = None
    ) -> GpuDevice | None:
        nvml = self._nvml
        try:
            uuid = _text(nvml.nvmlDeviceGetUUID(handle))
            name = _text(nvml.nvmlDeviceGetName(handle))
        except nvml.NVMLError as exc:
            self._log_failure(f"gpu{index}", "identity", exc)
            return None

        def read(reading: str, call: Callable[[], Any]) -> Any:
            return self._reading(uuid, reading, call)

        rates = read("utilization", lambda: nvml.nvmlDeviceGetUtilizationRates(handle))
        memory = read("memory", lambda: nvml.nvmlDeviceGetMemoryInfo(handle))
        power_mw = read("power", lambda: nvml.nvmlDeviceGetPowerUsage(handle))
        energy_mj = read("energy", lambda: nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
        temperature = read("temperature", lambda: self._temperature(handle))
        sm_mhz = read("sm clock", lambda: nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM))
        processes = read("processes", lambda: nvml.nvmlDeviceGetComputeRunningProcesses(handle))
        return GpuDevice(
            index=index,
            uuid=uuid,
            name=name,
            parent_uuid=parent_uuid,
            mig_index=mig_index,
            utilization=None if rates is None else rates.gpu / 100.0,
            memory_copy_utilization=None if rates is None else rates.memory / 100.0,
            memory_used_bytes=None if memory is None else int(memory.used),
            memory_total_bytes=None if memory is None else int(memory.total),
            power_watts=None if power_mw is None else power_mw / 1000.0,
            energy_joules=None if energy_mj is None else energy_mj / 1000.0,
            energy_joules_delta=None if energy_mj is None else self._energy_delta(uuid, energy_mj / 1000.0),
            temperature_celsius=None if temperature is None else float(temperature),
            sm_clock_hz=None if sm_mhz is None else sm_mhz * 1e6,
            processes=None
            if processes is None
            else tuple(GpuProcess(pid=int(p.pid), used_memory_bytes=_int_or_none(p.usedGpuMemory)) for p in processes),
            unsupported=tuple(sorted(self._unsupported.get(uuid, ()))),
        )

    def _energy_delta(self, uuid: str, joules: float) -> float | None:
        previous = self._energy.get(uuid)
        self._energy[uuid] = joules
        if previous is None:
            return None
        return joules - previous if joules >= previous else joules  # lower: the driver was reloaded

    def _temperature(self, handle: Any) -> int:
        nvml = self._nvml
        versioned = getattr(nvml, "nvmlDeviceGetTemperatureV", None)  # absent in older nvidia-ml-py
        if versioned is not None:
            try:
                return versioned(handle, nvml.NVML_TEMPERATURE_GPU)
            except nvml.NVMLError_FunctionNotFound:  # a driver older than the versioned call
                pass
        return nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)

    def _reading(self, uuid: str, reading: str, call: Callable[[], Any]) -> Any:
        """One NVML call: its value, or None when the device does not offer it (then never asked again)."""
        refused = self._unsupported.setdefault(uuid, set())
        if reading in refused:
            return None
        try:
            return call()
        except self._nvml.NVMLError as exc:
            if isinstance(exc, tuple(getattr(self._nvml, name) for name in _NOT_AVAILABLE)):
                refused.add(reading)
                logger.info("thinkmeter: GPU %s does not report %s (%s); it is left out", uuid, reading, exc)
            else:
                self._log_failure(uuid, reading, exc)
            return None

    def _log_failure(self, device: str, reading: str, exc: Exception) -> None:
        if (device, reading) not in self._failed:
            self._failed.add((device, reading))
            logger.warning("thinkmeter: reading %s of GPU %s failed: %s", reading, device, exc)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)
