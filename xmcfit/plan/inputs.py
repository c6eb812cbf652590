"""Turn what the user named (GPU, dataset or data path, encoder) into a PlanRequest; no torch.

The budget comes from --gpu-mem, else a --gpu profile, else the visible GPU --gpu-index via pynvml.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from xmcfit.errors import XmcfitError
from xmcfit.plan.chooser import Pins, PlanRequest, choose_plan
from xmcfit.plan.defaults import DEFAULTS
from xmcfit.plan.memory import revalidate
from xmcfit.plan.schema import EncoderSpec, Plan, PlanError, check_value
from xmcfit.plan.units import parse_size
from xmcfit.profiles import encoder_availability, load_dataset, load_encoder, load_gpu, profile_names

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
    n_points: int = 0
    """Training points (--data), which size the default batch; 0: unknown."""


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
        return Problem(p.n_labels, p.name, None, p.typical_seq_len)
    from xmcfit.data import compute_stats, load_split  # lazy: reads files, may import numpy/scipy

    stats = compute_stats(load_split(data, "train"))
    bow = stats.n_features if stats.kind == "bow" else 0
    return Problem(stats.n_labels, None, str(data), None, bow, stats.n_points)


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
             "devices": "--devices", "epochs": "--epochs", "seed": "--seed"}
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
                 epochs: int, seed: int, pins: Pins, budget: Budget | None = None) -> PlanRequest:
    """Everything the chooser needs, validated; `budget` overrides the GPU flags (used by --all-gpus).
    `batch` None: sized to the data's training points (xmcfit.plan.defaults: batch_for)."""
    check_request_args(locals())
    problem = resolve_problem(labels, dataset, data)
    spec = resolve_encoder(encoder, problem)
    budget = budget or resolve_budget(gpu_mem, gpu, gpu_index)
    if spec.kind == "bow":
        seq = 0
    else:
        seq = seq_len if seq_len is not None else min(problem.typical_seq_len or DEFAULT_SEQ_LEN, spec.max_seq_len)
    return PlanRequest(n_labels=problem.n_labels, budget_bytes=budget.budget_bytes, encoder=spec, seq_len=seq,
                       target_batch=batch if batch is not None else DEFAULTS.batch_for(problem.n_points, devices),
                       batch_from_points=problem.n_points if batch is None else 0, gpu_name=budget.gpu_name, bf16_supported=budget.bf16_supported,
                       n_devices=devices, epochs=epochs, seed=seed, dataset=problem.dataset,
                       data_path=problem.data_path, pins=pins)


def plan_every_gpu_profile(request: PlanRequest) -> list[tuple[str, int, Plan | None, str]]:
    """(profile, memory bytes, plan or None, why not) for every shipped GPU profile."""
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
            rows.append((name, profile.memory_bytes, choose_plan(req), ""))
        except PlanError as err:
            rows.append((name, profile.memory_bytes, None, str(err).split(":")[0]))
    return rows


def every_gpu_profile_json(rows: list[tuple[str, int, Plan | None, str]]) -> str:
    """`xmcfit plan --all-gpus --json`: one object per GPU profile (name, memory, whether a plan fits, why
    not, the peak and the plain dense baseline's peak, and the whole plan), as an indented JSON list."""
    import json

    out = []
    for name, memory_bytes, plan, why_not in rows:
        mem = plan.memory if plan is not None else None
        out.append({"gpu": name, "memory_bytes": memory_bytes, "fits": plan is not None, "why_not": why_not or None,
                    "predicted_peak_bytes": mem.predicted_peak_bytes if mem else None,
                    "dense_predicted_peak_bytes": mem.dense_predicted_peak_bytes if mem else None,
                    "plan": json.loads(plan.to_json()) if plan is not None else None})
    return json.dumps(out, indent=2) + "\n"
