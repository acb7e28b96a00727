"""The ONE narrow interface over NVML (nvidia-ml-py / pynvml). Nothing else in Spaceyard imports pynvml."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import pynvml

NO_DRIVER_MESSAGE = "no NVIDIA driver found (NVML library not loadable): this node has no GPU to meter"


class NvmlUnavailable(RuntimeError):
    """NVML cannot be used on this node; str() is a one-line message for the operator."""


@dataclass(frozen=True)
class GpuReading:
    uuid: str  # "GPU-5f1b…", stable across reboots, what runtimes and device plugins name GPUs by
    index: int  # NVML index, the one `nvidia-smi` shows and `--gpus device=0` means
    model: str  # as NVML names it, e.g. "NVIDIA H100 80GB HBM3", "NVIDIA A10G"
    utilization_pct: float
    memory_used_bytes: int
    memory_total_bytes: int
    power_watts: float | None  # None where the board does not report power draw


class GpuReader(Protocol):
    def devices(self) -> list[GpuReading]: ...


class NvmlReader:
    """Reads the node's GPUs through NVML. Construction fails with NvmlUnavailable where there is no driver."""

    def __init__(self) -> None:
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError_LibraryNotFound as e:
            raise NvmlUnavailable(NO_DRIVER_MESSAGE) from e
        except pynvml.NVMLError_DriverNotLoaded as e:
            raise NvmlUnavailable(
                "NVIDIA driver not loaded (NVML found, kernel module missing): this node has no GPU to meter"
            ) from e
        except pynvml.NVMLError as e:
            raise NvmlUnavailable(f"NVML failed to initialise: {e}") from e

    def devices(self) -> list[GpuReading]:
        try:
            return self._read()
        except pynvml.NVMLError as e:  # e.g. a GPU fell off the bus: the agent logs it and retries later
            raise NvmlUnavailable(f"NVML read failed: {e}") from e

    def _read(self) -> list[GpuReading]:
        readings = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            readings.append(
                GpuReading(
                    uuid=_text(pynvml.nvmlDeviceGetUUID(handle)),
                    index=index,
                    model=_text(pynvml.nvmlDeviceGetName(handle)),
                    utilization_pct=float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu),
                    memory_used_bytes=int(memory.used),
                    memory_total_bytes=int(memory.total),
                    power_watts=_power_watts(handle),
                )
            )
        return readings

    def close(self) -> None:
        pynvml.nvmlShutdown()


def _power_watts(handle: object) -> float | None:
    try:
        return pynvml.nvmlDeviceGetPowerUsage(handle) / 1000  # NVML reports milliwatts
    except pynvml.NVMLError_NotSupported:
        return None


def _text(value: str | bytes) -> str:
    # Older pynvml releases return bytes, newer ones str.
    return value.decode() if isinstance(value, bytes) else value


class RecordedReader:
    """Replays readings recorded from NVML, for tests and demos on machines without a GPU.

    The file is {"frames": [[reading, ...], ...]} with GpuReading's fields; each devices() call returns the next
    frame, wrapping around, so a demo agent keeps producing samples.
    """

    def __init__(self, path: Path) -> None:
        raw = json.loads(Path(path).read_text())
        self._frames = [[GpuReading(**r) for r in frame] for frame in raw["frames"]]
        if not self._frames:
            raise ValueError(f"{path}: recording has no frames")
        self._next = 0

    def devices(self) -> list[GpuReading]:
        frame = self._frames[self._next % len(self._frames)]
        self._next += 1
        return list(frame)


def record(reader: GpuReader, frames: int) -> dict:
    """A recording of `frames` successive readings, in RecordedReader's format."""
    return {"frames": [[asdict(r) for r in reader.devices()] for _ in range(frames)]}
