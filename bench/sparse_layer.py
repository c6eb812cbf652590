"""Benchmark: FixedFanInLinear forward+backward vs a dense nn.Linear of the same shape, same run.

Prints a table (median of repeats after warm-up) with each pass's distance from its floor
(max of bytes / measured copy bandwidth and FLOPs / measured matmul peak), then one SUMMARY line.
CPU default: batch 64, d 384, L 200,000, k 32. GPU setting: --device cuda --dtype bf16 --gpu-setting
(batch 128, d 768, L 3,000,000, k 128). Peak extra memory: CUDA allocator peak on CUDA; on CPU the
growth of resident memory (sampled) while the pass runs, measured in a fresh subprocess per model.
"""

import argparse
import multiprocessing as mp
import os
import threading
import time

import torch
from torch import nn

from common import MIB, median_seconds

from xmcfit.sparse import FixedFanInLinear, dispatch
from xmcfit.sparse.layer import DEFAULT_CHUNK_SIZE

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def machine_peaks(device: torch.device, dtype: torch.dtype) -> tuple[float, float]:
    """(copy bandwidth bytes/s, matmul FLOP/s) measured here: a 256 MiB copy and a 2048^3 matmul."""
    src = torch.empty(64 * 2**20, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    t_copy = median_seconds(lambda: dst.copy_(src), device, 2, 5)
    a = torch.randn(2048, 2048, device=device).to(dtype)
    t_mm = median_seconds(lambda: a @ a, device, 2, 5)
    return 2 * src.numel() * 4 / t_copy, 2 * 2048**3 / t_mm


def build(kind: str, d: int, n_labels: int, fan_in: int, dtype, device, chunk_size: int = DEFAULT_CHUNK_SIZE):
    if kind == "sparse":
        return FixedFanInLinear(d, n_labels, fan_in, dtype=dtype, device=device, seed=0, chunk_size=chunk_size)
    return nn.Linear(d, n_labels, dtype=dtype, device=device)


def time_passes(kind, batch, d, n_labels, fan_in, dtype, device, warmup, repeats, chunk_size) -> dict:
    torch.manual_seed(0)
    model = build(kind, d, n_labels, fan_in, dtype, device, chunk_size)
    x = torch.randn(batch, d, dtype=dtype, device=device, requires_grad=True)
    grad = torch.randn(batch, n_labels, dtype=dtype, device=device)
    fwd = median_seconds(lambda: model(x), device, warmup, repeats)

    def fwd_bwd():
        out = model(x)
        out.backward(grad)
        x.grad = None
        for p in model.parameters():
            p.grad = None

    both = median_seconds(fwd_bwd, device, warmup, repeats)
    return {"fwd_s": fwd, "bwd_s": both - fwd, "fwd_bwd_s": both}


def peak_extra_bytes(kind, batch, d, n_labels, fan_in, dtype_name, device_name, chunk_size) -> int:
    """Peak memory above the model + inputs during one fwd+bwd (see module docstring)."""
    device, dtype = torch.device(device_name), DTYPES[dtype_name]
    torch.manual_seed(0)
    model = build(kind, d, n_labels, fan_in, dtype, device, chunk_size)
    x = torch.randn(batch, d, dtype=dtype, device=device, requires_grad=True)
    grad = torch.randn(batch, n_labels, dtype=dtype, device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        model(x).backward(grad)
        return torch.cuda.max_memory_allocated() - base
    model(x).backward(grad)  # warm-up: lazily built caches (transposed patterns) count as held, not extra
    x.grad = None
    for p in model.parameters():
        p.grad = None
    return _sampled_rss_peak(lambda: model(x).backward(grad))


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _sampled_rss_peak(fn) -> int:
    """Peak resident-set growth while fn runs, sampled every 0.5 ms by a thread (CPU only; glibc returns
    large blocks to the OS on free, so RSS follows the allocator closely for tensors of this size)."""
    base, peak, done = _rss_bytes(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes() - base)
            time.sleep(0.0005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    fn()
    done.set()
    sampler.join()
    return max(peak[0], _rss_bytes() - base)


def floors(kind, batch, d, n_labels, fan_in, value_bytes, index_bytes, bandwidth, flops) -> dict:
    """Lower bounds in seconds: max(bytes moved / bandwidth, FLOPs / matmul peak) for fwd and bwd."""
    act = batch * d * value_bytes
    out = batch * n_labels * value_bytes
    if kind == "sparse":
        weight = n_labels * fan_in * (value_bytes + index_bytes)
        fl = 2 * batch * n_labels * fan_in
    else:
        weight = n_labels * d * value_bytes
        fl = 2 * batch * n_labels * d
    fwd = max((weight + act + out) / bandwidth, fl / flops)
    # bwd: read grad_out, weight, x; write grad_x and grad_weight; two products.
    bwd = max((out + weight + act + act + weight) / bandwidth, 2 * fl / flops)
    return {"fwd_s": fwd, "bwd_s": bwd, "fwd_bwd_s": fwd + bwd}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=sorted(DTYPES))
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--in-features", type=int, default=384)
    parser.add_argument("--labels", type=int, default=200_000)
    parser.add_argument("--fan-in", type=int, default=32)
    parser.add_argument("--gpu-setting", action="store_true", help="batch 128, d 768, L 3,000,000, k 128")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE, help="Label rows per sparse chunk.")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        # OpenMP threads spin-wait: on a CPU shared with other jobs, 2 threads can be several times slower
        # than 1 (measured with the earlier CSR products); 1 thread is then the honest setting.
        torch.set_num_threads(args.threads)
    if args.gpu_setting:
        args.batch, args.in_features, args.labels, args.fan_in = 128, 768, 3_000_000, 128
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    shape = (args.batch, args.in_features, args.labels, args.fan_in)
    value_bytes = torch.finfo(dtype).bits // 8
    index_bytes = 2 if args.in_features <= 32767 else 4
    bandwidth, flops = machine_peaks(device, dtype)
    backend = dispatch.backend_name(device)
    rows = {}
    for kind in ("sparse", "dense"):
        rows[kind] = time_passes(kind, *shape, dtype, device, args.warmup, args.repeats, args.chunk_size)
        rows[kind]["floor"] = floors(kind, *shape, value_bytes, index_bytes, bandwidth, flops)
        if not args.skip_memory:
            ctx = mp.get_context("spawn")
            with ctx.Pool(1) as pool:
                rows[kind]["peak_extra_bytes"] = pool.apply(
                    peak_extra_bytes, (kind, *shape, args.dtype, args.device, args.chunk_size))
    print(f"device={device} dtype={args.dtype} backend={backend} batch={shape[0]} d={shape[1]} L={shape[2]} "
          f"k={shape[3]} chunk={args.chunk_size} threads={torch.get_num_threads()} load_avg_1min={os.getloadavg()[0]:.1f}")
    print(f"measured copy bandwidth {bandwidth / 1e9:.1f} GB/s, matmul peak {flops / 1e9:.1f} GFLOP/s")
    print(f"{'model':8} {'pass':9} {'ms':>9} {'floor ms':>9} {'x floor':>8}")
    for kind, row in rows.items():
        for p in ("fwd_s", "bwd_s", "fwd_bwd_s"):
            print(f"{kind:8} {p[:-2]:9} {row[p] * 1e3:9.2f} {row['floor'][p] * 1e3:9.2f} "
                  f"{row[p] / row['floor'][p]:8.1f}")
        if "peak_extra_bytes" in row:
            print(f"{kind:8} peak extra memory {row['peak_extra_bytes'] / MIB:.1f} MiB")
    speedup = rows["dense"]["fwd_bwd_s"] / rows["sparse"]["fwd_bwd_s"]
    mem = {k: rows[k].get("peak_extra_bytes", -1) / MIB for k in rows}
    print(f"SUMMARY backend={backend} sparse_fwd_bwd_ms={rows['sparse']['fwd_bwd_s'] * 1e3:.2f} "
          f"dense_fwd_bwd_ms={rows['dense']['fwd_bwd_s'] * 1e3:.2f} speedup={speedup:.2f} "
          f"sparse_x_floor={rows['sparse']['fwd_bwd_s'] / rows['sparse']['floor']['fwd_bwd_s']:.1f} "
          f"sparse_peak_extra_mib={mem['sparse']:.1f} dense_peak_extra_mib={mem['dense']:.1f}")


if __name__ == "__main__":
    main()
