"""`xmcfit train`: train what a plan describes on a dataset, with a progress display and a memory report.

A thin shell over xmcfit.api.train. A run paused at --max-steps exits 0, and one paused by Ctrl-C or
SIGTERM exits 130 or 143 (128 + the signal, as shells report it), each with its checkpoint saved and one
line saying how to continue; failures are one `Error:` line and exit code 2.

Under torchrun (or with --nproc N, which starts torchrun) each process trains one label shard
(xmcfit.train.distributed); rank 0 draws the progress display and the report.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer

from xmcfit import api
from xmcfit.api import DEVICE_CHOICES, DEVICE_COMPLETIONS, LOG_TARGETS
from xmcfit.commands.choices import choice_enum, completer
from xmcfit.errors import XmcfitError

LogTarget = choice_enum("LogTarget", LOG_TARGETS)


def train(
    plan_path: Optional[Path] = typer.Argument(None, metavar="PLAN", help="plan.json from `xmcfit plan`."),
    data: Optional[str] = typer.Option(None, "--data", help="Dataset directory or file (see `xmcfit data stats`); "
                                       "with --resume, where the run's data moved to (checked to be the same)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory to create [default: runs/<plan name>]."),
    resume: Optional[Path] = typer.Option(None, "--resume",
                                          help="Continue the run in this directory (from step 0 if it has no checkpoint)."),
    device: str = typer.Option("auto", "--device", help=f"{DEVICE_CHOICES}.",
                               autocompletion=completer(DEVICE_COMPLETIONS)),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1,
                                            help="Pause with a checkpoint after this many optimizer steps (exit 0)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Train on the first N points only."),
    text_field: Optional[list[str]] = typer.Option(None, "--text-field", help="JSON-lines text field (repeatable)."),
    label_field: Optional[str] = typer.Option(None, "--label-field", help="JSON-lines label field."),
    auto_recover: bool = typer.Option(False, "--auto-recover",
                                      help="On GPU out-of-memory halve the micro-batch, double accumulation, go on."),
    log_every: int = typer.Option(10, "--log-every", min=1, help="Steps between train_log.jsonl records."),
    log_to: Optional[list[LogTarget]] = typer.Option(None, "--log-to",
                                               help="Also log the step figures to TensorBoard event files in "
                                                    "RUN/tensorboard (needs `pip install 'xmcfit[tensorboard]'`)."),
    save_every_steps: Optional[int] = typer.Option(None, "--save-every-steps", min=1,
                                                   help="Checkpoint every N optimizer steps (besides epoch ends)."),
    save_every_minutes: float = typer.Option(30.0, "--save-every-minutes",
                                             help="Checkpoint when this many minutes passed since the last one "
                                                  "(0 = only at epoch ends and --save-every-steps)."),
    keep_checkpoints: int = typer.Option(2, "--keep-checkpoints", min=1,
                                         help="Newest checkpoints kept; a resume falls back to an older one when "
                                              "the newest fails its checksum."),
    nproc: Optional[int] = typer.Option(None, "--nproc", min=1,
                                        help="Train in N processes on this machine (torchrun started for you), the "
                                             "classifier split by labels; the plan's --devices must be N."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1,
                                          help="CPU threads per training process (default: OMP_NUM_THREADS, else "
                                               "the cores this process may use, divided among --nproc processes)."),
) -> None:
    """Train a plan on a dataset; `--resume RUN_DIR` continues an interrupted run exactly."""
    from xmcfit import report

    if threads is not None:  # read by the trainer (xmcfit.threads.intra_op_threads) and by --nproc's processes
        import os

        os.environ["OMP_NUM_THREADS"] = str(threads)
    rank, n_processes = api.this_process()
    who = f"rank {rank} " if n_processes > 1 else ""
    logging.basicConfig(level=logging.WARNING, format=f"%(levelname)s {who}%(name)s: %(message)s")
    if resume is not None and (plan_path is not None or out is not None):
        raise XmcfitError("--resume takes the plan and run directory recorded in the run; drop PLAN and --out")
    policy = api.checkpoint_policy(every_steps=save_every_steps, keep=keep_checkpoints,
                                   every_minutes=save_every_minutes if save_every_minutes != 0 else None)
    if api.launch_processes(plan_path, resume, nproc, auto_recover=auto_recover, device=device,
                            args=["train", *_forwarded(locals())]):
        return
    result = api.train(plan_path, data, out, resume=resume, device=device, max_steps=max_steps, limit=limit,
                       text_fields=text_field, label_field=label_field, auto_recover=auto_recover,
                       log_every=log_every, log_to=tuple(t.value for t in log_to or ()), checkpoints=policy,
                       progress=rank == 0)
    if rank == 0:
        report.print_train_result(result)


_FORWARDED = {"data": "--data", "out": "--out", "resume": "--resume", "device": "--device", "max_steps": "--max-steps",
              "limit": "--limit", "text_field": "--text-field", "label_field": "--label-field",
              "log_every": "--log-every", "log_to": "--log-to", "save_every_steps": "--save-every-steps",
              "save_every_minutes": "--save-every-minutes", "keep_checkpoints": "--keep-checkpoints"}
"""The `xmcfit train` options each torchrun process of --nproc gets, as they were given."""


def _forwarded(given: dict) -> list[str]:
    """The command line of one torchrun process: PLAN and every option in _FORWARDED that has a value."""
    args = [str(given["plan_path"])] if given["plan_path"] is not None else []
    for name, flag in _FORWARDED.items():
        values = given[name] if isinstance(given[name], list) else [given[name]]
        args += [arg for value in values if value is not None for arg in (flag, str(value))]
    return args
