"""Turn what the user named (GPU, dataset or data path, encoder) into a PlanRequest; no torch.

The budget comes from --gpu-mem, else a --gpu profile, else the visible GPU --gpu-index via pynvml.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from xmcfit.errors import XmcfitError
from xmcfit.plan.chooser import Pins, PlanRequest, choose_plan
from xmcfit.plan.defaults import DEFAULTS
from xmcfit.plan.memory import revalidate
from xmcfit.plan.schema import EncoderSpec, Plan, PlanError, check_value
from xmcfit.plan.units import parse_size
from xmcfit.plan.profiles import encoder_availability, load_dataset, load_encoder, load_gpu, profile_names

if TYPE_CHECKING:
    from xmcfit.plan.time_model import DeviceRates

log = logging.getLogger(__name__)

DEFAULT_SEQ_LEN = 128
BOW_HIDDEN_SIZE = 512
"""Projection width for bag-of-words input (EmbeddingBag(n_features, 512, mode="sum"))."""


@dataclass(frozen=True)
class Budget:
    """Where the memory budget came from."""

    gpu_name: str
    budget_bytes: int
    bf16_supported: bool


@dataclass(frozen=True)
class Problem:
    """The labels (and, for bag-of-words data, the input) the plan is for."""

    n_labels: int
    dataset: str | None
    data_path: str | None
    typical_seq_len: int | None
    bow_features: int = 0
    n_train_points: int = 0
    """Training points (0 when only --labels was given); they size the default batch."""
    nnz_per_point: float = 0.0
    """Bag-of-words data: nonzero features per point."""
    points_per_label: float = 0.0
    """Data: training points per label that has one, on average (0: unknown)."""


def resolve_budget(gpu_mem: str | None, gpu: str | None, gpu_index: int) -> Budget:
    """--gpu-mem beats --gpu (a profile); with neither, ask pynvml for GPU `gpu_index`."""
    profile = load_gpu(gpu) if gpu is not None else None
    if gpu_mem is not None:
        name = profile.name if profile else "manual"
        return Budget(name, parse_size(gpu_mem), profile.bf16 if profile else True)
    if profile is not None:
        return Budget(profile.name, profile.memory_bytes, profile.bf16)
    from xmcfit.plan.hardware import NoGpuError, gpu_at

    try:
        info = gpu_at(gpu_index)
    except NoGpuError as err:
        raise XmcfitError(f"no GPU to plan for ({err}); pass --gpu PROFILE or --gpu-mem SIZE") from None
    return Budget(info.name, info.total_bytes, info.bf16)


def resolve_problem(labels: int | None, dataset: str | None, data: str | None) -> Problem:
    """Exactly one of --labels, --dataset, --data names the problem."""
    given = [flag for flag, value in (("--labels", labels), ("--dataset", dataset), ("--data", data)) if value is not None]
    if len(given) != 1:
        raise XmcfitError("give exactly one of --labels N, --dataset PROFILE, --data PATH"
                          + (f" (got {' and '.join(given)})" if given else ""))
    if labels is not None:
        if labels < 1:
            raise XmcfitError(f"--labels {labels}: must be >= 1")
        return Problem(labels, None, None, None)
    if dataset is not None:
        p = load_dataset(dataset)
        return Problem(p.n_labels, p.name, None, p.typical_seq_len, n_train_points=p.n_train)
    from xmcfit.data import compute_stats, load_split  # lazy: reads files, may import numpy/scipy

    stats = compute_stats(load_split(data, "train"))
    bow = stats.n_features if stats.kind == "bow" else 0
    return Problem(stats.n_labels, None, str(data), None, bow, n_train_points=stats.n_points,
                   nnz_per_point=stats.avg_input_length if bow else 0.0, points_per_label=stats.avg_points_per_label)


def resolve_encoder(name: str, problem: Problem) -> EncoderSpec:
    if problem.bow_features:
        h = BOW_HIDDEN_SIZE
        return EncoderSpec(name="bow", kind="bow", n_params=problem.bow_features * h + h, hidden_size=h, n_layers=0,
                           n_heads=0, intermediate_size=0, vocab_size=problem.bow_features, max_seq_len=0)
    profile = load_encoder(name)
    missing = encoder_availability(profile)
    if missing:  # the plan only needs the shape; say now what a training run will lack
        log.warning("%s", missing)
    return profile.to_spec()


_INT_ARGS = {"labels": "--labels", "gpu_index": "--gpu-index", "seq_len": "--seq-len", "batch": "--batch",
             "devices": "--devices", "epochs": "--epochs", "seed": "--seed", "train_points": "--train-points"}
_STR_ARGS = {"dataset": "--dataset", "data": "--data", "gpu_mem": "--gpu-mem", "gpu": "--gpu", "encoder": "--encoder"}


def check_request_args(given: dict[str, object]) -> None:
    """One XmcfitError line for an argument of the wrong type (the Python API passes anything; the command
    line's flags arrive typed): what xmcfit.plan and `xmcfit plan` share before any rule is checked."""
    for name, flag in _INT_ARGS.items():
        if given.get(name) is not None:
            check_value(int, given[name], flag)
    for name, flag in _STR_ARGS.items():
        if given.get(name) is not None:
            check_value(str, given[name], flag)
    if not isinstance(given.get("pins"), Pins):
        raise XmcfitError(f"pins={given.get('pins')!r}: must be an xmcfit.plan.chooser.Pins")


def read_plan(path: str | Path) -> Plan:
    """A plan.json the user hands to training, perhaps edited by hand: validated field by field
    (Plan.from_json), then its memory section recomputed from its knobs, with a warning naming the file
    when the stored one did not match (xmcfit.plan.memory.revalidate says why recomputed, not refused)."""
    checked, note = revalidate(Plan.from_json(path))
    if note is not None:
        log.warning("%s: %s", path, note)
    return checked


def make_request(*, labels: int | None, dataset: str | None, data: str | None, gpu_mem: str | None,
                 gpu: str | None, gpu_index: int, encoder: str, seq_len: int | None, batch: int | None, devices: int,
                 epochs: int, seed: int, pins: Pins, budget: Budget | None = None,
                 train_points: int | None = None) -> PlanRequest:
    """Everything the chooser needs, validated; `budget` overrides the GPU flags (used by --all-gpus).
    `batch` None: sized to the training points (xmcfit.plan.defaults: batch_for): `train_points` (a
    training run on part of the data: `xmcfit train --limit`), else the data's or the profile's count."""
    check_request_args(locals())
    problem = resolve_problem(labels, dataset, data)
    if train_points is not None and train_points < 1:
        raise XmcfitError(f"--train-points {train_points}: must be >= 1")
    n_points = train_points if train_points is not None else problem.n_train_points
    spec = resolve_encoder(encoder, problem)
    budget = budget or resolve_budget(gpu_mem, gpu, gpu_index)
    if spec.kind == "bow":
        seq = 0
    else:
        seq = seq_len if seq_len is not None else min(problem.typical_seq_len or DEFAULT_SEQ_LEN, spec.max_seq_len)
    return PlanRequest(n_labels=problem.n_labels, budget_bytes=budget.budget_bytes, encoder=spec, seq_len=seq,
                       target_batch=batch if batch is not None else DEFAULTS.batch_for(n_points, devices),
                       batch_pinned=batch is not None, gpu_name=budget.gpu_name,
                       bf16_supported=budget.bf16_supported,
                       n_devices=devices, epochs=epochs, seed=seed, dataset=problem.dataset,
                       data_path=problem.data_path, pins=pins, n_train_points=n_points,
                       nnz_per_point=problem.nnz_per_point,
                       points_per_label=problem.points_per_label * n_points / max(1, problem.n_train_points))


def plan_every_gpu_profile(request: PlanRequest) -> list[tuple[str, int, Plan | None, str]]:
    """(profile, memory bytes, plan or None, why not) for every shipped GPU profile; each plan's time is
    predicted from that profile's datasheet rates."""
    from dataclasses import replace

    rows = []
    for name in profile_names("gpus"):
        profile = load_gpu(name)
        pins = request.pins
        if pins.precision == "bf16_amp" and not profile.bf16:
            rows.append((name, profile.memory_bytes, None, "no bf16"))
            continue
        req = replace(request, budget_bytes=profile.memory_bytes, gpu_name=profile.name, bf16_supported=profile.bf16)
        try:
            plan = plan_on(req, plan_rates(profile.name, "gpu"))
            rows.append((name, profile.memory_bytes, plan, ""))
        except PlanError as err:
            rows.append((name, profile.memory_bytes, None, str(err).split(":")[0]))
    return rows


def run_cost_usd(plan: Plan | None, price_per_gpu_hour: float | None) -> float | None:
    """What the whole run costs at `price_per_gpu_hour` on each of the plan's devices (None when unknown)."""
    if plan is None or plan.time is None or price_per_gpu_hour is None:
        return None
    return plan.time.run_seconds / 3600 * price_per_gpu_hour * plan.n_devices


def every_gpu_profile_json(rows: list[tuple[str, int, Plan | None, str]], prices: dict[str, float] | None = None) -> str:
    """`xmcfit plan --all-gpus --json`: one object per GPU profile (name, memory, whether a plan fits, why
    not, the peak and the plain dense baseline's peak, the predicted seconds per step, hours per epoch and
    for the run, the run's cost given a price, and the whole plan), as an indented JSON list."""
    import json

    prices = prices or {}
    out = []
    for name, memory_bytes, plan, why_not in rows:
        mem = plan.memory if plan is not None else None
        time = plan.time if plan is not None else None
        out.append({"gpu": name, "memory_bytes": memory_bytes, "fits": plan is not None, "why_not": why_not or None,
                    "predicted_peak_bytes": mem.predicted_peak_bytes if mem else None,
                    "dense_predicted_peak_bytes": mem.dense_predicted_peak_bytes if mem else None,
                    "predicted_step_seconds": time.step_seconds if time else None,
                    "predicted_epoch_hours": time.epoch_seconds / 3600 if time else None,
                    "predicted_run_hours": time.run_seconds / 3600 if time else None,
                    "dominant_phase": time.dominant_phase if time else None,
                    "price_per_gpu_hour_usd": prices.get(name),
                    "predicted_run_usd": run_cost_usd(plan, prices.get(name)),
                    "plan": json.loads(plan.to_json()) if plan is not None else None})
    return json.dumps(out, indent=2) + "\n"


# -- the time model's inputs: the device's rates and the data's size -------------------------------------


PlanDevice = Literal["gpu", "cpu"]


def plan_rates(gpu_name: str, device: PlanDevice, threads: int | None = None) -> "DeviceRates | None":
    """Rates the plan's time is predicted with: this CPU's calibration (`device="cpu"`, at `threads` or the
    trainer's default thread count), else the GPU profile `gpu_name` names or whose model it names (None
    when there is none: --gpu-mem alone)."""
    if device == "cpu":
        from xmcfit.calibrate import cpu_rates_for_plan
        from xmcfit.threads import allowed_cores, intra_op_threads

        return cpu_rates_for_plan(threads or intra_op_threads(allowed_cores()))
    from xmcfit.plan.profiles import gpu_rates, profile_for_device_name

    if gpu_name.lower() in {n.lower() for n in profile_names("gpus")}:
        return gpu_rates(load_gpu(gpu_name))
    profile = profile_for_device_name(gpu_name)  # a GPU pynvml named ("NVIDIA A100-SXM4-80GB")
    return gpu_rates(load_gpu(profile)) if profile is not None else None


def plan_on(request: PlanRequest, rates: "DeviceRates | None") -> Plan:
    """choose_plan with ties between speed moves broken by the time predicted on `rates` (when there are
    rates), and the plan's time section."""
    if rates is None:
        return choose_plan(request)
    from xmcfit.plan.memory import Layout
    from xmcfit.plan.time_model import predict_time, workload_for

    workload = workload_for(request.n_labels, request.n_train_points, request.nnz_per_point)

    def step_seconds(layout: Layout) -> float:
        return predict_time(layout, rates, workload, epochs=1).step_seconds

    return with_time(choose_plan(request, step_seconds), request, rates)


def with_time(plan: Plan, request: PlanRequest, rates: "DeviceRates | None") -> Plan:
    """`plan` with its time section predicted on `rates` (unchanged when rates is None)."""
    if rates is None:
        return plan
    from dataclasses import replace

    from xmcfit.plan.time_model import predict_plan_time, time_section, workload_for

    workload = workload_for(request.n_labels, request.n_train_points, request.nnz_per_point)
    return replace(plan, time=time_section(predict_plan_time(plan, rates, workload), workload))


def parse_prices(values: list[str] | None) -> dict[str, float]:
    """--price-per-hour PROFILE=USD (repeatable) as {profile name: USD per GPU-hour}; one XmcfitError line for
    a malformed value or an unknown profile."""
    known = {n.lower(): n for n in profile_names("gpus")}
    prices: dict[str, float] = {}
    for value in values or ():
        name, sep, usd = value.partition("=")
        try:
            price = float(usd) if sep else -1.0
        except ValueError:
            price = -1.0
        if not sep or not price >= 0 or price == float("inf"):
            raise XmcfitError(f"--price-per-hour {value}: must be PROFILE=USD, e.g. H100-80G=2.49")
        if name.lower() not in known:
            raise XmcfitError(f"--price-per-hour {value}: unknown GPU profile {name!r}; known: {', '.join(known.values())}")
        prices[known[name.lower()]] = price
    return prices
