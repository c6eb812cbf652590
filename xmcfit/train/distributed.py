"""Label-sharded training on torch.distributed: one process per device, started by torchrun.

    torchrun --nproc-per-node N -m xmcfit train plan.json --data DIR      (or `xmcfit train --nproc N ...`)

Rank r of N (the plan's n_devices must be N) holds
  - the encoder, intermediate layer and auxiliary head, replicated: the encoder wrapped in
    DistributedDataParallel, whose gradient buckets are all-reduced during the backward; the heads'
    gradients all-reduced after it;
  - classifier rows [r·R, (r+1)·R), R = ceil(L / N): values, indices, bias, their gradients and optimizer
    state, initialised as those rows of the one-process classifier (xmcfit.sparse.sharded);
  - the same rows of the TF-IDF side (values, pattern, their gradient and AdamW state; the idf whole),
    initialised as the one-process side's rows;
  - its own SET rewirer over its rows (seed + 1 + r) and its own dropout stream;
and takes plan-micro_batch rows of every micro-batch of micro_batch x N rows, a split of the shuffled
order a one-process run of the same effective batch walks, so a step sees the same points.

Per micro-batch, what crosses the wire (m = plan micro_batch, d = features, P = encoder parameters):
  forward   all-gather of the features, (N-1)·m·d values received, and of the positives (2 int64 each);
            with a TF-IDF side, all-gather of its dense input rows, (N-1)·m·n_words values received;
            all-reduce of the main and auxiliary losses (a few scalars)
  backward  the features' gradient reduce-scattered to the rank that made them, (N-1)·m·d·4 bytes sent
            (gloo before torch 2.13 has no reduce-scatter: the (N·m, d) gradient is all-reduced instead)
  last micro-batch of a step: DDP's all-reduce of the encoder's gradients in 25 MiB buckets (ring:
            2·(N-1)/N·P·4 bytes) and one all-reduce per head parameter; a flag for "all finite"
Gradients are summed, not averaged (DDP's default): every loss is already divided by the global batch,
so the sum over ranks is the one-process gradient.

Checkpoints: rank 0 writes the replicated state (encoder, heads, their optimizer, the progress, the
shard layout) to `checkpoint/` as a one-process run would; rank r writes its shard (classifier and
TF-IDF side rows, their optimizer state, its rewirer generator and RNGs) to `checkpoint/shard-r-of-N/`;
each keeps its newest two and a resume loads the newest step every root has. The same N resumes; another is one line.
At the end rank 0 concatenates the shards into model.safetensors, so `xmcfit eval` and `predict` load
a sharded run like any other, on one device: scoring needs the classifier's L·k values and indices but
none of its gradients, optimizer state or activations, which is what outgrew one device.
The run directory must be on a filesystem every rank sees (one machine, or a shared mount).
Its parts: world.py (torch-free: the torchrun environment, the process checks), launch.py (torch-free:
`--nproc`), ranks.py (device, process group, rank 0's handshake errors), sharded_setup.py (this rank's
classifier rows, the DDP encoder, the sharded losses), sharded_checkpoint.py (replicated root and shards);
this module holds the placement run_training drives and a rank's entry point.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, TextIO

import numpy as np
import torch
import torch.distributed as dist

from xmcfit.errors import XmcfitError
from xmcfit.plan.schema import Plan
from xmcfit.rundir import RunFiles, data_options_of, read_run_info, trim_log
from xmcfit.train.checkpoint import CheckpointPolicy, Progress
from xmcfit.train.data import TrainData
from xmcfit.train.epoch import StepStats
from xmcfit.train.finish import TrainResult, write_final_weights
from xmcfit.train.loop import Collate, run_training
from xmcfit.train.memory_report import MemoryMeter, memory_report
from xmcfit.train.ranks import RankError, SharedError, any_rank, init_process_group, rank_data, rank_device
from xmcfit.train.setup import TrainParts
from xmcfit.train.sharded_checkpoint import load_sharded_state, merged_weights, save_sharded_state
from xmcfit.train.sharded_setup import setup_label_sharded
from xmcfit.train.world import World


class LabelSharded:
    """One rank of a label-sharded run: the Placement (xmcfit.train.loop) run_training drives, and the
    handshake by which rank 0 lets the others start (records_ready / wait_ready) or stop (announce)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.n_ranks = world.size
        self.device = torch.device("cpu")
        self.announced = False

    def setup(self, plan: Plan, data: TrainData, device: torch.device, resume: bool) -> TrainParts:
        self.device = device
        return setup_label_sharded(plan, data, device, resume, self.world)

    def collate(self, collate: Collate) -> Collate:
        size, rank = self.world.size, self.world.rank

        def mine(rows: np.ndarray) -> dict[str, torch.Tensor]:
            return collate(np.array_split(rows, size)[rank])  # this rank's share, in order

        return mine

    def save(self, run_dir: Path, parts: TrainParts, progress: Progress, keep: int) -> None:
        save_sharded_state(run_dir, parts, progress, self.world, keep)

    def load(self, run_dir: Path, parts: TrainParts) -> Progress:
        return load_sharded_state(run_dir, parts, self.world)

    def agree(self, flag: bool) -> bool:
        return any_rank(flag, self.device)

    def open_log(self, run_dir: Path, step: int) -> TextIO:
        if self.world.rank != 0:
            return open(os.devnull, "a")
        trim_log(RunFiles(run_dir).log, step)  # steps after the checkpoint are replayed, logged once
        return open(RunFiles(run_dir).log, "a")

    def out_of_memory(self, run_dir: Path, progress: Progress) -> None:
        raise RankError(f"rank {self.world.rank} ran out of device memory after step {progress.step}; the other "
                        "ranks stop with it. Re-plan with a smaller `xmcfit plan --micro-batch` or --gpu-mem and "
                        f"resume with `xmcfit train --resume {run_dir} --nproc {self.world.size}` (the last "
                        "checkpoint is intact)")

    def finish(self, plan: Plan, run_dir: Path, parts: TrainParts, meter: MemoryMeter, progress: Progress,
               last_loss: float) -> TrainResult:
        """memory.json (rank 0's: it holds the largest shard) and model.safetensors with every shard's rows."""
        report = memory_report(plan, parts.model, parts.optimizers.all(), meter.stop(), parts.device)
        probe = min(progress.epoch, plan.training.probe_epochs)
        if self.world.rank == 0:
            weights = merged_weights(run_dir, parts, progress.step, self.world)
            write_final_weights(RunFiles(run_dir), weights, report, epochs_done=progress.epoch - probe,
                                steps=progress.step, probe_epochs_done=probe)
        dist.barrier()
        return TrainResult(run_dir, progress.step, progress.epoch - probe, progress.skipped, report, last_loss, probe)

    # -- rank 0 and the others before training: one broadcast of [error, run directory, resume] ----------

    def records_ready(self, run_dir: Path, resume: bool) -> None:
        """Rank 0: the run directory is prepared and its data records written; the others may start."""
        self._broadcast([None, str(run_dir), resume])

    def announce(self, err: BaseException) -> None:
        """Rank 0: it failed before records_ready; the others raise the same line (rank 0 prints it)."""
        if isinstance(err, XmcfitError):
            self._broadcast([(str(err), err.is_error, err.exit_code), None, None])
        else:
            self._broadcast([(f"rank 0 failed ({type(err).__name__})", True, XmcfitError.exit_code), None, None])

    def wait_ready(self) -> tuple[Path, bool]:
        """Ranks other than 0: the run directory and whether it resumes, once rank 0 said records_ready;
        SharedError when rank 0 announced a failure instead."""
        message: list[Any] = [None, None, None]
        dist.broadcast_object_list(message, src=0)
        if message[0] is not None:
            raise SharedError(*message[0])
        return Path(message[1]), bool(message[2])

    def _broadcast(self, message: list[Any]) -> None:
        if not self.announced:
            self.announced = True
            dist.broadcast_object_list(message, src=0)


def train_rank(world: World, lead: Callable[[LabelSharded], TrainResult], *, device: str, max_steps: int | None,
               log_every: int, checkpoints: CheckpointPolicy | None,
               on_step: Callable[[StepStats], None] | None, **_: Any) -> TrainResult:
    """This process's rank of a label-sharded run (check_processes first): join the process group; rank 0
    runs `lead` (xmcfit.api's checks, run directory, data records, then training, calling records_ready
    on the way), the others wait for it and train with the same plan; leave the group."""
    dev = rank_device(device, world)
    init_process_group(world, dev)
    placement = LabelSharded(world)
    try:
        if world.rank == 0:
            try:
                return lead(placement)
            except BaseException as err:
                placement.announce(err)  # a no-op once training began: the others stop with torchrun
                raise
        run_dir, resume = placement.wait_ready()
        plan = Plan.from_json(RunFiles(run_dir).plan)
        data = rank_data(plan, run_dir, data_options_of(read_run_info(run_dir)), resume)
        return run_training(plan, run_dir, data, device=str(dev), resume=resume, max_steps=max_steps,
                            log_every=log_every, checkpoints=checkpoints, placement=placement)
    finally:
        dist.destroy_process_group()
