"""`xmcfit train`: train what a plan describes on a dataset, with a progress bar and a memory report.

Under torchrun (or with --nproc N, which starts torchrun) each process trains one label shard
(xmcfit.train.distributed); rank 0 draws the progress bar and the report.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Optional

import typer

from xmcfit.errors import XmcfitError


def train(
    plan_path: Optional[Path] = typer.Argument(None, metavar="PLAN", help="plan.json from `xmcfit plan`."),
    data: Optional[str] = typer.Option(None, "--data", help="Dataset directory or file (see `xmcfit data stats`)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory to create [default: runs/<plan name>]."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the run in this directory."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1,
                                            help="Stop with a checkpoint after this many optimizer steps."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Train on the first N points only."),
    text_field: Optional[list[str]] = typer.Option(None, "--text-field", help="JSON-lines text field (repeatable)."),
    label_field: Optional[str] = typer.Option(None, "--label-field", help="JSON-lines label field."),
    auto_recover: bool = typer.Option(False, "--auto-recover",
                                      help="On GPU out-of-memory halve the micro-batch, double accumulation, go on."),
    log_every: int = typer.Option(10, "--log-every", min=1, help="Steps between train_log.jsonl records."),
    nproc: Optional[int] = typer.Option(None, "--nproc", min=1,
                                        help="Train in N processes on this machine (torchrun started for you), the "
                                             "classifier split by labels; the plan's --devices must be N."),
) -> None:
    """Train a plan on a dataset; `--resume RUN_DIR` continues an interrupted run exactly."""
    from xmcfit import report
    from xmcfit.plan.schema import Plan
    from xmcfit.train.distributed import World, check_processes, launch
    from xmcfit.train.loop import run_training
    from xmcfit.rundir import DataOptions, RunFiles, data_options_of, prepare_run_dir, read_run_info
    from xmcfit.train.data import load_train_data

    world = World.from_env()
    who = f"rank {world.rank} " if world.distributed else ""
    logging.basicConfig(level=logging.WARNING, format=f"%(levelname)s {who}%(name)s: %(message)s")
    if resume is not None:
        if plan_path is not None or data is not None:
            raise XmcfitError("--resume takes the plan and data recorded in the run; drop PLAN and --data")
        run_dir = resume
        info = read_run_info(run_dir)
        if info.get("status") == "done":
            if world.rank == 0:
                typer.echo(f"{run_dir}: already finished ({info.get('epochs_done')} epochs); nothing to resume")
            return
        plan = Plan.from_json(RunFiles(run_dir).plan)
        options = data_options_of(info)
    else:
        if plan_path is None or data is None:
            raise XmcfitError("give a PLAN and --data PATH (or --resume RUN_DIR)")
        plan = Plan.from_json(plan_path)
        run_dir = out if out is not None else Path("runs") / plan_path.stem
        options = DataOptions(data, tuple(text_field) if text_field else None, label_field, limit)
    check_processes(plan, world, nproc=nproc, auto_recover=auto_recover, device=device)  # before anything is written
    if nproc is not None and nproc > 1:
        launch(nproc, _process_args(plan_path, run_dir, resume is not None, options, device, max_steps, log_every))
        return
    if world.distributed:
        _train_rank(plan, run_dir, options, world, resume is not None, device, max_steps, log_every)
        return
    if resume is None:
        prepare_run_dir(plan, run_dir, options)
    train_data = load_train_data(plan, run_dir, options, resume=resume is not None)
    with report.TrainProgress(plan.training.encoder_lr, plan.classifier.lr) as progress:
        result = run_training(plan, run_dir, train_data, device=device, resume=resume is not None,
                              max_steps=max_steps, log_every=log_every, auto_recover=auto_recover,
                              on_step=progress.update)
    report.print_train_result(result)


def _train_rank(plan, run_dir: Path, options, world, resume: bool, device: str, max_steps: Optional[int],
                log_every: int) -> None:
    """This process's rank of a label-sharded run (under torchrun); rank 0 draws the progress and the report."""
    from xmcfit import report
    from xmcfit.train.distributed import train_label_sharded

    with report.TrainProgress(plan.training.encoder_lr, plan.classifier.lr) if world.rank == 0 \
            else contextlib.nullcontext() as progress:
        result = train_label_sharded(plan, run_dir, options, world, resume=resume, device=device,
                                     max_steps=max_steps, log_every=log_every,
                                     on_step=progress.update if progress is not None else None)
    if world.rank == 0:
        report.print_train_result(result)


def _process_args(plan_path: Optional[Path], run_dir: Path, resume: bool, options, device: str,
                  max_steps: Optional[int], log_every: int) -> list[str]:
    """The `xmcfit train` arguments each torchrun process gets (the run directory always explicit)."""
    args = ["train", "--resume", str(run_dir)] if resume else ["train", str(plan_path), "--data", options.path,
                                                                "--out", str(run_dir)]
    args += ["--device", device, "--log-every", str(log_every)]
    if max_steps is not None:
        args += ["--max-steps", str(max_steps)]
    if not resume:
        for field in options.text_fields or ():
            args += ["--text-field", field]
        if options.label_field is not None:
            args += ["--label-field", options.label_field]
        if options.limit is not None:
            args += ["--limit", str(options.limit)]
    return args
