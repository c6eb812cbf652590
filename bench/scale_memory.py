"""The memory model at 10^5 to 3 x 10^6 labels, measured on this CPU: predicted vs measured peak, step time.

For each configuration of a fixed grid (labels L, fan-in k, classifier dtype and optimizer, sparse or
dense) the script writes a synthetic bag-of-words dataset with L labels (XMC text format, Zipf label
frequencies, label-specific features), plans it with `xmcfit plan --data ...` (every knob pinned) and
trains it for a few optimizer steps (one epoch) through the fixed-feature path with
`xmcfit.train.loop.run_training`, each configuration in its own process so that peaks do not mix.

  measured   the process's peak resident set during the training steps (VmHWM, reset through
             /proc/self/clear_refs once the data is loaded) minus its resident set at that moment, i.e.
             before the model is built. glibc's mmap threshold is pinned (MMAP_THRESHOLD below), so freed
             tensors leave the resident set; --glibc-default reruns configurations under glibc's default.
  runtime    the resident set the process keeps once the run is over and its model, optimizer and
             activations are freed: library code paged in, thread pools, allocator bookkeeping. Not a
             tensor; the CPU's counterpart of the CUDA context that GPU plans price.
  predicted  the planner's memory model for the same plan priced for a CPU run (`Layout.on_cpu`: torch
             sparse backend and its pattern cache, single-tensor optimizers, no CUDA context, no caching
             allocator margin) + runtime. err % = predicted / measured - 1.
  persistent the terms the trainer measures exactly (memory.json `measured_terms_bytes`: weights, indices,
             optimizer state, the pattern cache) against the same terms of the model; transient = the rest
             of the peak (measured: peak - runtime - persistent).
Configurations whose CPU prediction exceeds --limit-gib are skipped, and said so.

    python bench/scale_memory.py [--out runs/scale_memory] [--steps 6] [--limit-gib 14]
                                 [--labels 100000,1000000,3000000] [--only NAME ...]
                                 [--glibc-default NAME ...] [--json-out FILE]
    python bench/scale_memory.py --lowprec-probe    # the pure-bf16 optimizers' workspace per element

Prints the memory table, the step times (CPU seconds of one thread per optimizer step: the cores are shared, so
wall time would measure the neighbours), their growth with L, then one `SUMMARY ...` line. The L = 3 x 10^6
rows take 10 to 20 CPU minutes each.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from common import GIB, MIB, REPO_ROOT, SEED

BATCH = 128
N_FEATURES = 16384
"""Bag-of-words input dimension: the encoder (EmbeddingBag 16,384 x 512) stays small beside the classifier."""
REWIRE_EVERY = 2
"""Rewire at step 2 (the schedule ends at round(0.66 x 5 steps) = 3), so the rewiring phase is inside the run."""
THREADS = 1
"""torch threads in the training processes. The 2 cores are shared with other jobs: OpenMP threads that
spin-wait make 2-thread wall times meaningless there, so steps are timed as CPU seconds of one thread."""
MMAP_THRESHOLD = 1 << 20
"""glibc's mmap threshold pinned in the training processes (MALLOC_MMAP_THRESHOLD_): every block of 1 MiB or
more is its own mapping, returned to the OS when freed, so the resident set follows the live tensors. With
glibc's default (a threshold that rises to 32 MiB after the first large free) freed blocks below it stay in
the heap; --glibc-default NAME measures that too."""


@dataclass(frozen=True)
class Config:
    """One row of the grid: what `xmcfit plan` is told to pin."""

    name: str
    n_labels: int
    kind: str  # "sparse" | "dense"
    fan_in: int = 0
    value_dtype: str = "float32"
    optimizer: str = "adamw"
    aux_clusters: int = 0
    tfidf: bool = False
    """The TF-IDF side (a fan-in TFIDF_FAN_IN scorer over the N_FEATURES input words) beside the classifier."""

    def plan_flags(self) -> list[str]:
        flags = ["--precision", "fp32", "--batch", str(BATCH), "--micro-batch", str(BATCH),
                 "--aux-clusters", str(self.aux_clusters)]
        flags += ["--tfidf", "--tfidf-fan-in", str(TFIDF_FAN_IN)] if self.tfidf else ["--no-tfidf"]
        if self.kind == "dense":
            return flags + ["--classifier", "dense"]
        return flags + ["--fan-in", str(self.fan_in), "--classifier-dtype", self.value_dtype,
                        "--classifier-optimizer", self.optimizer, "--rewire-every", str(REWIRE_EVERY)]


SHAPES = (("sparse", 32, "float32", "adamw"), ("sparse", 64, "bfloat16", "adamw"), ("sparse", 128, "float32", "sgd"),
          ("sparse", 128, "bfloat16", "sgd"), ("sparse", 256, "float32", "adamw"), ("sparse", 256, "bfloat16", "adamw"),
          ("dense", 0, "float32", "adamw"))
"""Every shape at L = 10^6: each axis (fan-in 32 to 256, fp32 and bf16 values, AdamW and SGD, sparse and dense),
not the full product (16 sparse runs per L, several CPU minutes each). At the other L the shapes in
SHAPES_AT_EVERY_L, so step time can be followed across L; at 3M also those predicted over the limit, which are
listed as skipped."""
SHAPES_AT_EVERY_L = {("sparse", 32, "float32", "adamw"), ("sparse", 64, "bfloat16", "adamw"),
                     ("sparse", 128, "float32", "sgd"), ("dense", 0, "float32", "adamw")}
FULL_GRID_L = 1_000_000


TFIDF_FAN_IN = 64
"""Words per label of the TF-IDF side in the rows that have it (the planner's default)."""
TFIDF_SHAPES = (("sparse", 64, "bfloat16", "adamw"), ("dense", 0, "float32", "adamw"))
"""Shapes measured again with the TF-IDF side at the smallest L, and the first at 10^6 (the side's terms
grow with L: values, indices and AdamW state per label, and the (batch, words) TF-IDF input)."""


def _tag(n_labels: int) -> str:
    return f"{n_labels // 1_000_000}M" if n_labels % 1_000_000 == 0 else f"{n_labels // 1000}k"


def grid(labels: list[int]) -> list[Config]:
    """SHAPES at every L, plus one run with the auxiliary head on (512 clusters) at the smallest L."""
    rows = []
    for n_labels in labels:
        for kind, k, dtype, opt in SHAPES:
            shape = (kind, k, dtype, opt)
            if n_labels < FULL_GRID_L and shape not in SHAPES_AT_EVERY_L:
                continue
            if n_labels > FULL_GRID_L and shape == ("sparse", 128, "bfloat16", "sgd"):
                continue  # bf16 SGD is covered at 10^6; at 3M it would cost another 20 CPU minutes
            short = "dense" if kind == "dense" else f"k{k}-{'fp32' if dtype == 'float32' else 'bf16'}-{opt}"
            rows.append(Config(f"{_tag(n_labels)}-{short}", n_labels, kind, k, dtype, opt))
    smallest = min(labels)
    rows.append(Config(f"{_tag(smallest)}-k128-fp32-adamw-aux512", smallest, "sparse", 128, "float32", "adamw", 512))
    for n_labels, shapes in ((smallest, TFIDF_SHAPES), (FULL_GRID_L, TFIDF_SHAPES[:1])):
        if n_labels not in labels and n_labels != smallest:
            continue
        for kind, k, dtype, opt in shapes:
            short = "dense" if kind == "dense" else f"k{k}-{'fp32' if dtype == 'float32' else 'bf16'}-{opt}"
            rows.append(Config(f"{_tag(n_labels)}-{short}-tfidf", n_labels, kind, k, dtype, opt, tfidf=True))
    return rows


# -- synthetic bag-of-words data ------------------------------------------------------------------------


def write_bow_dataset(out_dir: Path, n_labels: int, n_train: int, n_test: int, n_features: int, seed: int) -> None:
    """XMC text format (`N F L` header, `l1,l2 f:v ...` lines) in out_dir/synth_{train,test}.txt.

    Label popularity is Zipf (p_l ∝ 1/(l+1)), drawn by inverse CDF so 3M labels cost one cumulative sum;
    1 + Poisson(2) labels per point (at most 8). Each label owns 3 features (a multiplicative hash of its
    id); a point holds 2 of each of its labels' features plus Zipf-distributed noise features up to 24.
    """
    rng = np.random.default_rng(seed)
    label_cdf = np.cumsum(1.0 / np.arange(1, n_labels + 1))
    label_cdf /= label_cdf[-1]
    noise_cdf = np.cumsum(1.0 / np.arange(1, n_features + 1))
    noise_cdf /= noise_cdf[-1]
    out_dir.mkdir(parents=True, exist_ok=True)
    for split, n_points in (("train", n_train), ("test", n_test)):
        lines = [f"{n_points} {n_features} {n_labels}"]
        for _ in range(n_points):
            n_pos = min(8, 1 + int(rng.poisson(2.0)))
            labels = np.unique(np.minimum(np.searchsorted(label_cdf, rng.random(n_pos)), n_labels - 1))
            owned = (labels[:, None] * 2654435761 + np.arange(3)[None, :] * 40503) % n_features  # (n_pos, 3)
            signal = owned[np.arange(len(labels))[:, None], rng.integers(0, 3, size=(len(labels), 2))].ravel()
            noise = np.minimum(np.searchsorted(noise_cdf, rng.random(max(0, 24 - signal.size))), n_features - 1)
            feats, counts = np.unique(np.concatenate([signal, noise]), return_counts=True)
            values = (1.0 + np.log(counts)) / np.sqrt(np.sum((1.0 + np.log(counts)) ** 2))
            lines.append(",".join(map(str, labels)) + " " + " ".join(f"{f}:{v:.4f}" for f, v in zip(feats, values)))
        (out_dir / f"synth_{split}.txt").write_text("\n".join(lines) + "\n")


# -- one configuration, in its own process ----------------------------------------------------------------


def _reset_peak_rss() -> None:
    """Linux: writing 5 to clear_refs resets VmHWM to the current resident set (kernel >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def _memory_fields() -> dict[str, int]:
    """Resident set now (VmRSS), its peak (VmHWM), and its anonymous / file-backed parts, in bytes."""
    fields = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                fields[key] = int(value.split()[0]) * 1024  # the kernel reports kB
    return fields


def worker(plan_path: Path, data_dir: Path, run_dir: Path, result_path: Path) -> None:
    """Train the plan for one epoch (a few steps) and write the measurements to result_path (JSON)."""
    import gc

    import torch

    from xmcfit.plan.schema import Plan
    from xmcfit.train.loop import run_training
    from xmcfit.rundir import DataOptions, prepare_run_dir
    from xmcfit.train.data import load_train_data

    torch.set_num_threads(THREADS)
    plan = Plan.from_json(plan_path)
    options = DataOptions(str(data_dir))
    prepare_run_dir(plan, run_dir, options)
    data = load_train_data(plan, run_dir, options, resume=False)
    gc.collect()
    baseline = _memory_fields()
    _reset_peak_rss()
    steps: list[dict] = []
    cpu_clock = [time.process_time()]

    def on_step(stats) -> None:
        n_points = plan.training.micro_batch * plan.training.grad_accum
        now = time.process_time()  # this process's CPU seconds: collate, step and rewiring
        steps.append({"step": stats.step, "seconds": n_points / stats.points_per_s, "cpu_seconds": now - cpu_clock[0],
                      "moved": stats.connections_moved, **_memory_fields()})
        cpu_clock[0] = now

    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    cpu_clock[0] = time.process_time()
    result = run_training(plan, run_dir, data, device="cpu", on_step=on_step, log_every=1)
    wall_s = time.perf_counter() - started
    after_run = _memory_fields()  # VmHWM now includes the checkpoint and final-weights writes
    memory = json.loads(result.memory.to_json())
    del result
    gc.collect()
    out = {"baseline": baseline, "steps": steps, "after_run": after_run, "after_free": _memory_fields(),
           "train_wall_s": wall_s, "memory_json": memory, "torch_threads": torch.get_num_threads(),
           "nice": os.nice(0),
           "load_avg_1min": [load_before, os.getloadavg()[0]],
           "malloc_mmap_threshold": os.environ.get("MALLOC_MMAP_THRESHOLD_", "glibc default")}
    result_path.write_text(json.dumps(out, indent=1) + "\n")


# -- the pure-bf16 optimizers' workspace, probed alone -----------------------------------------------------

PROBE_NUMEL = 1 << 24
"""16M bf16 elements: four slices of the low-precision optimizers, so a step's workspace is one slice's."""


def lowprec_worker(optimizer: str, rounding: str) -> None:
    """One step of LowPrecisionAdamW / LowPrecisionSGD on a PROBE_NUMEL bf16 parameter (state already made);
    prints the resident-set growth over the step per element of one slice."""
    import torch

    from xmcfit.sparse.lowprec_optim import LowPrecisionAdamW, LowPrecisionSGD

    torch.manual_seed(SEED)
    param = torch.nn.Parameter(torch.randn(PROBE_NUMEL).to(torch.bfloat16))
    param.grad = torch.randn(PROBE_NUMEL).to(torch.bfloat16)
    if optimizer == "adamw":
        opt: torch.optim.Optimizer = LowPrecisionAdamW([param], lr=1e-2, weight_decay=1e-4, rounding=rounding)
    else:
        opt = LowPrecisionSGD([param], lr=1e-2, momentum=0.9, rounding=rounding)
    opt.step()  # creates the state, which is persistent, not workspace
    base = _memory_fields()["VmRSS"]
    _reset_peak_rss()
    opt.step()
    print((_memory_fields()["VmHWM"] - base) / min(PROBE_NUMEL, opt.chunk_numel))


def lowprec_probe(mmap_threshold: int) -> None:
    from xmcfit.plan.memory import LOWPREC_WORKSPACE_BYTES_PER_ELEMENT

    print("| optimizer | rounding | measured bytes / element of a slice | memory model |")
    print("| --- | --- | ---: | ---: |")
    worst = 0.0
    for (optimizer, rounding), modelled in LOWPREC_WORKSPACE_BYTES_PER_ELEMENT.items():
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(mmap_threshold)}
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--lowprec-worker", optimizer, rounding],
                              cwd=REPO_ROOT, text=True, capture_output=True, env=env, check=True)
        measured = float(proc.stdout.split()[-1])
        worst = max(worst, abs(measured / modelled - 1))
        print(f"| {optimizer} | {rounding} | {measured:.2f} | {modelled} |")
    print(f"SUMMARY lowprec_workspace_max_abs_err_pct={100 * worst:.1f} numel={PROBE_NUMEL} "
          f"mmap_threshold={mmap_threshold}")


# -- the driver -------------------------------------------------------------------------------------------


def xmcfit_cli(*args: str) -> None:
    """`xmcfit ARGS` in a fresh process, as a user runs it; stop the benchmark if it fails."""
    cmd = [sys.executable, "-m", "xmcfit.cli", *args]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, text=True, capture_output=True)
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr}")


def cpu_estimate(plan_path: Path):
    """The memory model's estimate for this plan run on the CPU (Layout.on_cpu)."""
    from xmcfit.plan.memory import Layout, predict
    from xmcfit.plan.schema import Plan

    return predict(Layout.on_cpu(Plan.from_json(plan_path)))


def plan_config(cfg: Config, out: Path, n_steps: int) -> Path:
    """Write the dataset for cfg.n_labels (once) and the plan; returns the plan's path."""
    data_dir = out / "data" / f"L{cfg.n_labels}"
    if not (data_dir / "synth_train.txt").exists():
        write_bow_dataset(data_dir, cfg.n_labels, n_steps * BATCH, BATCH, N_FEATURES, SEED)
    plan_path = out / "plans" / f"{cfg.name}.json"
    xmcfit_cli("plan", "--data", str(data_dir), "--gpu-mem", "1T", "--epochs", "1", "--seed", str(SEED),
               *cfg.plan_flags(), "-o", str(plan_path))
    return plan_path


def run_config(cfg: Config, plan_path: Path, out: Path, mmap_threshold: int, reuse: bool = False) -> dict:
    """Train cfg in a fresh process (see `worker`) with glibc's mmap threshold pinned (0: glibc's default);
    returns its measurements (the run's bulky files removed)."""
    data_dir = out / "data" / f"L{cfg.n_labels}"
    name = cfg.name + ("" if mmap_threshold else "-glibc-default")
    run_dir, result_path = out / "runs" / name, out / "results" / f"{name}.json"
    if reuse and result_path.exists():
        return json.loads(result_path.read_text())
    shutil.rmtree(run_dir, ignore_errors=True)
    result_path.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.pop("MALLOC_MMAP_THRESHOLD_", None)
    if mmap_threshold:
        env["MALLOC_MMAP_THRESHOLD_"] = str(mmap_threshold)
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", str(plan_path), str(data_dir),
                           str(run_dir), str(result_path)], cwd=REPO_ROOT, text=True, capture_output=True, env=env)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"failed": f"worker exit {proc.returncode}: {tail}"}
    shutil.rmtree(run_dir / "checkpoint", ignore_errors=True)  # GBs of optimizer state nobody reads
    (run_dir / "model.safetensors").unlink(missing_ok=True)
    return json.loads(result_path.read_text())


@dataclass(frozen=True)
class Row:
    """One configuration's figures (bytes, seconds)."""

    name: str
    n_labels: int
    classifier: str
    predicted_tensor_bytes: int
    peak_phase: str
    skipped: str = ""
    measured_peak_bytes: int = 0
    runtime_bytes: int = 0
    persistent_measured_bytes: int = 0
    persistent_predicted_bytes: int = 0
    pattern_measured_bytes: int = 0
    pattern_predicted_bytes: int = 0
    transient_measured_bytes: int = 0
    transient_predicted_bytes: int = 0
    checkpoint_peak_bytes: int = 0
    step_s: float = 0.0
    first_step_s: float = 0.0
    rewire_step_s: float = 0.0
    load_avg: float = 0.0
    default_peak_bytes: int = 0
    """Measured peak of the same configuration under glibc's default mmap threshold (0: not run)."""

    @property
    def predicted_bytes(self) -> int:
        """Tensors as the memory model prices them + the runtime this process gained (not tensors)."""
        return self.predicted_tensor_bytes + self.runtime_bytes

    @property
    def err_pct(self) -> float:
        return 100.0 * (self.predicted_bytes / self.measured_peak_bytes - 1.0)


def describe(plan: dict) -> str:
    c = plan["classifier"]
    dtype = "fp32" if c["value_dtype"] == "float32" else "bf16"
    inter = plan["model"]["intermediate_dim"]
    aux = plan["aux"]["n_clusters"] if plan["aux"]["enabled"] else 0
    side = plan.get("tfidf", {})
    tfidf = f" +TF-IDF side k={side['fan_in']}/{side['n_words']}" if side.get("enabled") else ""
    if c["kind"] == "dense":
        return f"dense {c['n_labels']}x{c['in_features']} fp32 adamw{tfidf}"
    return (f"k={c['fan_in']}/{c['in_features']} {dtype} {c['optimizer']}" + (f" +{inter} inter" if inter else "")
            + (f" +aux {aux}" if aux else "") + tfidf)


PERSISTENT = ("encoder_weights", "encoder_optimizer_state", "intermediate_weights", "intermediate_optimizer_state",
              "aux_weights", "aux_optimizer_state", "classifier_values", "classifier_bias", "classifier_indices",
              "classifier_optimizer_state", "classifier_pattern_cache", "tfidf_weights", "tfidf_optimizer_state")


def make_row(cfg: Config, plan_path: Path, est, result: dict | None, skipped: str, default: dict | None = None) -> Row:
    plan = json.loads(plan_path.read_text())
    base = dict(name=cfg.name, n_labels=cfg.n_labels, classifier=describe(plan),
                predicted_tensor_bytes=est.predicted_peak_bytes, peak_phase=est.peak_phase)
    if result is None or "failed" in result:
        return Row(**base, skipped=skipped or result["failed"])
    b = result["baseline"]
    steps = result["steps"]
    peak = max(s["VmHWM"] for s in steps) - b["VmRSS"]
    # What the process keeps once the run's tensors are freed: library pages, thread pools, allocator caches.
    runtime = result["after_free"]["VmRSS"] - b["VmRSS"]
    measured_terms = result["memory_json"]["measured_terms_bytes"]
    persistent_measured = sum(measured_terms.get(t, 0) for t in PERSISTENT)
    persistent_predicted = sum(est.terms_bytes.get(t, 0) for t in PERSISTENT)
    moved_before = [0] + [s["moved"] for s in steps[:-1]]  # connections_moved is a running total
    rewired = [s["step"] for s, before in zip(steps, moved_before) if s["moved"] > before]
    disturbed = {1} | set(rewired) | {r + 1 for r in rewired}  # first step; rewiring; pattern rebuilt after it
    clean = [s["cpu_seconds"] for s in steps if s["step"] not in disturbed]
    return Row(**base, measured_peak_bytes=peak, runtime_bytes=runtime,
               persistent_measured_bytes=persistent_measured, persistent_predicted_bytes=persistent_predicted,
               pattern_measured_bytes=measured_terms.get("classifier_pattern_cache", 0),
               pattern_predicted_bytes=est.terms_bytes["classifier_pattern_cache"],
               transient_measured_bytes=peak - runtime - persistent_measured,
               transient_predicted_bytes=est.predicted_peak_bytes - persistent_predicted,
               checkpoint_peak_bytes=result["after_run"]["VmHWM"] - b["VmRSS"],
               step_s=statistics.median(clean) if clean else float("nan"), first_step_s=steps[0]["cpu_seconds"],
               rewire_step_s=statistics.median([steps[r - 1]["cpu_seconds"] for r in rewired]) if rewired else float("nan"),
               load_avg=max(result["load_avg_1min"]),
               default_peak_bytes=(max(s["VmHWM"] for s in default["steps"]) - default["baseline"]["VmRSS"]
                                   if default and "failed" not in default else 0))


def gib(n: int) -> str:
    return f"{n / GIB:.3f}"


def print_table(rows: list[Row]) -> None:
    """Measured vs predicted peak per configuration, and its split into persistent and transient bytes."""
    head = ("config", "classifier", "predicted GiB", "measured GiB", "err %", "phase", "runtime MiB",
            "persistent meas / pred GiB", "of which pattern cache meas / pred", "transient meas / pred GiB",
            "peak incl. checkpoint GiB")
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join(" --- " if i in (0, 1, 5) else " ---: " for i in range(len(head))) + "|")
    for r in rows:
        if r.skipped:
            print(f"| {r.name} | {r.classifier} | {gib(r.predicted_tensor_bytes)} | skipped: {r.skipped} |"
                  + " |" * (len(head) - 4))
            continue
        print(f"| {r.name} | {r.classifier} | {gib(r.predicted_bytes)} | {gib(r.measured_peak_bytes)} | "
              f"{r.err_pct:+.1f} | {r.peak_phase} | {r.runtime_bytes / MIB:.0f} | "
              f"{gib(r.persistent_measured_bytes)} / {gib(r.persistent_predicted_bytes)} | "
              f"{gib(r.pattern_measured_bytes)} / {gib(r.pattern_predicted_bytes)} | "
              f"{gib(r.transient_measured_bytes)} / {gib(r.transient_predicted_bytes)} | {gib(r.checkpoint_peak_bytes)} |")


def print_time_table(rows: list[Row]) -> None:
    head = ("config", "step CPU s (median)", "model build + first step CPU s", "rewiring step CPU s", "load avg (1 min, max)")
    print("\n| " + " | ".join(head) + " |")
    print("| --- |" + " ---: |" * (len(head) - 1))
    for r in rows:
        if not r.skipped:
            print(f"| {r.name} | {r.step_s:.2f} | {r.first_step_s:.2f} | {r.rewire_step_s:.2f} | {r.load_avg:.1f} |")


def print_default_table(rows: list[Row]) -> None:
    """The same configurations under glibc's default mmap threshold: what a user's process shows."""
    both = [r for r in rows if r.default_peak_bytes]
    if not both:
        return
    print("\n| config | measured GiB (threshold pinned) | measured GiB (glibc default) | held by glibc GiB "
          "| err % of the prediction vs glibc default |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for r in both:
        print(f"| {r.name} | {gib(r.measured_peak_bytes)} | {gib(r.default_peak_bytes)} | "
              f"{gib(r.default_peak_bytes - r.measured_peak_bytes)} | "
              f"{100 * (r.predicted_bytes / r.default_peak_bytes - 1):+.1f} |")


def print_step_growth(rows: list[Row]) -> None:
    """Step time per classifier shape across L, and its growth from the smallest L measured."""
    shapes: dict[str, dict[int, float]] = {}
    for r in rows:
        if not r.skipped:
            shapes.setdefault(r.name.split("-", 1)[1], {})[r.n_labels] = r.step_s
    labels = sorted({r.n_labels for r in rows})
    print("\n| shape | " + " | ".join(f"step CPU s, L={n:,}" for n in labels) + " | growth per 10x L |")
    print("| --- |" + " ---: |" * (len(labels) + 1))
    for shape, by_l in shapes.items():
        cells = [f"{by_l[n]:.2f}" if n in by_l else "-" for n in labels]
        known = sorted(by_l)
        growth = ""
        if len(known) >= 2 and by_l[known[0]] > 0:
            exponent = np.log(by_l[known[-1]] / by_l[known[0]]) / np.log(known[-1] / known[0])
            growth = f"{10 ** exponent:.1f}x"
        print(f"| {shape} | " + " | ".join(cells) + f" | {growth} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/scale_memory", help="Folder for data, plans, runs and results.")
    parser.add_argument("--steps", type=int, default=5, help="Optimizer steps per configuration (one epoch).")
    parser.add_argument("--limit-gib", type=float, default=14.0,
                        help="Skip configurations whose CPU prediction is above this (GiB).")
    parser.add_argument("--labels", default="100000,1000000,3000000", help="Comma-separated L values of the grid.")
    parser.add_argument("--only", nargs="*", default=None, help="Run only these configuration names.")
    parser.add_argument("--mmap-threshold", type=int, default=MMAP_THRESHOLD,
                        help="glibc's mmap threshold (bytes) pinned in the training processes; 0 = glibc's default.")
    parser.add_argument("--glibc-default", nargs="*", default=[],
                        help="Configuration names that also run under glibc's default mmap threshold.")
    parser.add_argument("--json-out", default=None, help="Also write the rows as JSON here.")
    parser.add_argument("--reuse", action="store_true",
                        help="Take a configuration's result from --out/results when an earlier run left it there.")
    parser.add_argument("--lowprec-probe", action="store_true",
                        help="Only measure the pure-bf16 optimizers' workspace per element (a few seconds).")
    parser.add_argument("--lowprec-worker", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--worker", nargs=4, metavar=("PLAN", "DATA", "RUN_DIR", "RESULT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(*(Path(a) for a in args.worker))
        return
    if args.lowprec_worker:
        lowprec_worker(*args.lowprec_worker)
        return
    if args.lowprec_probe:
        lowprec_probe(args.mmap_threshold)
        return
    out = Path(args.out)
    labels = sorted(int(x) for x in args.labels.split(","))
    configs = [c for c in grid(labels) if args.only is None or c.name in args.only]
    limit = int(args.limit_gib * GIB)
    default_for = set(args.glibc_default)
    rows = []
    for cfg in configs:
        plan_path = plan_config(cfg, out, args.steps)
        est = cpu_estimate(plan_path)
        if est.predicted_peak_bytes > limit:
            rows.append(make_row(cfg, plan_path, est, None,
                                 f"predicted {est.predicted_peak_bytes / GIB:.1f} GiB > {args.limit_gib:g} GiB"))
        else:
            result = run_config(cfg, plan_path, out, args.mmap_threshold, args.reuse)
            default = (run_config(cfg, plan_path, out, 0, args.reuse) if cfg.name in default_for and args.mmap_threshold
                       else None)
            rows.append(make_row(cfg, plan_path, est, result, "", default))
        r = rows[-1]
        print(f"# {r.name}: " + (r.skipped or f"measured {gib(r.measured_peak_bytes)} GiB, predicted "
                                 f"{gib(r.predicted_bytes)} GiB ({r.err_pct:+.1f} %), step {r.step_s:.2f} s"),
              flush=True)
    print()
    print_table(rows)
    print_time_table(rows)
    print_step_growth(rows)
    print_default_table(rows)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps([asdict(r) for r in rows], indent=1) + "\n")
    measured = [r for r in rows if not r.skipped]
    big = [r for r in measured if r.n_labels >= 1_000_000]
    worst = max(big, key=lambda r: abs(r.err_pct)) if big else None
    defaults = [100 * abs(r.predicted_bytes / r.default_peak_bytes - 1) for r in big if r.default_peak_bytes]
    print("SUMMARY " + " ".join([
        f"configs={len(rows)} measured={len(measured)} skipped={len(rows) - len(measured)}",
        f"max_abs_err_pct_L_ge_1M={abs(worst.err_pct):.1f} worst={worst.name}" if worst else "max_abs_err_pct_L_ge_1M=nan",
        f"within_5pct_L_ge_1M={sum(abs(r.err_pct) <= 5 for r in big)}/{len(big)}",
        f"mmap_threshold={args.mmap_threshold or 'default'}",
        f"glibc_default_max_abs_err_pct_L_ge_1M={max(defaults):.1f}" if defaults else "",
    ]).strip())


if __name__ == "__main__":
    main()
