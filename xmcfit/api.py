"""The Python API, xmcfit's one front door: each user command is one function here, and the command line
(xmcfit.commands) maps its options to one of them and renders the result.

    import xmcfit
    plan = xmcfit.plan(labels=3_000_000, gpu_mem="16G")                 # a frozen Plan (no torch import)
    model = xmcfit.fit(texts, labels, out="runs/a", gpu_mem="16G")      # in-memory data -> a loaded Model
    result = xmcfit.train(plan, data="data/", out="runs/b")              # a dataset on disk -> a TrainResult
    metrics = xmcfit.evaluate("runs/b").metrics                          # an EvalResult
    top = xmcfit.predict("runs/b", ["some text"], k=5)                   # Predictions: .ids, .scores arrays

Failures raise xmcfit.XmcfitError (one line saying what to change). A training run that pauses (at
`max_steps`, or on SIGINT/SIGTERM) raises xmcfit.TrainingPaused after saving its checkpoint; continue it
with `xmcfit.train(resume=run_dir)`. Training shows progress on stderr unless `progress=False`, or sends
each step to a function (`progress=callback`, an xmcfit.TrainEvent). Everything heavy (torch,
transformers, numpy) is imported inside the functions, so `import xmcfit` stays light and `xmcfit.plan`
never loads torch.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from xmcfit.api_train import RunAlreadyFinished
from xmcfit.device import DEVICE_CHOICES, DEVICE_COMPLETIONS
from xmcfit.errors import XmcfitError
from xmcfit.options import TrainOptions, checkpoint_policy
from xmcfit.plan.defaults import DEFAULTS
from xmcfit.plan.hardware import NoGpuError
from xmcfit.plan.schema import (ClassifierKind, ClassifierOptimizer, InputWeighting, LossName, LossReduction, Plan,
                                Pooling, Precision, ValueDtype)
from xmcfit.plan.units import SIZE_HELP
from xmcfit.train.loggers import LOG_TARGETS

if TYPE_CHECKING:
    from xmcfit.data.stats import DatasetStats
    from xmcfit.data.synth import SynthConfig
    from xmcfit.evaluate import EvalResult, Model
    from xmcfit.plan.hardware import GpuInfo
    from xmcfit.predictions import Predictions
    from xmcfit.progress import Progress
    from xmcfit.train.checkpoint import CheckpointPolicy
    from xmcfit.train.epoch import StepStats
    from xmcfit.train.finish import TrainResult

__all__ = ["DEFAULTS", "DEVICE_CHOICES", "DEVICE_COMPLETIONS", "LOG_TARGETS", "SIZE_HELP", "ClassifierKind",
           "ClassifierOptimizer", "InputWeighting", "LossName", "LossReduction", "NoGpuError", "Pooling", "Precision",
           "RunAlreadyFinished", "TrainOptions", "ValueDtype", "all_gpus_json", "calibrate_cpu", "checkpoint_policy",
           "dataset_stats", "evaluate", "evaluate_runs", "fit", "gpus", "launch_processes", "load", "parse_prices", "plan",
           "plan_all_gpus", "predict", "predict_file", "this_process", "profiles", "synthesize", "train", "train_with"]

log = logging.getLogger(__name__)

GpuRow = tuple[str, int, "Plan | None", str]
"""One row of plan_all_gpus: GPU profile name, its memory (bytes), the plan that fits or None, why not."""


# -- plan -------------------------------------------------------------------------------------------------

def plan(labels: int | None = None, *, dataset: str | None = None, data: str | Path | None = None,
         gpu: str | None = None, gpu_mem: str | None = None, gpu_index: int = 0,
         encoder: str = "all-MiniLM-L6-v2", seq_len: int | None = None, batch: int | None = None,
         devices: int = 1, epochs: int | None = None, seed: int = 0, output: str | Path | None = None,
         precision: Precision | None = None, fan_in: int | None = None,
         optimizer: ClassifierOptimizer | None = None, value_dtype: ValueDtype | None = None,
         gradient_checkpointing: bool | None = None, micro_batch: int | None = None,
         intermediate_dim: int | None = None, loss_chunk_size: int | None = None, aux_clusters: int | None = None,
         rewiring_interval: int | None = None, classifier: ClassifierKind | None = None,
         encoder_lr: float | None = None, classifier_lr: float | None = None, loss: LossName | None = None,
         loss_reduction: LossReduction | None = None, probe_epochs: int | None = None, dropout: float | None = None,
         input_weighting: InputWeighting | None = None, tfidf: bool | None = None, tfidf_fan_in: int | None = None,
         pooling: Pooling | None = None, time_device: Literal["gpu", "cpu"] | None = None,
         threads: int | None = None, train_points: int | None = None, **unknown: Any) -> Plan:
    """Choose a training configuration that fits the GPU (`xmcfit plan`); pure Python, no torch.

    Exactly one of `labels`, `dataset` (a profile) or `data` (a dataset path) names the problem; the
    budget is `gpu_mem` ("16G", bytes), else the `gpu` profile, else the visible GPU. `seq_len` defaults to
    the data's typical length (else 128), `batch` is the effective batch per optimizer step. `output`
    writes plan.json atomically.

    The arguments after `output` pin a knob the chooser would otherwise pick (None: the chooser decides),
    as the `xmcfit plan` flag of the same name does: precision ("fp32", "bf16_amp", ...), the classifier's
    fan_in, optimizer, value_dtype and kind (classifier="dense": the L x d baseline),
    gradient_checkpointing, micro_batch, intermediate_dim (0: none), loss_chunk_size, aux_clusters (0: off),
    rewiring_interval, learning rates, loss and loss_reduction, probe_epochs (0: no linear probe), dropout,
    input_weighting (bag-of-words), tfidf / tfidf_fan_in (the TF-IDF side) and pooling ("mean" or "cls").

    The plan's `time` section predicts seconds per step and hours per run (xmcfit.plan.time_model) on
    `time_device`: "gpu" (the default: the GPU profile's datasheet rates; none with `gpu_mem` alone) or "cpu"
    (this machine's `xmcfit calibrate` rates at `threads`). `train_points` overrides the data's point count
    (training on part of it, `xmcfit train --limit`): it sizes the batch, the TF-IDF side's rate and the time.
    """
    from xmcfit.plan.chooser import Pins
    from xmcfit.plan.inputs import plan_on, plan_rates

    given = locals()
    _check_pin_names(unknown)
    _check_path("output", output)
    if threads is not None and time_device != "cpu":
        raise XmcfitError("--threads sets the CPU threads the time is predicted for: give it with --device cpu")
    request = _request(given, {f.name: given[f.name] for f in dataclasses.fields(Pins)})
    rates = plan_rates(request.gpu_name, time_device or "gpu", threads)
    result = plan_on(request, rates)
    if output is not None:
        result.save(output)
    return result


def plan_all_gpus(labels: int | None = None, *, dataset: str | None = None, data: str | Path | None = None,
                  gpu: str | None = None, gpu_mem: str | None = None, encoder: str = "all-MiniLM-L6-v2",
                  seq_len: int | None = None, batch: int | None = None, devices: int = 1,
                  epochs: int | None = None, seed: int = 0, output: str | Path | None = None,
                  train_points: int | None = None, prices: dict[str, float] | None = None,
                  **pins: Any) -> list[GpuRow]:
    """xmcfit.plan for every shipped GPU profile (`xmcfit plan --all-gpus`): one GpuRow per profile, each
    plan's time predicted on that profile's datasheet rates. `output` writes the rows as JSON (all_gpus_json),
    with a cost per run where `prices` ({profile: USD per GPU-hour}, see parse_prices) names the profile."""
    from xmcfit.plan.inputs import Budget, plan_every_gpu_profile

    _check_path("output", output)
    placeholder = Budget("manual", 1, True) if gpu is None and gpu_mem is None else None  # each row has its own
    given = {**locals(), "gpu_index": 0}
    rows = plan_every_gpu_profile(_request(given, pins, placeholder))
    if output is not None:
        from xmcfit.atomic import atomic_write_text

        atomic_write_text(output, all_gpus_json(rows, prices))
    return rows


def all_gpus_json(rows: list[GpuRow], prices: dict[str, float] | None = None) -> str:
    """plan_all_gpus' rows as an indented JSON list (`xmcfit plan --all-gpus --json`)."""
    from xmcfit.plan.inputs import every_gpu_profile_json

    return every_gpu_profile_json(rows, prices)


def calibrate_cpu(threads: int | None = None, seconds: float = 2.0) -> tuple[Any, Path]:
    """Time a GEMM, a memory stream, a gather and an op launch on this CPU at `threads` (default: what
    `xmcfit train` would use here) and cache the rates the time model predicts CPU runs with
    (`xmcfit calibrate`). Returns (the CpuCalibration, the cache file)."""
    from xmcfit.calibrate import calibrate_cpu as measure
    from xmcfit.calibrate import save_calibration
    from xmcfit.threads import allowed_cores, intra_op_threads

    calibration = measure(intra_op_threads(allowed_cores(), threads), seconds)
    return calibration, save_calibration(calibration)


def parse_prices(values: Sequence[str] | None) -> dict[str, float]:
    """`--price-per-hour PROFILE=USD` values as {profile: USD per GPU-hour}; one XmcfitError line when malformed."""
    from xmcfit.plan.inputs import parse_prices as parse

    return parse(list(values) if values else None)


def _request(given: dict[str, Any], pins: dict[str, Any], budget: Any = None) -> Any:
    """The chooser's PlanRequest from xmcfit.plan's arguments (`given`) and pins, each checked."""
    from xmcfit.plan.chooser import Pins
    from xmcfit.plan.inputs import make_request

    _check_pin_names(pins)
    _check_path("data", given["data"])
    data, batch, epochs = given["data"], given["batch"], given["epochs"]
    return make_request(labels=given["labels"], dataset=given["dataset"], data=str(data) if data is not None else None,
                        gpu_mem=given["gpu_mem"], gpu=given["gpu"], gpu_index=given["gpu_index"],
                        encoder=given["encoder"], seq_len=given["seq_len"],
                        batch=batch, devices=given["devices"],
                        epochs=epochs if epochs is not None else DEFAULTS.epochs, seed=given["seed"],
                        pins=Pins(**pins), budget=budget, train_points=given.get("train_points"))


def _check_pin_names(pins: dict[str, Any]) -> None:
    """One XmcfitError line for a keyword argument that is no pin (xmcfit.plan.chooser.Pins)."""
    from xmcfit.plan.chooser import Pins

    known = {f.name for f in dataclasses.fields(Pins)}
    unknown = sorted(set(pins) - known)
    if unknown:
        raise XmcfitError(f"xmcfit.plan: unknown option {unknown[0]!r}; pins are {', '.join(sorted(known))}")


def _check_pins(pins: dict[str, Any]) -> None:
    """One XmcfitError line for a keyword argument that is no pin, or a pin of the wrong type."""
    from xmcfit.plan.chooser import Pins

    _check_pin_names(pins)
    Pins(**pins)


def _check_path(name: str, value: object) -> None:
    if value is not None and not isinstance(value, (str, Path)):
        raise XmcfitError(f"{name}={value!r}: must be a path (str or pathlib.Path)")


# -- train ------------------------------------------------------------------------------------------------

def train(plan: Plan | str | Path | None = None, data: str | Path | None = None, out: str | Path | None = None, *,
          resume: str | Path | None = None, device: str = "auto", max_steps: int | None = None,
          limit: int | None = None, text_fields: Sequence[str] | None = None, label_field: str | None = None,
          auto_recover: bool = False, log_every: int = 10, log_to: str | Sequence[str] = (),
          checkpoints: CheckpointPolicy | None = None, on_step: Callable[[StepStats], None] | None = None,
          progress: Progress = True) -> TrainResult:
    """Train `plan` (a Plan or a plan.json path) on `data` into the run directory `out` (default
    runs/<plan name>), or continue the run `resume` (its recorded plan and data; `data` points it at data
    that moved, checked to be the same). `xmcfit train` calls this; for texts or matrices in memory see
    xmcfit.fit.

    The other arguments are the fields of xmcfit.TrainOptions (the `xmcfit train` flags). `progress=True`
    draws a bar on stderr (a plain line every 30 s where stderr is no terminal, as in a notebook);
    `progress=False` is silent; a function receives an xmcfit.TrainEvent (step, epoch, loss, eta_s) per
    optimizer step. Everything is checked before the run directory is created (arguments, plan, data against
    the plan, device, tokenizer, loggers): a bad input is one XmcfitError and never leaves a half-made run.
    One process writes a run at a time (a lock). Under torchrun (WORLD_SIZE > 1) every process calls this
    alike and trains one label shard of a plan for that many devices (xmcfit.train.distributed).
    """
    options = TrainOptions(device=device, max_steps=max_steps, limit=limit, text_fields=text_fields,
                           label_field=label_field, auto_recover=auto_recover, log_every=log_every, log_to=log_to,
                           checkpoints=checkpoints, on_step=on_step, progress=progress)
    return train_with(plan, data, out, resume=resume, options=options)


def train_with(plan: Plan | str | Path | None, data: str | Path | None, out: str | Path | None, *,
               resume: str | Path | None = None, options: TrainOptions | None = None) -> TrainResult:
    """xmcfit.train with its options as one TrainOptions value (None: the defaults)."""
    options = options if options is not None else TrainOptions()
    if plan is not None and not isinstance(plan, (Plan, str, Path)):
        raise XmcfitError(f"plan={plan!r}: must be a Plan or the path of a plan.json")
    for name, value in (("data", data), ("out", out), ("resume", resume)):
        _check_path(name, value)
    if resume is not None and plan is not None:
        raise XmcfitError("--resume takes the plan recorded in the run; drop PLAN")
    from xmcfit.api_train import start
    from xmcfit.train.world import World

    world = World.from_env()
    if world.distributed:  # one rank of a label-sharded run under torchrun: rank 0 leads what follows
        from xmcfit.train.distributed import train_rank

        return train_rank(world, lambda placement: start(plan, data, out, resume, options, placement),
                          **options.rank_kwargs())
    return start(plan, data, out, resume, options, None)


def fit(inputs: Sequence[str] | Any, labels: Sequence[Sequence[int | str]] | Any, *, out: str | Path,
        plan: Plan | str | Path | None = None, label_names: Sequence[str] | None = None,
        data_dir: str | Path | None = None, gpu_mem: str | None = None, gpu: str | None = None,
        encoder: str = "all-MiniLM-L6-v2", seq_len: int | None = None, batch: int | None = None,
        epochs: int | None = None, seed: int = 0, device: str = "auto", max_steps: int | None = None,
        log_every: int = 10, checkpoints: CheckpointPolicy | None = None,
        on_step: Callable[[StepStats], None] | None = None, progress: Progress = True, **pins: Any) -> Model:
    """Train on data held in memory and return the trained Model, ready to `predict`.

    `inputs`: a list of texts, or a scipy.sparse (n_points, n_features) matrix (bag-of-words: the plan gets
    a bag-of-words encoder). `labels`: per point a list of label ids (ints; ids are kept, `label_names`
    names them) or label names (strings; numbered in sorted order), or a scipy.sparse (n_points, n_labels)
    indicator matrix. The data is written as a dataset directory, `data_dir` (default `<out>-data`, beside
    the run), so that eval and `train(resume=out)` read it as any dataset; the run goes to `out`.

    Without `plan`, xmcfit.plan chooses one for the data from `gpu_mem` (e.g. "16G") or the `gpu` profile
    (else the visible GPU), `encoder`, `seq_len`, `batch`, `epochs`, `seed` and `pins` (fan_in=64, ...).
    `device`, `max_steps`, `log_every`, `checkpoints`, `on_step` and `progress` are as in xmcfit.train.
    Everything is checked before anything is written: a bad argument is one XmcfitError line.
    """
    from xmcfit.inmemory import check_data, default_data_dir, write_data
    from xmcfit.rundir import check_run_target, is_run_dir

    _check_path("out", out)
    _check_path("data_dir", data_dir)
    if plan is not None and not isinstance(plan, (Plan, str, Path)):
        raise XmcfitError(f"plan={plan!r}: must be a Plan or the path of a plan.json")
    _check_pins(pins)
    data = check_data(inputs, labels, label_names)
    options = TrainOptions(device=device, max_steps=max_steps, text_fields=data.text_fields,
                           label_field=data.label_field, log_every=log_every, checkpoints=checkpoints,
                           on_step=on_step, progress=progress)
    run_dir = Path(out)
    check_run_target(run_dir)
    directory = write_data(data, Path(data_dir) if data_dir is not None else default_data_dir(run_dir))
    planning = dict(gpu_mem=gpu_mem, gpu=gpu, encoder=encoder, seq_len=seq_len, batch=batch, epochs=epochs,
                    seed=seed, **pins)
    try:
        the_plan = plan if plan is not None else _plan_for(directory, planning)
        train_with(the_plan, directory, run_dir, options=options)
    except XmcfitError:
        if not is_run_dir(run_dir):  # nothing was trained: the written data serves nothing
            shutil.rmtree(directory, ignore_errors=True)
        raise
    return load(run_dir, device=None if device == "auto" else device)


def _plan_for(data: Path, planning: dict[str, Any]) -> Plan:
    """xmcfit.plan for a data directory fit wrote (a function apart: in fit, `plan` is the argument)."""
    return plan(data=data, **planning)


def this_process() -> tuple[int, int]:
    """(rank, number of processes) of this process in a torchrun run; (0, 1) alone. Rank 0 reports."""
    from xmcfit.train.world import World

    world = World.from_env()
    return world.rank, world.size


def launch_processes(plan_path: str | Path | None, resume: str | Path | None, nproc: int | None, *,
                     auto_recover: bool, device: str, args: Sequence[str]) -> bool:
    """For `xmcfit train`: check the processes against the plan (this one's torchrun world, or `nproc`)
    before anything is written; with `nproc` > 1 run `python -m xmcfit <args>` in that many processes
    (torchrun) and return True once they finished. False: train in this process. A plan that cannot be
    read is left to xmcfit.train to explain."""
    from xmcfit.train.world import check_processes
    from xmcfit.train.launch import launch
    from xmcfit.train.world import World

    the_plan = _readable_plan(plan_path, resume)
    if the_plan is None:
        return False
    check_processes(the_plan, World.from_env(), nproc=nproc, auto_recover=auto_recover, device=device)
    if nproc is not None and nproc > 1:
        launch(nproc, list(args))
        return True
    return False


def _readable_plan(plan_path: str | Path | None, resume: str | Path | None) -> Plan | None:
    """The plan to train (of the run `resume`, else at `plan_path`), or None when it cannot be read."""
    from xmcfit.rundir import RunFiles

    path = RunFiles(Path(resume)).plan if resume is not None else plan_path
    try:
        return Plan.from_json(path) if path is not None else None
    except XmcfitError:
        return None


# -- evaluate and predict ----------------------------------------------------------------------------------

def load(run_dir: str | Path, device: str | None = None) -> Model:
    """A finished run directory, verified (weights checksum) and loaded for scoring."""
    from xmcfit.evaluate import load as load_model

    return load_model(run_dir, device=device)


def predict(run: str | Path | Model, inputs: str | Sequence[str] | Any, k: int = 5, *,
            probabilities: bool = False, device: str | None = None) -> Predictions:
    """Top-k labels, best first, of each input (texts for text runs, a scipy.sparse feature matrix for
    bag-of-words runs) by a run directory or loaded Model: Predictions with `.ids` (n, k) int64, `.scores`
    (n, k) float32, `.names` (n, k) or None, `.probabilities` with `probabilities=True` (BCE runs only);
    `predictions[i]` is input i's list of LabelScore. Scores are margins (squared hinge) or logits (BCE)."""
    model = run if not isinstance(run, (str, Path)) else load(run, device=device)
    return model.predict(inputs, k, probabilities)


def predict_file(run: str | Path | Model, path: str | Path, k: int = 5, *, probabilities: bool = False,
                 device: str | None = None) -> Predictions:
    """xmcfit.predict for each point of a data file (bag-of-words runs: an XMC-format features file)."""
    model = run if not isinstance(run, (str, Path)) else load(run, device=device)
    return model.predict_file(path, k, probabilities)


def evaluate(run: str | Path | Model, data: str | Path | None = None, split: str | None = None, *,
             propensity_a: float | None = None, propensity_b: float | None = None,
             device: str | None = None) -> EvalResult:
    """P@k, nDCG@k, PSP@k, PSnDCG@k (k = 1, 3, 5) and coverage@5 of a run directory (or a loaded Model) on a
    labelled split: `data` (default: the run's training data) and `split` ("dev" or "test"; default test,
    else dev). Propensity A/B: the arguments, else the matching dataset profile, else 0.55/1.5."""
    from xmcfit.evaluate import evaluate as evaluate_model

    return evaluate_model(run, data, split, propensity_a=propensity_a, propensity_b=propensity_b, device=device)


def evaluate_runs(run_dirs: Sequence[str | Path], data: str | Path | None = None, split: str | None = None, *,
                  propensity_a: float | None = None, propensity_b: float | None = None,
                  device: str | None = None) -> list[EvalResult]:
    """xmcfit.evaluate for each run directory in turn, one model in memory at a time (`xmcfit eval`)."""
    from xmcfit.evaluate import evaluate_runs as evaluate_each

    return evaluate_each(run_dirs, data, split, propensity_a, propensity_b, device)


# -- listings and data -------------------------------------------------------------------------------------

def gpus() -> list[GpuInfo]:
    """The GPUs pynvml sees; no driver or no GPU raises NoGpuError (an XmcfitError saying which)."""
    from xmcfit.plan.hardware import query_gpus

    return query_gpus()


def profiles() -> dict[str, list[Any]]:
    """The shipped profiles by kind: {"gpus": [...], "encoders": [...], "datasets": [...]}."""
    from xmcfit.plan.profiles import load_dataset, load_encoder, load_gpu, profile_names

    return {"gpus": [load_gpu(n) for n in profile_names("gpus")],
            "encoders": [load_encoder(n) for n in profile_names("encoders")],
            "datasets": [load_dataset(n) for n in profile_names("datasets")]}


def dataset_stats(path: str | Path, split: str = "train", limit: int | None = None) -> DatasetStats:
    """Statistics of one split of a dataset directory or file (`xmcfit data stats`)."""
    from xmcfit.data import compute_stats, load_split

    return compute_stats(load_split(path, split, limit=limit))


def synthesize(out_dir: str | Path, *, labels: int = 500, train: int = 4000, test: int = 1000,
               seed: int = 0) -> SynthConfig:
    """Write a synthetic raw-text dataset (Zipf label frequencies, words that carry label signal) into
    `out_dir` (`xmcfit data synth`); the same seed writes the same files."""
    from xmcfit.data.synth import write_synthetic

    try:
        return write_synthetic(out_dir, n_train=train, n_test=test, n_labels=labels, seed=seed)
    except ValueError as exc:
        raise XmcfitError(f"xmcfit data synth: {exc}") from exc
    except OSError as exc:
        raise XmcfitError(f"{out_dir}: cannot write ({exc.strerror or exc})") from exc
