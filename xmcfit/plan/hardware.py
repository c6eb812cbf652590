"""The GPUs this machine can see, through pynvml (NVIDIA's management library; no CUDA context, no torch)."""

from __future__ import annotations

from dataclasses import dataclass

from xmcfit.errors import XmcfitError


class NoGpuError(XmcfitError):
    """No NVIDIA driver or no GPU: the message says so in one line."""


@dataclass(frozen=True)
class GpuInfo:
    """One visible GPU as pynvml reports it."""

    index: int
    name: str
    total_bytes: int
    free_bytes: int
    compute_capability: str
    """"major.minor"."""

    @property
    def bf16(self) -> bool:
        """bf16 tensor cores from compute capability 8.0 (Ampere) on."""
        return int(self.compute_capability.split(".")[0]) >= 8


def query_gpus() -> list[GpuInfo]:
    """All visible GPUs; raises NoGpuError (one line) when there is no driver or no device."""
    try:
        import pynvml
    except ImportError:
        raise NoGpuError("no GPU query possible: nvidia-ml-py (pynvml) is not installed") from None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as err:
        raise NoGpuError(f"no NVIDIA driver found ({err}); give --gpu PROFILE or --gpu-mem SIZE to plan") from None
    try:
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
            major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
            name = pynvml.nvmlDeviceGetName(handle)
            gpus.append(GpuInfo(index=index, name=name.decode() if isinstance(name, bytes) else name,
                                total_bytes=int(mem.total), free_bytes=int(mem.free),
                                compute_capability=f"{major}.{minor}"))
    except pynvml.NVMLError as err:
        raise NoGpuError(f"GPU query failed ({err})") from None
    finally:
        pynvml.nvmlShutdown()
    if not gpus:
        raise NoGpuError("the NVIDIA driver reports no GPU; give --gpu PROFILE or --gpu-mem SIZE to plan")
    return gpus


def gpu_at(index: int) -> GpuInfo:
    """The GPU with this index (`--gpu-index`), or a one-line error."""
    gpus = query_gpus()
    if not 0 <= index < len(gpus):
        raise XmcfitError(f"--gpu-index {index}: only {len(gpus)} GPU(s) visible (0..{len(gpus) - 1})")
    return gpus[index]
