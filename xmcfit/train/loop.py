"""The single-device training recipe: the one place where the recipe's parts are wired together.

    setup (train/setup.py)  ->  epochs of steps (train/epoch.py, train/step.py)  ->  finish (train/finish.py)
                                checkpoints after every epoch and on a stop (train/checkpoint.py)

Components (model, sparse layer, rewirer, objectives, data) know nothing of each other; `run_training`
reads only the plan, the data and the run directory. When a step runs out of GPU memory the state is
saved, and with --auto-recover the run goes on from it with half the micro-batch (a loop, not a
recursion: the failed attempt's tensors are freed first).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch

from xmcfit.device import pick_device
from xmcfit.plan.memory import reprice
from xmcfit.plan.schema import Plan
from xmcfit.rundir import RunFiles, trim_log
from xmcfit.seed import seed_everything
from xmcfit.train.checkpoint import CheckpointPolicy, Progress, load_training_state
from xmcfit.train.data import TrainData
from xmcfit.train.epoch import (StepRecorder, StepStats, StopRules, TrainingPaused, TrainingStopped,
                                catch_stop_signals, run_epoch)
from xmcfit.train.finish import TrainResult, finish_training
from xmcfit.train.probe import ProbeBatches, frozen_features
from xmcfit.train.memory_report import MemoryMeter
from xmcfit.train.setup import setup_training

log = logging.getLogger(__name__)

__all__ = ["StepStats", "TrainResult", "TrainingPaused", "TrainingStopped", "run_training"]


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
) -> TrainResult:
    """Train `plan` on `data`, writing checkpoints, a JSONL log and memory.json into `run_dir`.

    `max_steps` pauses (with a checkpoint) after that many optimizer steps in total; `--resume` continues.
    Raises TrainingPaused (a planned stop: --max-steps, SIGINT, SIGTERM) or TrainingStopped (diverged, out
    of memory), with work saved. `checkpoints` says when to checkpoint besides epoch ends.
    """
    dev = pick_device(device)
    policy = checkpoints or CheckpointPolicy()
    while True:
        result = _train(plan, run_dir, data, dev, resume, max_steps, log_every, on_step, policy)
        if result is not None:
            return result
        plan = _recovery_plan(plan, run_dir, auto_recover)  # out of memory: raises unless recovering
        resume = True


def _train(plan: Plan, run_dir: Path, data: TrainData, dev: torch.device, resume: bool, max_steps: int | None,
           log_every: int, on_step: Callable[[StepStats], None] | None,
           policy: CheckpointPolicy) -> TrainResult | None:
    """One attempt: set up (resuming from the latest checkpoint), run the remaining epochs, finish.
    None when a step ran out of device memory; the state of the last completed step is then saved."""
    seed_everything(plan.seed)
    meter = MemoryMeter(dev)
    parts = setup_training(plan, data, dev, resume)
    progress = load_training_state(run_dir, parts) if resume else Progress()
    trim_log(RunFiles(run_dir).log, progress.step)  # steps after the checkpoint are replayed, logged once
    stop = StopRules(run_dir, max_steps, every_steps=policy.every_steps, keep=policy.keep,
                     every_seconds=policy.every_minutes * 60 if policy.every_minutes is not None else None)
    t = plan.training
    parts.model.train()
    meter.start()
    probe: ProbeBatches | None = None
    with catch_stop_signals(stop), open(RunFiles(run_dir).log, "a") as log_file:
        recorder = StepRecorder(log_file, log_every, on_step, meter)
        while progress.epoch < t.probe_epochs + t.epochs:
            if progress.epoch < t.probe_epochs and probe is None:
                probe = ProbeBatches(frozen_features(parts, data, t.eval_batch), data)
            if progress.epoch >= t.probe_epochs:
                probe = None  # the end-to-end phase: free the frozen features
            collate = probe
            if not run_epoch(parts, data, progress, recorder, stop, micro_batch=t.micro_batch,
                             grad_accum=t.grad_accum, seed=plan.seed, collate=collate):
                stop.save(parts, progress)
                return None
            progress.epoch += 1
            progress.batch_in_epoch = 0
            stop.save(parts, progress)
    return finish_training(plan, run_dir, parts, meter, progress, recorder.last_loss)


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
    smaller.save(run_dir / "plan.json")
    log.warning("out of memory: micro-batch %d -> %d, accumulation %d -> %d", t.micro_batch,
                smaller.training.micro_batch, t.grad_accum, smaller.training.grad_accum)
    return smaller
