"""Measure this CPU's rates for the time model (xmcfit.plan.time_model.DeviceRates), and cache them.

No table knows a CPU's speed at a given thread count (AMX, AVX-512 bf16, memory channels, a shared core),
so `xmcfit calibrate` times the trainer's own kinds of work with torch, a few seconds each: a GEMM the
size of a small encoder's (fp32 and bf16), an elementwise stream over buffers larger than the caches, an
embedding bag of short rows (the sparse classifier's products), and the launch of a tiny autograd op.
The rates are cached per CPU model, thread count and torch version in $XDG_CACHE_HOME/xmcfit/cpu_rates.json
(default ~/.cache/xmcfit), written atomically; `xmcfit plan --device cpu` and `xmcfit train` on the CPU
read them there.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from xmcfit.atomic import atomic_write_text
from xmcfit.errors import XmcfitError
from xmcfit.plan.time_model import DeviceRates

log = logging.getLogger(__name__)

CACHE_FILE = "cpu_rates.json"
GEMM_SHAPE = (1024, 384, 1536)
"""(m, k, n): 32 x 32 tokens through a 384-wide layer's 1536-wide FFN, the embedded encoder's largest GEMM."""
STREAM_NUMEL = 16 * 2**20
"""fp32 elements per stream buffer (64 MiB, larger than any CPU's last-level cache share)."""
BAG_SHAPE = (8192, 64, 384, 64)
"""(rows, fan-in, table rows, row length): a loss chunk's logits, fan-in 64 over d=384, batch 64."""
DEFAULT_SECONDS_PER_MEASURE = 2.0
"""Time spent per measurement; five of them keep `xmcfit calibrate` under 20 s on any machine."""


@dataclass(frozen=True)
class CpuCalibration:
    """One cache entry: the rates and what they were measured on."""

    cpu_model: str
    threads: int
    torch_version: str
    measured_at: str
    """ISO 8601 time of the measurement."""
    rates: DeviceRates

    @property
    def key(self) -> str:
        return cache_key(self.cpu_model, self.threads, self.torch_version)


def cache_key(cpu_model: str, threads: int, torch_version: str) -> str:
    return f"{cpu_model} | {threads} thread(s) | torch {torch_version}"


def cache_path(env: dict[str, str] | None = None) -> Path:
    """$XDG_CACHE_HOME/xmcfit/cpu_rates.json, else ~/.cache/xmcfit/cpu_rates.json."""
    env = dict(os.environ) if env is None else env
    root = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME", str(Path.home()))) / ".cache")
    return Path(root) / "xmcfit" / CACHE_FILE


def cpu_model_name() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine() or "unknown cpu"


def _timed_rate(run: Callable[[], None], work_per_run: float, budget_s: float) -> float:
    """Work per second of `run`: one warm-up call, then calls until `budget_s` is spent; the best third of
    the calls' rate (the least disturbed by other processes)."""
    run()
    durations = []
    deadline = time.perf_counter() + budget_s
    while time.perf_counter() < deadline or len(durations) < 3:
        tick = time.perf_counter()
        run()
        durations.append(time.perf_counter() - tick)
    durations.sort()
    best = durations[: max(1, len(durations) // 3)]
    return work_per_run / (sum(best) / len(best))


def measure_gemm(dtype_name: str, budget_s: float) -> float:
    """FLOP/s of an (m, k) x (k, n) matrix multiply in `dtype_name` (float32 or bfloat16)."""
    import torch

    m, k, n = GEMM_SHAPE
    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    out = torch.empty(m, n, dtype=dtype)
    return _timed_rate(lambda: torch.mm(a, b, out=out), 2.0 * m * k * n, budget_s)


def measure_stream(budget_s: float) -> float:
    """Bytes per second of an elementwise op reading two fp32 buffers and writing one (c = a + b)."""
    import torch

    a, b, c = (torch.ones(STREAM_NUMEL) for _ in range(3))
    return _timed_rate(lambda: torch.add(a, b, out=c), 3.0 * 4 * STREAM_NUMEL, budget_s)


def measure_gather(budget_s: float) -> float:
    """Bytes per second gathered by a weighted embedding bag of short rows (the sparse layer's logits)."""
    import torch
    import torch.nn.functional as F

    rows, fan_in, table_rows, width = BAG_SHAPE
    table = torch.randn(table_rows, width)
    indices = torch.randint(0, table_rows, (rows, fan_in), dtype=torch.int32)
    weights = torch.randn(rows, fan_in)
    return _timed_rate(lambda: F.embedding_bag(indices, table, per_sample_weights=weights, mode="sum"),
                       4.0 * rows * fan_in * width, budget_s)


def measure_op_overhead(budget_s: float) -> float:
    """Seconds per launch of a tiny op recorded by autograd (what dominates a step of small tensors)."""
    import torch

    x = torch.ones(8, requires_grad=True)
    n_ops = 1000

    def run() -> None:
        y = x
        for _ in range(n_ops):
            y = y * 1.0

    return 1.0 / _timed_rate(run, n_ops, budget_s)


def calibrate_cpu(threads: int, seconds_per_measure: float = DEFAULT_SECONDS_PER_MEASURE) -> CpuCalibration:
    """Measure the CPU at `threads` intra-op threads (set for the measurement, restored after)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        fp32 = measure_gemm("float32", seconds_per_measure)
        bf16 = measure_gemm("bfloat16", seconds_per_measure)
        stream = measure_stream(seconds_per_measure)
        gather = measure_gather(seconds_per_measure)
        op_s = measure_op_overhead(seconds_per_measure)
    finally:
        torch.set_num_threads(previous)
    model = cpu_model_name()
    when = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    rates = DeviceRates(name=f"cpu: {model}, {threads} thread(s) (calibrated {when[:10]})", kind="cpu",
                        matmul_16bit_flops_per_s=bf16, matmul_fp32_flops_per_s=fp32, memory_bytes_per_s=stream,
                        gather_bytes_per_s=gather, op_overhead_s=op_s, interconnect_bytes_per_s=0.0)
    return CpuCalibration(cpu_model=model, threads=threads, torch_version=torch.__version__, measured_at=when,
                          rates=rates)


def _read_cache(path: Path) -> dict[str, dict]:
    """The cache's entries; a missing file is empty, an unreadable one is ignored with a warning (it is
    only a cache: calibrating again rewrites it)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        log.warning("%s: ignoring an unreadable calibration cache (%s)", path, err)
        return {}
    entries = data.get("entries") if isinstance(data, dict) else None
    return entries if isinstance(entries, dict) else {}


def save_calibration(calibration: CpuCalibration, path: Path | None = None) -> Path:
    """Add (or replace) `calibration` in the cache file, atomically; the path written."""
    path = path or cache_path()
    entries = _read_cache(path)
    entries[calibration.key] = asdict(calibration)
    atomic_write_text(path, json.dumps({"entries": entries}, indent=2) + "\n")
    return path


def _from_entry(entry: dict) -> CpuCalibration | None:
    try:
        return CpuCalibration(**{**entry, "rates": DeviceRates(**entry["rates"])})
    except (TypeError, ValueError, KeyError):
        return None


def cached_calibration(threads: int, path: Path | None = None, torch_version: str | None = None) -> CpuCalibration | None:
    """The cached measurement of this CPU at `threads` threads (and this torch), or None."""
    if torch_version is None:
        import torch

        torch_version = torch.__version__
    entry = _read_cache(path or cache_path()).get(cache_key(cpu_model_name(), threads, torch_version))
    return _from_entry(entry) if isinstance(entry, dict) else None


def cached_calibration_any_torch(threads: int, path: Path | None = None) -> CpuCalibration | None:
    """The cached measurement of this CPU at `threads` threads, whatever torch measured it (the planner
    imports no torch); the newest when several torch versions measured it."""
    model = cpu_model_name()
    found = [c for c in map(_from_entry, _read_cache(path or cache_path()).values())
             if c is not None and c.cpu_model == model and c.threads == threads]
    return max(found, key=lambda c: c.measured_at) if found else None


def cpu_rates_for_plan(threads: int) -> DeviceRates:
    """The cached CPU rates at `threads` threads for `xmcfit plan --device cpu`; one XmcfitError line when
    this machine was never calibrated at that thread count."""
    found = cached_calibration_any_torch(threads)
    if found is None:
        raise XmcfitError(f"no CPU calibration for {threads} thread(s) in {cache_path()}: run "
                          f"`xmcfit calibrate --threads {threads}` first (under 20 s)")
    return found.rates
