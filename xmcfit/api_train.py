"""How xmcfit.train runs: start a fresh run or resume one, check everything before the run directory is
made, then hand the trainer the plan, the data and the TrainOptions (the training half of xmcfit.api)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xmcfit.errors import XmcfitError
from xmcfit.options import TrainOptions
from xmcfit.plan.schema import Plan

if TYPE_CHECKING:
    from xmcfit.rundir import DataOptions
    from xmcfit.train.epoch import StepStats
    from xmcfit.train.finish import TrainResult

log = logging.getLogger(__name__)


class RunAlreadyFinished(XmcfitError):
    """`resume` named a run that is done: nothing to train (not an error; the command line exits 0)."""

    is_error = False
    exit_code = 0


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


def start(plan: Plan | str | Path | None, data: str | Path | None, out: str | Path | None,
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
    from xmcfit.train.world import World, check_processes

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
    from xmcfit.train.world import World, check_processes

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
