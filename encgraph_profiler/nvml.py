"""The one gateway to NVML. Anything NVML cannot tell becomes None (shown as n/a), never a crash."""

from __future__ import annotations

import os


class Nvml:
    """Device and per-process memory for one GPU, found by PCI bus id so that it is the same
    device that torch uses whatever CUDA_VISIBLE_DEVICES says."""

    def __init__(self, pci_bus_id: str | None):
        self.problem: str | None = None
        self._handle = None
        try:
            import pynvml

            self._nvml = pynvml
            pynvml.nvmlInit()
            if pci_bus_id:
                self._handle = pynvml.nvmlDeviceGetHandleByPciBusId(pci_bus_id)
            else:
                self._handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        except Exception as err:
            self.problem = f"NVML is not available ({err}); NVML columns show n/a"

    @property
    def available(self) -> bool:
        return self._handle is not None

    def _query(self, fn):
        if self._handle is None:
            return None
        try:
            return fn()
        except Exception:
            return None

    def driver_version(self) -> str | None:
        def read():
            version = self._nvml.nvmlSystemGetDriverVersion()
            return version.decode() if isinstance(version, bytes) else version

        return self._query(read)

    def process_used_bytes(self) -> int | None:
        """This process's device memory, or None where the container hides per-process figures."""

        def read():
            pid = os.getpid()
            for proc in self._nvml.nvmlDeviceGetComputeRunningProcesses(self._handle):
                if proc.pid == pid and proc.usedGpuMemory is not None:
                    return int(proc.usedGpuMemory)
            return None

        return self._query(read)


def device_count() -> int | None:
    """GPUs on this host as NVML counts them (without initialising CUDA), or None without NVML."""
    try:
        import pynvml

        pynvml.nvmlInit()
        return int(pynvml.nvmlDeviceGetCount())
    except Exception:
        return None


def compute_capability() -> tuple[int, int] | None:
    """The first GPU's CUDA compute capability as NVML reports it (without initialising CUDA), or
    None without NVML or a GPU."""
    try:
        import pynvml

        pynvml.nvmlInit()
        major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(pynvml.nvmlDeviceGetHandleByIndex(0))
        return int(major), int(minor)
    except Exception:
        return None
