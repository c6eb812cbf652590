"""Benchmark: one SET rewiring of a FixedFanInLinear (fraction mode, 25% of each row).

CPU default: L 200,000 x k 32, d 384 (target: under 1 s). GPU setting: --device cuda --gpu-setting
(L 3,000,000 x k 128, d 768). Prints a table (median of repeats after warm-up), then one SUMMARY line.
"""

import argparse
import os
import statistics
import time

import torch

from common import MIB

from xmcfit.sparse import FixedFanInLinear, SETRewirer
from xmcfit.sparse.rewire import DEFAULT_CHUNK_ROWS, rewire_workspace_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--labels", type=int, default=200_000)
    parser.add_argument("--fan-in", type=int, default=32)
    parser.add_argument("--in-features", type=int, default=384)
    parser.add_argument("--fraction", type=float, default=0.25)
    parser.add_argument("--chunk-rows", type=int, default=DEFAULT_CHUNK_ROWS)
    parser.add_argument("--gpu-setting", action="store_true", help="L 3,000,000, k 128, d 768")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.gpu_setting:
        args.labels, args.fan_in, args.in_features = 3_000_000, 128, 768
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    layer = FixedFanInLinear(args.in_features, args.labels, args.fan_in, device=device, seed=0)
    optimizer = torch.optim.AdamW([layer.values], lr=1e-3)
    layer.values.grad = torch.randn_like(layer.values)
    optimizer.step()  # creates exp_avg / exp_avg_sq, which rewiring permutes and zeroes
    rewirer = SETRewirer(layer, optimizer, lambda step: args.fraction, interval=1, end_step=10**9,
                         seed=0, chunk_rows=args.chunk_rows)
    times, stats = [], None
    for i in range(args.warmup + args.repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        stats = rewirer.step(i + 1)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    workspace = rewire_workspace_bytes(args.chunk_rows, args.in_features, args.fan_in)
    print(f"device={device} L={args.labels} k={args.fan_in} d={args.in_features} fraction={args.fraction} "
          f"chunk_rows={args.chunk_rows} threads={torch.get_num_threads()} load_avg_1min={os.getloadavg()[0]:.1f}")
    print(f"{'median s':>9} {'min s':>7} {'moved':>10} {'mean|w| pruned':>15} {'workspace MiB':>14}")
    print(f"{seconds:9.3f} {min(times):7.3f} {stats.n_moved:10d} {stats.mean_abs_pruned:15.5f} "
          f"{workspace / MIB:14.1f}")
    print(f"SUMMARY rewire_s={seconds:.3f} labels={args.labels} fan_in={args.fan_in} n_moved={stats.n_moved} "
          f"workspace_mib={workspace / MIB:.1f}")


if __name__ == "__main__":
    main()
