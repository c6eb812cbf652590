"""The time model (xmcfit.plan.time_model) against measured step times, on the CPU (issue 20).

Each configuration is planned through the library (`xmcfit plan --data ...` with pins), trained for a few
steps through xmcfit.train.loop.run_training (what `xmcfit train` runs), and its median steady-state step
time (the first WARMUP_STEPS dropped) is compared with the prediction from this CPU's calibrated rates
(xmcfit.calibrate, measured at the start at the same thread count). Configurations: text (EURLEX57K
titles, 32 tokens, the embedded all-MiniLM-L6-v2, 4,271 labels; a synthetic text set of 52,946 labels) and
bag-of-words (citeulike-t, 52,946 labels), dense and fan-in 256 / 64 / 32, with and without the
intermediate layer, the auxiliary head, the TF-IDF side and gradient checkpointing.

    taskset -c 1 env OMP_NUM_THREADS=1 python bench/time_model.py [--threads 1] [--steps 20]
        [--data-root ../shared/data] [--only NAME,NAME] [--limit 2000]

Prints one table (predicted and measured seconds per step, error, the dominant phase), then
`SUMMARY configs=.. max_abs_err_pct=.. within_25pct=..` last. The GPU half of this check is the
time_model part of bench/gpu_check.py, which calls `measure_config` below.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from common import REPO_ROOT

WARMUP_STEPS = 3
"""Steps dropped before the median: the first builds the sparse layer's cached patterns and warms allocators."""
DEFAULT_STEPS = 15
QUICK_SECONDS = 0.4
PROBE_SECONDS = 0.05


@dataclass(frozen=True)
class Config:
    name: str
    data: str
    """"eurlex" (titles, 4,271 labels), "citeulike" (bag-of-words, 52,946 labels) or "synth52k" (text)."""
    pins: dict[str, Any] = field(default_factory=dict)


TEXT = {"precision": "fp32", "micro_batch": 32, "tfidf": False, "aux_clusters": 0, "intermediate_dim": 0,
        "gradient_checkpointing": False}
BOW = {"precision": "fp32", "micro_batch": 64, "tfidf": False, "aux_clusters": 0, "intermediate_dim": 0}
CONFIGS = [
    Config("text dense", "eurlex", {**TEXT, "classifier": "dense"}),
    Config("text k256", "eurlex", {**TEXT, "fan_in": 256}),
    Config("text k64 +aux", "eurlex", {**TEXT, "fan_in": 64, "aux_clusters": 64}),
    Config("text k32 +inter4096", "eurlex", {**TEXT, "fan_in": 32, "intermediate_dim": 4096}),
    Config("text k64 ckpt", "eurlex", {**TEXT, "fan_in": 64, "gradient_checkpointing": True}),
    Config("text dense ckpt +aux", "eurlex", {**TEXT, "classifier": "dense", "gradient_checkpointing": True,
                                              "aux_clusters": 64}),
    Config("text k256 +tfidf", "eurlex", {**TEXT, "fan_in": 256, "tfidf": True}),
    Config("text dense bf16", "eurlex", {**TEXT, "classifier": "dense", "precision": "bf16_amp"}),
    Config("text 52k k64", "synth52k", {**TEXT, "fan_in": 64}),
    Config("bow dense", "citeulike", {**BOW, "classifier": "dense"}),
    Config("bow k256", "citeulike", {**BOW, "fan_in": 256}),
    Config("bow k64 +aux", "citeulike", {**BOW, "fan_in": 64, "aux_clusters": 512}),
    Config("bow k32 +inter4096", "citeulike", {**BOW, "fan_in": 32, "intermediate_dim": 4096}),
    Config("bow k64 +tfidf", "citeulike", {**BOW, "fan_in": 64, "tfidf": True}),
]


def workload_of(data_path: Path, options: dict[str, Any]):
    """The training split's points and (bag-of-words) nonzeros per point, as the trainer will read them."""
    from xmcfit.data import load_split
    from xmcfit.train.timing import workload_from_dataset

    ds = load_split(str(data_path), "train", text_fields=options.get("text_fields"), limit=options.get("limit"))
    return workload_from_dataset(ds)


class _Enough(Exception):
    """Raised from on_step after the last measured step, before any checkpoint is written."""


def measure_config(plan, data_path: Path, options: dict[str, Any], device, run_dir: Path, n_steps: int,
                   probe: Callable[[], Any] | None = None) -> dict:
    """Train `plan` for WARMUP_STEPS + n_steps steps through run_training; the measured step times (seconds),
    and what `probe` (called after each measured step, outside its time) returned each time."""
    from xmcfit.rundir import DataOptions, prepare_run_dir
    from xmcfit.train.data import load_train_data
    from xmcfit.train.loop import run_training

    shutil.rmtree(run_dir, ignore_errors=True)
    opts = DataOptions(str(data_path), **options)
    prepare_run_dir(plan, run_dir, opts)
    data = load_train_data(plan, run_dir, opts, resume=False)
    seconds, probes = [], []

    def on_step(stats) -> None:
        if stats.step > WARMUP_STEPS:
            seconds.append(stats.step_seconds)
            if probe is not None:
                probes.append(probe())
        if stats.step >= WARMUP_STEPS + n_steps:
            raise _Enough

    try:
        run_training(plan, run_dir, data, device=str(device), on_step=on_step, log_every=1000)
    except _Enough:
        pass
    shutil.rmtree(run_dir, ignore_errors=True)
    return {"median_s": statistics.median(seconds), "p10_s": _quantile(seconds, 0.1),
            "p90_s": _quantile(seconds, 0.9), "n_steps": len(seconds), "probes": probes}


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def probe_rates() -> dict[str, float]:
    """This CPU's GEMM (fp32, bf16), stream and gather rates right now, in about 0.2 s: taken after every
    measured step, so the rates a configuration is predicted from are the ones its steps ran at."""
    from xmcfit.calibrate import measure_gather, measure_gemm, measure_stream

    return {"matmul_fp32_flops_per_s": measure_gemm("float32", PROBE_SECONDS),
            "matmul_16bit_flops_per_s": measure_gemm("bfloat16", PROBE_SECONDS),
            "memory_bytes_per_s": measure_stream(PROBE_SECONDS),
            "gather_bytes_per_s": measure_gather(PROBE_SECONDS)}


def rates_during(base, probes: list[dict[str, float]]):
    """`base` with its GEMM and stream rates replaced by their medians over `probes`."""
    from dataclasses import replace

    return replace(base, **{k: statistics.median(p[k] for p in probes) for k in probes[0]}) if probes else base


def quick_rates(threads: int):
    """This CPU's rates measured now (about 2 s): a 2-core machine shared with other work changes speed
    from minute to minute (its GEMM rate moved between 30 and 95 GFLOP/s on one core while another process
    ran on the other), so each configuration is predicted from rates measured just before and after it."""
    from xmcfit.calibrate import calibrate_cpu

    return calibrate_cpu(threads, QUICK_SECONDS).rates


def compare(plan, rates, workload, measured: dict) -> dict:
    """The prediction for `plan` on `rates` beside `measured`."""
    from xmcfit.plan.time_model import predict_plan_time

    est = predict_plan_time(plan, rates, workload)
    err = 100.0 * (est.step_seconds - measured["median_s"]) / measured["median_s"]
    return {**measured, "predicted_s": est.step_seconds, "err_pct": err, "dominant_phase": est.dominant_phase,
            "phase_s": est.phase_seconds}


def _datasets(root: Path, work: Path, limit: int) -> dict[str, tuple[Path, dict[str, Any]]]:
    from xmcfit.data.synth import write_synthetic

    synth = work / "synth52k"
    if not synth.exists():
        write_synthetic(synth, n_train=limit, n_test=200, n_labels=52_946, seed=0, words_per_text=32)
    return {"eurlex": (root / "EURLEX57K", {"text_fields": ("title",), "limit": limit}),
            "citeulike": (root / "citeulike-t", {"limit": limit}),
            "synth52k": (synth, {"limit": limit})}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="Steps measured per configuration.")
    parser.add_argument("--data-root", default=str(REPO_ROOT.parent / "shared" / "data"))
    parser.add_argument("--limit", type=int, default=2000, help="Training points read per dataset.")
    parser.add_argument("--only", default="", help="Comma-separated configuration names.")
    args = parser.parse_args(argv)

    import torch

    from gpu_check import plan_for
    from xmcfit.calibrate import calibrate_cpu

    root = Path(args.data_root)
    if not (root / "EURLEX57K").is_dir() or not (root / "citeulike-t").is_dir():
        print(f"no EURLEX57K / citeulike-t under {root}: nothing to measure")
        return 0
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    rates = calibrate_cpu(args.threads).rates
    torch.set_num_threads(args.threads)
    print(f"calibrated at the start: {_rates_line(rates)}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="xmcfit-time-model-"))
    wanted = {n.strip() for n in args.only.split(",") if n.strip()}
    rows = []
    try:
        datasets = _datasets(root, work, args.limit)
        workloads = {key: workload_of(path, opts) for key, (path, opts) in datasets.items()}
        for config in CONFIGS:
            if wanted and config.name not in wanted:
                continue
            path, opts = datasets[config.data]
            seq_len = 32 if config.data != "citeulike" else None
            plan = plan_for(path, "64G", seq_len=seq_len, batch=config.pins["micro_batch"], **config.pins)
            tick = time.monotonic()
            base = quick_rates(args.threads)  # the op launch time; the other rates come from the probes
            measured = measure_config(plan, path, opts, torch.device("cpu"), work / "run", args.steps, probe_rates)
            now = rates_during(base, measured.pop("probes"))
            rows.append({"name": config.name, **compare(plan, now, workloads[config.data], measured),
                         "gemm_gflops": now.matmul_fp32_flops_per_s / 1e9, "stream_gbs": now.memory_bytes_per_s / 1e9,
                         "gather_gbs": now.gather_bytes_per_s / 1e9,
                         "wall_s": time.monotonic() - tick})
            print(_row_line(rows[-1]), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_table(rows, rates, args)
    return 0


def _row_line(r: dict) -> str:
    return (f"| {r['name']} | {r['predicted_s']:.3f} | {r['median_s']:.3f} ({r['p10_s']:.3f}-{r['p90_s']:.3f}) | "
            f"{r['err_pct']:+.1f} | {r['dominant_phase']} ({r['phase_s'][r['dominant_phase']]:.3f} s) | "
            f"{r['gemm_gflops']:.0f} / {r['stream_gbs']:.1f} / {r['gather_gbs']:.0f} |")


def _rates_line(rates) -> str:
    return (f"{rates.name}; GEMM fp32 {rates.matmul_fp32_flops_per_s / 1e9:.0f} GFLOP/s, bf16 "
            f"{rates.matmul_16bit_flops_per_s / 1e9:.0f} GFLOP/s, stream {rates.memory_bytes_per_s / 1e9:.1f} GB/s, "
            f"gather {rates.gather_bytes_per_s / 1e9:.1f} GB/s, op {rates.op_overhead_s * 1e6:.1f} us")


def print_table(rows: list[dict], rates, args) -> None:
    print(f"\nmachine at the start: {_rates_line(rates)}; torch threads {args.threads}")
    print("| configuration | predicted s/step | measured median s/step (p10-p90) | error % | dominant phase | "
          "GEMM GFLOP/s / stream GB/s / gather GB/s during it |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(_row_line(r))
    print("(GEMM / stream / gather: the medians of the probes taken after each measured step, what the row is predicted with)")
    worst = max((abs(r["err_pct"]) for r in rows), default=0.0)
    within = sum(abs(r["err_pct"]) <= 25 for r in rows)
    print(f"SUMMARY configs={len(rows)} max_abs_err_pct={worst:.1f} within_25pct={within}/{len(rows)}")


if __name__ == "__main__":
    sys.exit(main())
