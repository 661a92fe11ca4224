"""A stand-in for the `pynvml` module, for GPU tests on machines without an NVIDIA GPU.

It is NOT NVML: device readings come from the `StandInGpu` descriptions below. Everything else is the
real nvidia-ml-py: the error classes (NVMLError and its generated subclasses, raised by code as pynvml
raises them), the constants, and the ctypes structures the readings are returned in.
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field

import pynvml


@dataclass
class StandInGpu:
    uuid: str
    name: str = "NVIDIA H100 80GB HBM3"
    utilization: tuple[int, int] | int | None = (87, 41)  # (gpu %, memory %) or an NVML error code
    memory: tuple[int, int] = (80 * 2**30, 30 * 2**30)  # (total, used) bytes
    power_mw: int | None = 350_123
    energy_mj: int | None = 1_000_000
    temperature_c: int | None = 64
    sm_clock_mhz: int | None = 1755
    processes: list[tuple[int, int | None]] = field(default_factory=list)  # (pid, used bytes or None)
    mig_capable: bool = True  # False: nvmlDeviceGetMigMode raises NotSupported, as on consumer GPUs
    mig: list[StandInGpu | None] | None = None  # MIG mode on, with these instance slots (None = empty slot)
    failing: dict[str, int] = field(default_factory=dict)  # reading -> NVML error code it raises


def _raise(code: int) -> None:
    raise pynvml.NVMLError(code)  # NVMLError.__new__ picks the subclass, e.g. NVMLError_NotSupported


def stand_in_nvml(gpus: list[StandInGpu], init_error: int | None = None, driver: str = "575.57.08") -> types.ModuleType:
    module = types.ModuleType("pynvml_stand_in")
    for name in dir(pynvml):
        if name.startswith(("NVML_", "NVMLError")):
            setattr(module, name, getattr(pynvml, name))
    module.calls = []  # (reading, device uuid) for every device reading, to see what is asked again

    def device(handle: StandInGpu, reading: str) -> StandInGpu:
        module.calls.append((reading, handle.uuid))
        if reading in handle.failing:
            _raise(handle.failing[reading])
        return handle

    def nvmlInit() -> None:
        if init_error is not None:
            _raise(init_error)

    def nvmlDeviceGetUtilizationRates(handle: StandInGpu) -> pynvml.c_nvmlUtilization_t:
        gpu = device(handle, "utilization")
        if gpu.utilization is None or isinstance(gpu.utilization, int):
            _raise(pynvml.NVML_ERROR_NOT_SUPPORTED if gpu.utilization is None else gpu.utilization)
        rates = pynvml.c_nvmlUtilization_t()
        rates.gpu, rates.memory = gpu.utilization
        return rates

    def nvmlDeviceGetMemoryInfo(handle: StandInGpu, version: int | None = None) -> pynvml.c_nvmlMemory_t:
        gpu = device(handle, "memory")
        memory = pynvml.c_nvmlMemory_t()
        memory.total, memory.used = gpu.memory
        memory.free = memory.total - memory.used
        return memory

    def optional(reading: str, attribute: str):
        def read(handle: StandInGpu, *args: object) -> int:
            value = getattr(device(handle, reading), attribute)
            if value is None:
                _raise(pynvml.NVML_ERROR_NOT_SUPPORTED)
            return value

        return read

    def nvmlDeviceGetComputeRunningProcesses(handle: StandInGpu) -> list[types.SimpleNamespace]:
        gpu = device(handle, "processes")
        return [
            types.SimpleNamespace(pid=pid, usedGpuMemory=used, gpuInstanceId=0xFFFFFFFF, computeInstanceId=0xFFFFFFFF)
            for pid, used in gpu.processes
        ]

    def nvmlDeviceGetMigMode(handle: StandInGpu) -> list[int]:
        if not handle.mig_capable:
            _raise(pynvml.NVML_ERROR_NOT_SUPPORTED)
        enabled = pynvml.NVML_DEVICE_MIG_ENABLE if handle.mig is not None else pynvml.NVML_DEVICE_MIG_DISABLE
        return [enabled, enabled]

    def nvmlDeviceGetMigDeviceHandleByIndex(handle: StandInGpu, index: int) -> StandInGpu:
        instance = (handle.mig or [None] * (index + 1))[index]
        if instance is None:
            _raise(pynvml.NVML_ERROR_NOT_FOUND)
        return instance

    module.nvmlInit = nvmlInit
    module.nvmlShutdown = lambda: None
    module.nvmlSystemGetDriverVersion = lambda: driver
    module.nvmlDeviceGetCount = lambda: len(gpus)
    module.nvmlDeviceGetHandleByIndex = lambda index: gpus[index]
    module.nvmlDeviceGetUUID = lambda handle: handle.uuid
    module.nvmlDeviceGetName = lambda handle: handle.name
    module.nvmlDeviceGetUtilizationRates = nvmlDeviceGetUtilizationRates
    module.nvmlDeviceGetMemoryInfo = nvmlDeviceGetMemoryInfo
    module.nvmlDeviceGetPowerUsage = optional("power", "power_mw")
    module.nvmlDeviceGetTotalEnergyConsumption = optional("energy", "energy_mj")
    module.nvmlDeviceGetTemperatureV = optional("temperature", "temperature_c")
    module.nvmlDeviceGetClockInfo = optional("sm clock", "sm_clock_mhz")
    module.nvmlDeviceGetComputeRunningProcesses = nvmlDeviceGetComputeRunningProcesses
    module.nvmlDeviceGetMigMode = nvmlDeviceGetMigMode
    module.nvmlDeviceGetMaxMigDeviceCount = lambda handle: len(handle.mig or [])
    module.nvmlDeviceGetMigDeviceHandleByIndex = nvmlDeviceGetMigDeviceHandleByIndex
    return module
