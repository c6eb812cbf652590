"""Recipe part 3, one epoch: shuffled micro-batch groups, a step each, then the bookkeeping around it.

After every step: count skipped (non-finite) steps and stop a diverged run, rewire on schedule, record
the step's figures (progress bar, train_log.jsonl), checkpoint every N steps or M minutes when asked, and
pause with a checkpoint on SIGINT/SIGTERM or at --max-steps. The epoch's order is a pure function of
(seed, epoch), so a resumed run replays it.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, TextIO

import numpy as np
import torch

from xmcfit.errors import XmcfitError
from xmcfit.threads import LoadWatch
from xmcfit.train.checkpoint import CHECKPOINT_DIR, DEFAULT_KEEP, Progress, checkpoint_folders, save_training_state
from xmcfit.train.data import TrainData
from xmcfit.train.memory_report import MemoryMeter
from xmcfit.train.setup import TrainParts
from xmcfit.train.timing import StepClock
from xmcfit.train.step import StepOutcome, rewire, train_step

# A run of this many consecutive non-finite losses stops training: a diverged run wastes the GPU.
MAX_BAD_STEPS_IN_A_ROW = 20


class TrainingStopped(XmcfitError):
    """Training ended early (interrupt, step limit, divergence); the last good checkpoint is on disk."""


class TrainingPaused(TrainingStopped):
    """A planned stop, not an error: --max-steps reached (exit code 0) or SIGINT/SIGTERM caught (128 + the
    signal, as shells report it: 130, 143), with a checkpoint of the step just completed saved."""

    is_error = False

    def __init__(self, message: str, *, step: int, run_dir: Path, signum: int | None) -> None:
        super().__init__(message)
        self.step = step
        self.run_dir = run_dir
        self.signum = signum
        self.exit_code = 0 if signum is None else 128 + signum


@dataclass(frozen=True)
class StepStats:
    """What the progress bar and the JSONL log show for one optimizer step."""

    step: int
    """Optimizer steps done, this one included (1-based), counted over both phases."""
    total_steps: int
    epoch: int
    """The epoch this step belongs to, 1-based, the probe epochs counted first (as the screen shows it)."""
    loss: float
    main_loss: float
    aux_loss: float
    aux_weight: float
    lr_mult: float
    connections_moved: int
    points_per_s: float
    memory_bytes: int
    skipped_steps: int
    probe_steps: int = 0
    """Steps of the linear-probe phase (heads on frozen features), which come first; 0 without one."""
    step_seconds: float = 0.0
    """Wall time of this step: collate, forward, backward, update and rewiring."""
    busy: str = ""
    """A note when the machine has more runnable threads than CPUs (xmcfit.threads.busy_note), else ""."""

    @property
    def phase(self) -> str:
        """"probe" (heads on frozen features, fast) or "end_to_end" (the whole network, slower)."""
        return "probe" if self.step <= self.probe_steps else "end_to_end"

    @property
    def phase_bounds(self) -> tuple[int, int]:
        """(first step before the phase, its last step): a phase's steps are first < step <= last."""
        return (0, self.probe_steps) if self.phase == "probe" else (self.probe_steps, self.total_steps)

    def log_record(self) -> dict[str, Any]:
        """The train_log.jsonl record: the fields (step and epoch 1-based) and the phase, floats rounded to 6
        decimals."""
        record = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in vars(self).items()}
        return {**record, "phase": self.phase}


@dataclass
class StepRecorder:
    """Where each step's figures go: the on_step callback and, every `log_every` steps and at the last,
    train_log.jsonl. Remembers the last finite loss."""

    log_file: TextIO
    log_every: int
    on_step: Callable[[StepStats], None] | None
    meter: MemoryMeter
    last_loss: float = math.nan
    clock: StepClock = field(default_factory=StepClock)
    """Every end-to-end step's seconds, for step_time.json."""
    load: LoadWatch | None = None
    """Checks the machine's load now and then (CPU runs); None: not checked."""

    def busy(self) -> str:
        """The load note for this step; lowers torch's threads when the load watch says so."""
        if self.load is None:
            return ""
        threads = self.load.threads
        note = self.load.check(time.monotonic())
        if self.load.threads != threads:
            torch.set_num_threads(self.load.threads)
        return note

    def record(self, stats: StepStats, finite: bool) -> None:
        if finite:
            self.last_loss = stats.loss
        self.clock.add(stats.step_seconds, stats.phase)
        if self.on_step is not None:
            self.on_step(stats)
        if stats.step % self.log_every == 0 or stats.step == stats.total_steps:
            self.log_file.write(json.dumps(stats.log_record()) + "\n")
            self.log_file.flush()


@dataclass
class StopRules:
    """When a run checkpoints and when it stops early: every `every_steps` optimizer steps or
    `every_seconds` of wall time (both optional; epoch ends always checkpoint), and a pause with a
    checkpoint on a caught SIGINT/SIGTERM or at --max-steps. Keeps the newest `keep` checkpoints."""

    run_dir: Path
    max_steps: int | None
    signum: int | None = None
    """Set by the signal handler of `catch_stop_signals`."""
    every_steps: int | None = None
    every_seconds: float | None = None
    keep: int = DEFAULT_KEEP
    last_save: float = field(default_factory=time.monotonic)
    """time.monotonic() of the last checkpoint (or of the start)."""
    write: Callable[[Path, TrainParts, Progress, int], Any] = save_training_state
    """Writes the checkpoint: (run_dir, parts, progress, keep); a label-sharded run writes one shard per process."""
    agree: Callable[[bool], bool] = bool
    """True when any process of the run says so: processes that share steps checkpoint and stop at the same
    step, whichever of them caught the signal or saw its clock run out."""

    def save(self, parts: TrainParts, progress: Progress) -> None:
        """Checkpoint `progress.step` now."""
        self.write(self.run_dir, parts, progress, self.keep)
        self.last_save = time.monotonic()

    def check(self, parts: TrainParts, progress: Progress) -> None:
        """After a step: checkpoint when one is due; checkpoint and raise TrainingPaused when a signal came (to
        any process) or the step limit is reached."""
        at_limit = self.max_steps is not None and progress.step >= self.max_steps
        if self.agree(self.signum is not None or at_limit):
            self.save(parts, progress)
            why = (f"stopped at --max-steps {self.max_steps}" if at_limit and self.signum is None
                   else f"interrupted by signal {self.signum or '(caught by another process)'}")
            raise TrainingPaused(f"{why} at step {progress.step}/{parts.schedule.total_steps}; checkpoint saved, "
                                 f"continue with `xmcfit train --resume {self.run_dir}`",
                                 step=progress.step, run_dir=self.run_dir, signum=self.signum)
        due_by_steps = self.every_steps is not None and progress.step % self.every_steps == 0
        due_by_time = self.every_seconds is not None and self.agree(
            time.monotonic() - self.last_save >= self.every_seconds)
        if due_by_steps or due_by_time:
            self.save(parts, progress)


@contextlib.contextmanager
def catch_stop_signals(rules: StopRules) -> Iterator[None]:
    """On SIGINT/SIGTERM finish the current step, then checkpoint and stop (instead of dying mid-write)."""
    def handler(signum, _frame):
        rules.signum = signum

    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for s in previous:
            signal.signal(s, handler)
    except ValueError:  # not the main thread: leave signals alone
        previous = {}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def epoch_batches(n_points: int, micro_batch: int, seed: int, epoch: int) -> list[np.ndarray]:
    """The epoch's shuffled micro-batches: a pure function of (seed, epoch), so resuming replays them."""
    order = np.random.default_rng([seed, epoch]).permutation(n_points)
    return [order[i : i + micro_batch] for i in range(0, n_points, micro_batch)]


def count_step(out: StepOutcome, progress: Progress, run_dir: Path) -> None:
    """Count a skipped (non-finite) step; MAX_BAD_STEPS_IN_A_ROW of them in a row stop the run."""
    if out.finite:
        progress.bad_in_a_row = 0
        return
    progress.skipped += 1
    progress.bad_in_a_row += 1
    if progress.bad_in_a_row >= MAX_BAD_STEPS_IN_A_ROW:
        saved = checkpoint_folders(run_dir / CHECKPOINT_DIR)
        where = (f"the last checkpoint, {saved[0].name} in {run_dir}, is intact" if saved
                 else f"no checkpoint was written yet, so `xmcfit train` with a re-made plan and --out {run_dir} "
                      "restarts it in place")
        raise TrainingStopped(
            f"loss was not finite for {progress.bad_in_a_row} steps in a row at step "
            f"{progress.step}; {where}. "
            "Lower the learning rates or use --precision bf16_amp/fp32 in `xmcfit plan`"
        )


def run_epoch(parts: TrainParts, data: TrainData, progress: Progress, recorder: StepRecorder, stop: StopRules, *,
              micro_batch: int, grad_accum: int, seed: int,
              collate: Callable[[np.ndarray], dict[str, torch.Tensor]] | None = None) -> bool:
    """The rest of epoch `progress.epoch`, from group `progress.batch_in_epoch` on. False when the device
    ran out of memory in a step: gradients are cleared and `progress` is that of the last completed step.
    `collate` turns row ids into a micro-batch (default: the data's own; the probe phase's frozen features)."""
    collate = collate or data.collate
    batches = epoch_batches(data.dataset.n_points, micro_batch, seed, progress.epoch)
    groups = [batches[i : i + grad_accum] for i in range(0, len(batches), grad_accum)]
    while progress.batch_in_epoch < len(groups):
        group = groups[progress.batch_in_epoch]
        tick = time.perf_counter()
        micro = [collate(rows) for rows in group]
        try:
            out = train_step(parts, micro, progress.step)
        except torch.OutOfMemoryError:
            parts.optimizers.zero_grad()
            return False
        count_step(out, progress, stop.run_dir)
        progress.moved_total += rewire(parts, progress.step + 1)
        progress.step += 1
        progress.batch_in_epoch += 1
        n_in_step = sum(len(rows) for rows in group)
        seconds = max(1e-9, time.perf_counter() - tick)
        recorder.record(StepStats(
            step=progress.step, total_steps=parts.schedule.total_steps, epoch=progress.epoch + 1, loss=out.loss,
            main_loss=out.main, aux_loss=out.aux, aux_weight=out.alpha, lr_mult=out.lr_mult,
            connections_moved=progress.moved_total,
            points_per_s=n_in_step / seconds, memory_bytes=recorder.meter.current_bytes(),
            skipped_steps=progress.skipped, probe_steps=parts.schedule.probe_steps, step_seconds=seconds,
            busy=recorder.busy(),
        ), finite=out.finite)
        if out.finite:
            progress.last_loss = out.loss  # checkpointed: a resume with no step left still reports it
        stop.check(parts, progress)
    return True
