"""The Python API: what the command line does, as functions a notebook or script calls.

    import xmcfit
    plan = xmcfit.plan(labels=3_000_000, gpu_mem="16G")                 # a frozen Plan (no torch import)
    result = xmcfit.train(plan, data="data/", out="runs/a")              # a TrainResult
    metrics = xmcfit.evaluate("runs/a").metrics                          # an EvalResult
    model = xmcfit.load("runs/a"); model.predict(["some text"], k=5)     # LabelScore lists

Failures raise xmcfit.XmcfitError (one line saying what to change). A training run that pauses (at
`max_steps`, or on SIGINT/SIGTERM) raises xmcfit.TrainingPaused after saving its checkpoint; continue it
with `xmcfit.train(resume=run_dir)`. Everything heavy (torch, transformers, numpy) is imported inside the
functions, so `import xmcfit` stays light and `xmcfit.plan` never loads torch.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xmcfit.errors import XmcfitError
from xmcfit.options import Progress, TrainOptions
from xmcfit.plan.schema import Plan

if TYPE_CHECKING:
    from xmcfit.evaluate import EvalResult, Model
    from xmcfit.rundir import DataOptions
    from xmcfit.train.checkpoint import CheckpointPolicy
    from xmcfit.train.epoch import StepStats
    from xmcfit.train.finish import TrainResult

log = logging.getLogger(__name__)


class RunAlreadyFinished(XmcfitError):
    """`resume` named a run that is done: nothing to train (not an error; the command line exits 0)."""

    is_error = False
    exit_code = 0


# -- plan -------------------------------------------------------------------------------------------------

def plan(labels: int | None = None, *, dataset: str | None = None, data: str | Path | None = None,
         gpu: str | None = None, gpu_mem: str | None = None, gpu_index: int = 0,
         encoder: str = "all-MiniLM-L6-v2", seq_len: int | None = None, batch: int | None = None,
         devices: int = 1, epochs: int | None = None, seed: int = 0, output: str | Path | None = None,
         **pins: Any) -> Plan:
    """Choose a training configuration that fits the GPU (`xmcfit plan`); pure Python, no torch.

    Exactly one of `labels`, `dataset` (a profile) or `data` (a dataset path) names the problem; the
    budget is `gpu_mem` ("16G", bytes), else the `gpu` profile, else the visible GPU. `pins` fix knobs by
    their xmcfit.plan.chooser.Pins names (precision="fp32", fan_in=64, micro_batch=8, ...). `output`
    writes plan.json atomically.
    """
    from xmcfit.plan.chooser import Pins, choose_plan
    from xmcfit.plan.defaults import DEFAULTS
    from xmcfit.plan.inputs import make_request

    known = {f.name for f in dataclasses.fields(Pins)}
    unknown = sorted(set(pins) - known)
    if unknown:
        raise XmcfitError(f"xmcfit.plan: unknown option {unknown[0]!r}; pins are {', '.join(sorted(known))}")
    _check_path("data", data)
    _check_path("output", output)
    request = make_request(labels=labels, dataset=dataset, data=str(data) if data is not None else None,
                           gpu_mem=gpu_mem, gpu=gpu, gpu_index=gpu_index, encoder=encoder, seq_len=seq_len,
                           batch=batch if batch is not None else DEFAULTS.target_batch, devices=devices,
                           epochs=epochs if epochs is not None else DEFAULTS.epochs, seed=seed, pins=Pins(**pins))
    result = choose_plan(request)
    if output is not None:
        result.save(output)
    return result


def _check_path(name: str, value: object) -> None:
    if value is not None and not isinstance(value, (str, Path)):
        raise XmcfitError(f"{name}={value!r}: must be a path (str or pathlib.Path)")


# -- train ------------------------------------------------------------------------------------------------

def _loggers(targets: Sequence[str], run_dir: Path, log_every: int, the_plan: Plan) -> list[Any]:
    from xmcfit.rundir import RunFiles
    from xmcfit.train.loggers import TensorBoardLogger

    return [TensorBoardLogger(RunFiles(run_dir).tensorboard, log_every, the_plan.training.encoder_lr,
                              the_plan.classifier.lr) for t in targets if t == "tensorboard"]


def _check_encoder_files(the_plan: Plan) -> None:
    """Before anything is written: the text encoder's tokenizer loads offline (weights are optional: a
    config-only directory trains from random weights, with a warning when the model is built)."""
    if the_plan.model.encoder.kind != "text":
        return
    from xmcfit.model import resolve_encoder_source
    from xmcfit.train.data import load_text_tokenizer

    load_text_tokenizer(resolve_encoder_source(the_plan.model.encoder.name))


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
    from xmcfit.train.distributed import World

    world = World.from_env()
    if world.distributed:  # one rank of a label-sharded run under torchrun: rank 0 leads what follows
        from xmcfit.train.distributed import train_rank

        return train_rank(world, lambda placement: _start(plan, data, out, resume, options, placement),
                          **options.rank_kwargs())
    return _start(plan, data, out, resume, options, None)


def _start(plan: Plan | str | Path | None, data: str | Path | None, out: str | Path | None,
           resume: str | Path | None, options: TrainOptions, placement: Any) -> TrainResult:
    """A fresh run or a resumed one (xmcfit.api.train's arguments, checked)."""
    if resume is not None:
        return _resume(Path(resume), data, options, placement)
    if plan is None or data is None:
        raise XmcfitError("give a PLAN and --data PATH (or --resume RUN_DIR)")
    from xmcfit.plan.inputs import read_plan
    from xmcfit.rundir import DataOptions, check_run_target

    the_plan = plan if isinstance(plan, Plan) else read_plan(plan)  # a hand-edited plan.json re-priced, said
    name = Path(plan).stem if not isinstance(plan, Plan) else "run"
    run_dir = Path(out) if out is not None else Path("runs") / name
    check_run_target(run_dir, data)  # a directory of the user's is refused before anything else happens
    data_options = DataOptions(str(data), options.text_fields, options.label_field, options.limit)
    return _fresh(the_plan, run_dir, data_options, options, placement)


def _fresh(the_plan: Plan, run_dir: Path, data_options: DataOptions, options: TrainOptions,
           placement: Any) -> TrainResult:
    from xmcfit.device import pick_device
    from xmcfit.rundir import RunLock, make_run_root, prepare_run_dir
    from xmcfit.train.data import data_fingerprint, read_train_split
    from xmcfit.train.distributed import World, check_processes

    check_processes(the_plan, World.from_env(), auto_recover=options.auto_recover, device=options.device)
    pick_device(options.device)
    dataset = read_train_split(the_plan, data_options)
    _check_encoder_files(the_plan)
    make_run_root(run_dir, data_options.path)
    with RunLock(run_dir):
        prepare_run_dir(the_plan, run_dir, data_options, data_fingerprint(dataset), restart_unstarted=True)
        return _run(the_plan, run_dir, data_options, dataset, options, placement, resume=False)


def _resume(run_dir: Path, data: str | Path | None, options: TrainOptions, placement: Any) -> TrainResult:
    from xmcfit.device import pick_device
    from xmcfit.rundir import (RunFiles, RunLock, can_restart_in_place, check_plan_unchanged, data_options_of,
                               read_run_info, require_run_dir)
    from xmcfit.train.distributed import World, check_processes

    require_run_dir(run_dir)
    read_run_info(run_dir)  # a run.json that cannot be read is one line before the lock is taken
    with RunLock(run_dir):
        info = read_run_info(run_dir)  # under the lock: another process may have just finished it
        if info.get("status") == "done":
            raise RunAlreadyFinished(f"{run_dir}: already finished ({info.get('epochs_done')} epochs); "
                                     "nothing to resume")
        check_plan_unchanged(run_dir, info)
        the_plan = Plan.from_json(RunFiles(run_dir).plan)
        check_processes(the_plan, World.from_env(), auto_recover=options.auto_recover, device=options.device)
        data_options = data_options_of(info)
        if data is not None:
            data_options = dataclasses.replace(data_options, path=str(data))
        pick_device(options.device)
        restart = can_restart_in_place(run_dir, info)
        dataset = _resumed_data(the_plan, run_dir, info, data_options, moved=data is not None, restart=restart)
        return _run(the_plan, run_dir, data_options, dataset, options, placement, resume=not restart)


def _resumed_data(the_plan: Plan, run_dir: Path, info: dict[str, Any], data_options: DataOptions, *,
                  moved: bool, restart: bool) -> Any:
    """The training split of a resumed run, checked to be the data it started with (unless it restarts from
    step 0: then its derived files are cleared); run.json records where the data is now."""
    from xmcfit.data import LabelVocab
    from xmcfit.rundir import RunFiles, clear_for_restart, write_run_info
    from xmcfit.train.data import data_fingerprint, read_train_split

    files = RunFiles(run_dir)
    vocab = LabelVocab.load(files.labels) if files.labels.exists() and not restart else None
    dataset = read_train_split(the_plan, data_options, vocab)
    fingerprint = data_fingerprint(dataset)
    recorded = info.get("data_fingerprint")
    if recorded and fingerprint != recorded and not restart:
        raise XmcfitError(f"{data_options.path}: not the training data run {run_dir} started with (data "
                          f"fingerprint {fingerprint}, recorded {recorded}); pass --data with that data")
    if restart:
        _check_encoder_files(the_plan)
        log.warning("%s has no checkpoint yet: starting it again from step 0", run_dir)
        clear_for_restart(run_dir)
    if moved or restart:  # recorded resolved, as a fresh run records it
        info["data"] = {**dataclasses.asdict(data_options), "path": str(Path(data_options.path).resolve())}
        info["data_fingerprint"] = fingerprint
        write_run_info(run_dir, info)
    return dataset


def _run(the_plan: Plan, run_dir: Path, data_options: DataOptions, dataset: Any, options: TrainOptions,
         placement: Any, *, resume: bool) -> TrainResult:
    """Train in this process: alone (placement None), or as rank 0 of a label-sharded run (a LabelSharded
    placement: the other ranks start once this one has written the run's data records)."""
    from xmcfit.progress import step_callback
    from xmcfit.train.data import load_train_data
    from xmcfit.train.loop import run_training

    train_data = load_train_data(the_plan, run_dir, data_options, resume=resume, dataset=dataset)
    if placement is not None:
        placement.records_ready(run_dir, resume)
    loggers = _loggers(options.log_to, run_dir, options.log_every, the_plan)
    try:
        with step_callback(options.progress, the_plan) as shown:
            callbacks = [c for c in (options.on_step, shown, *loggers) if c is not None]
            return run_training(the_plan, run_dir, train_data, device=options.device, resume=resume,
                                max_steps=options.max_steps, log_every=options.log_every,
                                auto_recover=options.auto_recover, on_step=_each(callbacks),
                                checkpoints=options.checkpoints, placement=placement)
    finally:
        for logger in loggers:
            logger.close()


def _each(callbacks: Sequence[Callable[[StepStats], None]]) -> Callable[[StepStats], None]:
    """One step callback that calls each of `callbacks` in turn."""
    def each_step(stats: StepStats) -> None:
        for callback in callbacks:
            callback(stats)

    return each_step


# -- evaluate and predict (xmcfit.evaluate holds them; here for one place to look) ---------------------------

def load(run_dir: str | Path, device: str | None = None) -> Model:
    """A finished run directory, verified (weights checksum) and loaded for scoring: xmcfit.evaluate.load."""
    from xmcfit.evaluate import load as load_model

    return load_model(run_dir, device=device)


def evaluate(run: str | Path | Model, data: str | Path | None = None, split: str | None = None, *,
             propensity_a: float | None = None, propensity_b: float | None = None,
             device: str | None = None) -> EvalResult:
    """Evaluate a run directory (or a loaded Model) on a labelled split: xmcfit.evaluate.evaluate."""
    from xmcfit.evaluate import evaluate as evaluate_model

    return evaluate_model(run, data, split, propensity_a=propensity_a, propensity_b=propensity_b, device=device)
