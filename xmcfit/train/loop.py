"""The training recipe: the one place where the recipe's parts are wired together.

    setup (train/setup.py)  ->  epochs of steps (train/epoch.py, train/step.py)  ->  finish (train/finish.py)
                                checkpoints after every epoch and on a stop (train/checkpoint.py)

Components (model, sparse layer, rewirer, objectives, data) know nothing of each other; `run_training`
reads only the plan, the data and the run directory. When a step runs out of GPU memory the state is
saved, and with --auto-recover the run goes on from it with half the micro-batch (a loop, not a
recursion: the failed attempt's tensors are freed first).

A `Placement` says where the parts live and how state is written: `OneDevice` here, or one rank of a
label-sharded run (xmcfit.train.distributed.LabelSharded), which builds other parts and checkpoints
by shard but runs the same epochs and steps.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Protocol, TextIO

import numpy as np
import torch

from xmcfit.device import pick_device
from xmcfit.plan.memory import reprice
from xmcfit.plan.schema import Plan
from xmcfit.rundir import RunFiles, record_plan, trim_log
from xmcfit.seed import seed_everything
from xmcfit.threads import LoadWatch, allowed_cores, apply_threads, intra_op_threads
from xmcfit.train.checkpoint import CheckpointPolicy, Progress, load_training_state, save_training_state
from xmcfit.train.data import TrainData
from xmcfit.train.epoch import (StepRecorder, StepStats, StopRules, TrainingPaused, TrainingStopped,
                                catch_stop_signals, run_epoch)
from xmcfit.train.finish import TrainResult, finish_training
from xmcfit.train.probe import ProbeBatches, frozen_features
from xmcfit.train.memory_report import MemoryMeter
from xmcfit.train.setup import TrainParts, setup_training
from xmcfit.train.timing import step_time_report, workload_from_dataset

log = logging.getLogger(__name__)

__all__ = ["OneDevice", "Placement", "StepStats", "TrainResult", "TrainingPaused", "TrainingStopped", "run_training"]

Collate = Callable[[np.ndarray], dict[str, torch.Tensor]]


class Placement(Protocol):
    """Where a run's parts live and how its state is written; what `run_training` drives."""

    n_ranks: int
    """Processes that share each micro-batch (its rows are split between them)."""

    def setup(self, plan: Plan, data: TrainData, device: torch.device, resume: bool) -> TrainParts: ...

    def collate(self, collate: Collate) -> Collate:
        """What turns a micro-batch's row ids into this process's inputs."""
        ...

    def save(self, run_dir: Path, parts: TrainParts, progress: Progress, keep: int) -> None: ...

    def load(self, run_dir: Path, parts: TrainParts) -> Progress: ...

    def agree(self, flag: bool) -> bool:
        """True when `flag` is true in any process of the run (so they stop together)."""
        ...

    def open_log(self, run_dir: Path, step: int) -> TextIO:
        """train_log.jsonl for appending, its records after `step` (the checkpoint resumed from) dropped."""
        ...

    def out_of_memory(self, run_dir: Path, progress: Progress) -> None:
        """A step ran out of device memory; raises when this placement cannot go on from it."""
        ...

    def finish(self, plan: Plan, run_dir: Path, parts: TrainParts, meter: MemoryMeter, progress: Progress,
               last_loss: float) -> TrainResult: ...


class OneDevice:
    """One process on one device: the recipe parts as they are."""

    n_ranks = 1

    def setup(self, plan: Plan, data: TrainData, device: torch.device, resume: bool) -> TrainParts:
        return setup_training(plan, data, device, resume)

    def collate(self, collate: Collate) -> Collate:
        return collate

    def save(self, run_dir: Path, parts: TrainParts, progress: Progress, keep: int) -> None:
        save_training_state(run_dir, parts, progress, keep)

    def load(self, run_dir: Path, parts: TrainParts) -> Progress:
        return load_training_state(run_dir, parts)

    def agree(self, flag: bool) -> bool:
        return flag

    def open_log(self, run_dir: Path, step: int) -> TextIO:
        log_path = RunFiles(run_dir).log
        trim_log(log_path, step)  # steps after the checkpoint are replayed, logged once
        return open(log_path, "a")

    def out_of_memory(self, run_dir: Path, progress: Progress) -> None:
        """Nothing to refuse: the state is saved and --auto-recover goes on from it."""

    def finish(self, plan: Plan, run_dir: Path, parts: TrainParts, meter: MemoryMeter, progress: Progress,
               last_loss: float) -> TrainResult:
        return finish_training(plan, run_dir, parts, meter, progress, last_loss)


def run_training(
    plan: Plan,
    run_dir: Path,
    data: TrainData,
    *,
    device: str | None = None,
    resume: bool = False,
    max_steps: int | None = None,
    log_every: int = 10,
    auto_recover: bool = False,
    on_step: Callable[[StepStats], None] | None = None,
    checkpoints: CheckpointPolicy | None = None,
    placement: Placement | None = None,
) -> TrainResult:
    """Train `plan` on `data`, writing checkpoints, a JSONL log and memory.json into `run_dir`.

    `max_steps` pauses (with a checkpoint) after that many optimizer steps in total; `--resume` continues.
    Raises TrainingPaused (a planned stop: --max-steps, SIGINT, SIGTERM) or TrainingStopped (diverged, out
    of memory), with work saved. `checkpoints` says when to checkpoint besides epoch ends. `placement`: one
    device (default), or one rank of a label-sharded run (its device already chosen).
    """
    dev = pick_device(device)
    threads = apply_threads(intra_op_threads(allowed_cores()))
    policy = checkpoints or CheckpointPolicy()
    placement = placement or OneDevice()
    in_one_piece = not resume
    while True:
        result = _train(plan, run_dir, data, dev, resume, max_steps, log_every, on_step, policy, placement, threads,
                        in_one_piece)
        if result is not None:
            return result
        plan = _recovery_plan(plan, run_dir, auto_recover)  # out of memory: raises unless recovering
        resume, in_one_piece = True, False


def _train(plan: Plan, run_dir: Path, data: TrainData, dev: torch.device, resume: bool, max_steps: int | None,
           log_every: int, on_step: Callable[[StepStats], None] | None,
           policy: CheckpointPolicy, placement: Placement, threads: int = 1,
           in_one_piece: bool = False) -> TrainResult | None:
    """One attempt: set up (resuming from the latest checkpoint), run the remaining epochs, finish.
    None when a step ran out of device memory; the state of the last completed step is then saved.
    `in_one_piece`: this attempt is the whole run, so step_time.json gets its wall time."""
    seed_everything(plan.seed)
    meter = MemoryMeter(dev)
    parts = placement.setup(plan, data, dev, resume)
    progress = placement.load(run_dir, parts) if resume else Progress()
    stop = StopRules(run_dir, max_steps, every_steps=policy.every_steps, keep=policy.keep,
                     every_seconds=policy.every_minutes * 60 if policy.every_minutes is not None else None,
                     write=placement.save, agree=placement.agree)
    t = plan.training
    parts.model.train()
    meter.start()
    started = time.perf_counter()
    probe: ProbeBatches | None = None
    with catch_stop_signals(stop), placement.open_log(run_dir, progress.step) as log_file:
        watch = LoadWatch(n_cpus=os.cpu_count() or 1, threads=threads) if dev.type == "cpu" else None
        recorder = StepRecorder(log_file, log_every, on_step, meter, load=watch)
        while progress.epoch < t.probe_epochs + t.epochs:
            if progress.epoch < t.probe_epochs and probe is None:
                probe = ProbeBatches(frozen_features(parts, data, t.eval_batch), data)
            if progress.epoch >= t.probe_epochs:
                probe = None  # the end-to-end phase: free the frozen features
            collate = placement.collate(probe if probe is not None else data.collate)
            # A micro-batch is the plan's micro_batch rows per process, split between the processes.
            if not run_epoch(parts, data, progress, recorder, stop, micro_batch=t.micro_batch * placement.n_ranks,
                             grad_accum=t.grad_accum, seed=plan.seed, collate=collate):
                placement.out_of_memory(run_dir, progress)
                stop.save(parts, progress)
                return None
            progress.epoch += 1
            progress.batch_in_epoch = 0
            stop.save(parts, progress)
    last_loss = progress.last_loss if progress.last_loss is not None else recorder.last_loss
    result = placement.finish(plan, run_dir, parts, meter, progress, last_loss)
    if getattr(getattr(placement, "world", None), "rank", 0) == 0:  # one step_time.json per run, rank 0's
        report = step_time_report(plan, workload_from_dataset(data.dataset), recorder.clock, dev,
                                  watch.threads if watch is not None else threads,
                                  busy=watch.note if watch is not None else "",
                                  run_seconds=time.perf_counter() - started if in_one_piece else None)
        report.save(RunFiles(run_dir).step_time)
    return result


def _recovery_plan(plan: Plan, run_dir: Path, auto_recover: bool) -> Plan:
    """After an out-of-memory error: half the micro-batch, twice the accumulation (same effective batch).

    Without --auto-recover (or at micro-batch 1) raise TrainingStopped naming the largest planned term.
    """
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    t = plan.training
    terms = plan.memory.terms_bytes
    largest = max(terms, key=lambda name: terms[name]) if terms else "unknown"
    if not auto_recover or t.micro_batch == 1:
        raise TrainingStopped(
            f"out of GPU memory at micro-batch {t.micro_batch} (largest planned term: {largest}); state saved in "
            f"{run_dir}. Re-plan with `xmcfit plan --micro-batch {max(1, t.micro_batch // 2)}` or a smaller "
            "--gpu-mem, or resume with --auto-recover"
        )
    smaller = reprice(replace(plan, training=replace(t, micro_batch=t.micro_batch // 2, grad_accum=t.grad_accum * 2)))
    record_plan(run_dir, smaller)
    log.warning("out of memory: micro-batch %d -> %d, accumulation %d -> %d", t.micro_batch,
                smaller.training.micro_batch, t.grad_accum, smaller.training.grad_accum)
    return smaller
