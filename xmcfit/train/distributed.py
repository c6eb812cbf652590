"""Label-sharded training on torch.distributed: one process per device, started by torchrun.

    torchrun --nproc-per-node N -m xmcfit train plan.json --data DIR      (or `xmcfit train --nproc N ...`)

Rank r of N (the plan's n_devices must be N) holds
  - the encoder, intermediate layer and auxiliary head, replicated: the encoder wrapped in
    DistributedDataParallel, whose gradient buckets are all-reduced during the backward; the heads'
    gradients all-reduced after it;
  - classifier rows [r·R, (r+1)·R), R = ceil(L / N): values, indices, bias, their gradients and optimizer
    state, initialised as those rows of the one-process classifier (xmcfit.sparse.sharded);
  - its own SET rewirer over its rows (seed + 1 + r) and its own dropout stream;
and takes plan-micro_batch rows of every micro-batch of micro_batch x N rows, a split of the shuffled
order a one-process run of the same effective batch walks, so a step sees the same points.

Per micro-batch, what crosses the wire (m = plan micro_batch, d = features, P = encoder parameters):
  forward   all-gather of the features, (N-1)·m·d values received, and of the positives (2 int64 each);
            all-reduce of the main and auxiliary losses (a few scalars)
  backward  the features' gradient reduce-scattered to the rank that made them, (N-1)·m·d·4 bytes sent
            (gloo before torch 2.13 has no reduce-scatter: the (N·m, d) gradient is all-reduced instead)
  last micro-batch of a step: DDP's all-reduce of the encoder's gradients in 25 MiB buckets (ring:
            2·(N-1)/N·P·4 bytes) and one all-reduce per head parameter; a flag for "all finite"
Gradients are summed, not averaged (DDP's default): every loss is already divided by the global batch,
so the sum over ranks is the one-process gradient.

Checkpoints: rank 0 writes the replicated state (encoder, heads, their optimizer, the progress, the
shard layout) to `checkpoint/` as a one-process run would; rank r writes its shard (classifier rows,
their optimizer state, its rewirer generator and RNGs) to `checkpoint/shard-r-of-N/`; each keeps its
newest two and a resume loads the newest step every root has. The same N resumes; another is one line.
At the end rank 0 concatenates the shards into model.safetensors, so `xmcfit eval` and `predict` load
a sharded run like any other, on one device: scoring needs the classifier's L·k values and indices but
none of its gradients, optimizer state or activations, which is what outgrew one device.
The run directory must be on a filesystem every rank sees (one machine, or a shared mount).
The torch-free parts live apart and are re-exported here: World (xmcfit.train.world) and the --nproc
launcher (xmcfit.train.launch).
"""

from __future__ import annotations

import contextlib
import datetime
import inspect
import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, TextIO

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from xmcfit.dtypes import torch_dtype
from xmcfit.errors import XmcfitError
from xmcfit.model import resolve_encoder_source
from xmcfit.objectives import GlobalBatchAuxLoss
from xmcfit.plan.memory import DDP_BUCKET_BYTES
from xmcfit.plan.schema import Plan
from xmcfit.rundir import DataOptions, RunFiles, data_options_of, read_run_info, trim_log
from xmcfit.sparse import SETRewirer
from xmcfit.sparse.rewire import RewireStats
from xmcfit.sparse.sharded import ShardedClassifierLoss, label_range, shard_fixed_fan_in, shard_linear
from xmcfit.train.checkpoint import CHECKPOINT_DIR, CheckpointPolicy, Progress, checkpoint_folders, read_checkpoint, \
    rng_state, set_rng_state, verify_checkpoint, write_checkpoint
from xmcfit.train.data import TrainData, load_train_data
from xmcfit.train.epoch import StepStats
from xmcfit.train.finish import TrainResult, write_final_weights
from xmcfit.train.launch import ReportedError, launch  # noqa: F401  (re-exported: their old home)
from xmcfit.train.loop import Collate, run_training
from xmcfit.train.memory_report import MemoryMeter, memory_report
from xmcfit.train.setup import TrainParts, setup_training
from xmcfit.train.world import World, launch_hint  # noqa: F401  (World re-exported too)

log = logging.getLogger(__name__)

KEEP_CHECKPOINTS = 2
"""Checkpoints each root keeps: ranks that crash between their writes still share the step before."""
_CLASSIFIER = "classifier."


class RankError(XmcfitError):
    """A failure of one process only (its device ran out of memory, no GPU for its LOCAL_RANK); every
    other user error of a label-sharded run happens in every process alike and is printed by rank 0 alone
    (xmcfit.cli)."""

    rank_specific = True


def check_processes(plan: Plan, world: World, *, nproc: int | None = None, auto_recover: bool = False,
                    device: str = "auto") -> None:
    """One XmcfitError line, before anything is written, unless the processes fit the plan: as many as its
    n_devices, each with labels to hold, on a device torchrun can assign."""
    n = plan.n_devices
    if nproc is not None and world.distributed:
        raise XmcfitError("--nproc starts torchrun itself; under torchrun leave it out")
    procs = nproc if nproc is not None else world.size
    if procs != n:
        if procs == 1:
            raise XmcfitError(f"the plan is for {n} devices (n_devices={n}): start {n} processes with "
                              f"{launch_hint(n)}, or re-plan with `xmcfit plan --devices 1`")
        raise XmcfitError(f"the plan is for {n} device(s) (n_devices={n}) but {procs} processes were started; "
                          f"start {n}, or re-plan with `xmcfit plan --devices {procs}`")
    if n == 1:
        return
    if auto_recover:
        raise XmcfitError("--auto-recover works on one device only: a label-sharded run cannot shrink one "
                          "rank's micro-batch; re-plan with a smaller `xmcfit plan --micro-batch` instead")
    if device.startswith("cuda:"):
        raise XmcfitError(f"--device {device}: each process takes the GPU of its LOCAL_RANK; use --device "
                          "cuda (or auto), and CUDA_VISIBLE_DEVICES to choose the GPUs")
    n_labels = plan.classifier.n_labels
    lo, hi = label_range(n_labels, n, n - 1)
    if lo >= hi:
        raise XmcfitError(f"n_labels={n_labels} over {n} devices leaves the last rank without labels "
                          f"({-(-n_labels // n)} per rank); use fewer devices")


def rank_device(requested: str, world: World) -> torch.device:
    """The device of this rank: the CPU (gloo), or the GPU of its LOCAL_RANK (NCCL)."""
    if requested == "cpu" or (requested == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise XmcfitError(f"--device {requested}: no CUDA device is visible; use --device cpu")
    if world.local_rank >= torch.cuda.device_count():
        raise RankError(f"LOCAL_RANK={world.local_rank} but only {torch.cuda.device_count()} GPU(s) are "
                          "visible; start at most that many processes per machine")
    return torch.device("cuda", world.local_rank)


PROCESS_GROUP_TIMEOUT = datetime.timedelta(minutes=60)
"""How long a collective may wait: the other ranks wait while rank 0 reads the data and clusters the
labels (minutes at millions of labels), so longer than NCCL's 10-minute default."""


def init_process_group(world: World, device: torch.device) -> None:
    """Join torchrun's rendezvous (MASTER_ADDR/MASTER_PORT): NCCL on GPUs, gloo on the CPU."""
    if device.type == "cuda":
        torch.cuda.set_device(device)
    try:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=world.rank,
                                world_size=world.size, timeout=PROCESS_GROUP_TIMEOUT)
    except (RuntimeError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise XmcfitError(f"could not join the other {world.size - 1} training process(es) ({first}); "
                          "start the processes with torchrun or `xmcfit train --nproc N`") from None


class SharedError(XmcfitError):
    """Rank 0's failure before training began (a bad plan or data, a finished run), raised again in the
    other ranks so that all stop together; rank 0 prints it (xmcfit.cli)."""

    def __init__(self, message: str, is_error: bool, exit_code: int) -> None:
        super().__init__(message)
        self.is_error, self.exit_code = is_error, exit_code


def rank_data(plan: Plan, run_dir: Path, options: DataOptions, resume: bool) -> TrainData:
    """The training data of a rank other than 0, once rank 0 has written the run's data records (label
    vocabulary and counts, encoder files, clusters): read as a resume reads them, writing nothing; a fresh
    run's pretrained encoder from where rank 0 took it."""
    data = load_train_data(plan, run_dir, options, resume=True)
    if not resume and data.encoder_source is not None:
        data = replace(data, encoder_source=resolve_encoder_source(plan.model.encoder.name))
    return data


# -- the step seam: replicated gradients ------------------------------------------------------------


def _sum_hook(group, bucket):  # no annotations: DDP compares them with its classes, and they are strings here
    """DDP communication hook (group: a ProcessGroup or None, bucket: dist.GradBucket) -> a Future of the
    bucket all-reduced as a sum (DDP's default divides by the world size; the losses here are already
    divided by the global batch)."""
    work = dist.all_reduce(bucket.buffer(), group=group, async_op=True)
    return work.get_future().then(lambda fut: fut.value()[0])


class ReplicaSync:
    """TrainParts.sync of a label-sharded run: the DDP-wrapped encoder and the replicated heads."""

    def __init__(self, encoder: DistributedDataParallel, heads: list[nn.Parameter], device: torch.device) -> None:
        self.encoder, self.heads, self.device = encoder, heads, device

    def micro_batch(self, last: bool) -> contextlib.AbstractContextManager[None]:
        """DDP accumulates locally (no_sync) until the step's last micro-batch, whose backward all-reduces."""
        return contextlib.nullcontext() if last else self.encoder.no_sync()

    def after_backward(self) -> None:
        for p in self.heads:  # the same parameters have gradients in every rank (α and the phase are global)
            if p.grad is not None:
                dist.all_reduce(p.grad)

    def all_finite(self, finite: bool) -> bool:
        return not any_rank(not finite, self.device)


def any_rank(flag: bool, device: torch.device) -> bool:
    """True when `flag` is true in any rank (a one-int all-reduce)."""
    t = torch.tensor([int(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


class ShardedRewirer(SETRewirer):
    """SET rewiring of this rank's rows; its statistics are summed over the ranks, so every rank's
    Progress (and so the checkpoint rank 0 writes) counts all connections moved."""

    def rewire(self, global_step: int) -> RewireStats:
        stats = super().rewire(global_step)
        sums = torch.tensor([float(stats.n_moved), stats.mean_abs_pruned * stats.n_moved], dtype=torch.float64,
                            device=self.layer.values.device)
        dist.all_reduce(sums)
        n_moved = int(sums[0].item())
        return RewireStats(global_step, n_moved, float(sums[1]) / n_moved if n_moved else 0.0, stats.prune_level)


# The encoder's buffers (position ids, a bag-of-words idf from the same data) are the same in every rank:
# synced once when DDP is built, not before every forward. torch 2.13 renamed the flag.
_NO_BUFFER_SYNC = ({"forward_sync_buffers": False}
                   if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
                   else {"broadcast_buffers": False})


def _classifier_shard(plan: Plan, lo: int, hi: int) -> Callable[[], nn.Module]:
    cls = plan.classifier
    dtype = torch_dtype(cls.value_dtype)
    if cls.kind == "dense":
        return lambda: shard_linear(cls.in_features, cls.n_labels, lo, hi, bias=cls.bias, dtype=dtype)
    return lambda: shard_fixed_fan_in(cls.in_features, cls.n_labels, cls.fan_in, lo, hi, seed=plan.seed,
                                      bias=cls.bias, dtype=dtype, index_dtype=torch_dtype(cls.index_dtype))


def rank_seed(seed: int, rank: int) -> int:
    """Rank r > 0's seed for its dropout masks (rank 0 keeps the plan's seed)."""
    return int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])


def setup_label_sharded(plan: Plan, data: TrainData, device: torch.device, resume: bool, world: World) -> TrainParts:
    """setup_training with this rank's classifier rows, the encoder in DDP and the sharded losses."""
    cls = plan.classifier
    lo, hi = label_range(cls.n_labels, world.size, world.rank)
    parts = setup_training(plan, data, device, resume, build_classifier_fn=_classifier_shard(plan, lo, hi))
    model = parts.model
    encoder = DistributedDataParallel(model.encoder, device_ids=[device.index] if device.type == "cuda" else None,
                                      bucket_cap_mb=DDP_BUCKET_BYTES / 2**20, **_NO_BUFFER_SYNC)
    encoder.register_comm_hook(None, _sum_hook)
    rewirer = None
    if parts.rewirer is not None:
        rewirer = ShardedRewirer(model.classifier, parts.optimizers.classifier, parts.rewirer.schedule,
                                 interval=parts.rewirer.interval, end_step=parts.rewirer.end_step,
                                 mode=parts.rewirer.mode, seed=plan.seed + 1 + world.rank,
                                 chunk_rows=parts.rewirer.chunk_rows)
    optimizers = parts.optimizers
    if optimizers.scaler.is_enabled():
        # fp16: skip a step in every rank when any rank's gradients overflowed (the scaler all-reduces it).
        from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler

        optimizers = replace(optimizers, scaler=ShardedGradScaler(device.type, enabled=True))
    if world.rank:
        torch.manual_seed(rank_seed(plan.seed, world.rank))
    return replace(
        parts, optimizers=optimizers, rewirer=rewirer,
        classifier_loss=ShardedClassifierLoss(model.classifier, lo, cls.n_labels, cls.loss, cls.loss_chunk_size,
                                              cls.loss_reduction),
        aux_loss=GlobalBatchAuxLoss(parts.aux_loss) if parts.aux_loss is not None else None,
        sync=ReplicaSync(encoder, model.parts().heads, device),
    )


# -- checkpoints ------------------------------------------------------------------------------------


def shard_root(run_dir: Path, rank: int, world_size: int) -> Path:
    return run_dir / CHECKPOINT_DIR / f"shard-{rank}-of-{world_size}"


def _steps(root: Path) -> set[int]:
    """Steps with a checkpoint folder under `root` that verifies (every file of its manifest intact)."""
    return {int(p.name[5:]) for p in checkpoint_folders(root) if verify_checkpoint(p) is None}


def save_sharded_state(run_dir: Path, parts: TrainParts, progress: Progress, world: World, keep: int) -> None:
    """Checkpoint `progress.step`: rank 0 the replicated state, every rank its shard; returns when all wrote.
    Each root keeps at least KEEP_CHECKPOINTS steps, whatever `keep` says."""
    model_state = parts.model.state_dict()
    opt = parts.optimizers.state_dict()
    shard: dict[str, Any] = {"model": {k: v for k, v in model_state.items() if k.startswith(_CLASSIFIER)},
                             "cls_opt": opt["cls_opt"], "rng": rng_state()}
    if parts.rewirer is not None:
        shard["rewirer_rng"] = parts.rewirer.generator.get_state()
    keep = max(keep, KEEP_CHECKPOINTS)
    write_checkpoint(shard_root(run_dir, world.rank, world.size), progress.step, shard, keep)
    if world.rank == 0:
        replicated = {"model": {k: v for k, v in model_state.items() if not k.startswith(_CLASSIFIER)},
                      "enc_opt": opt["enc_opt"], "scaler": opt["scaler"]}
        write_checkpoint(run_dir / CHECKPOINT_DIR, progress.step,
                         {"train": replicated, "progress": vars(progress), "world_size": world.size}, keep)
    dist.barrier()


def load_sharded_state(run_dir: Path, parts: TrainParts, world: World) -> Progress:
    """Restore the newest step that the replicated root and every shard root hold; one line when the run
    was written by another number of processes or has no such step."""
    root = run_dir / CHECKPOINT_DIR
    shard_dirs = sorted(p.name for p in root.glob("shard-*-of-*")) if root.is_dir() else []
    if shard_dirs and not shard_dirs[0].endswith(f"-of-{world.size}"):
        written_by = shard_dirs[0].rsplit("-of-", 1)[1]
        raise XmcfitError(f"{run_dir}: checkpoints were written by {written_by} processes, this run has "
                          f"{world.size}; resume with {launch_hint(int(written_by))}")
    common = _steps(root)
    for r in range(world.size):
        common &= _steps(shard_root(run_dir, r, world.size))
    if not common:
        raise XmcfitError(f"{run_dir}: no checkpoint step that every rank completed; nothing to resume from")
    step = max(common)
    name = f"step-{step:09d}"
    replicated = read_checkpoint(root / name)
    shard = read_checkpoint(shard_root(run_dir, world.rank, world.size) / name)
    train = replicated["train"]
    parts.model.load_state_dict({**train["model"], **shard["model"]}, strict=True)
    parts.optimizers.load_state_dict({"enc_opt": train["enc_opt"], "cls_opt": shard["cls_opt"],
                                      "scaler": train["scaler"]})
    if parts.rewirer is not None:
        parts.rewirer.generator.set_state(shard["rewirer_rng"])
    set_rng_state(shard["rng"])
    log.info("rank %d resumed from %s", world.rank, name)
    return Progress(**replicated["progress"])


def merged_weights(run_dir: Path, parts: TrainParts, step: int, world: World) -> dict[str, torch.Tensor]:
    """The whole model's state dict: the replicated weights of this rank and the classifier rows of every
    shard's checkpoint at `step`, concatenated in rank order."""
    name = f"step-{step:09d}"
    shards = [read_checkpoint(shard_root(run_dir, r, world.size) / name)["model"] for r in range(world.size)]
    weights = {k: v for k, v in parts.model.state_dict().items() if not k.startswith(_CLASSIFIER)}
    for key in shards[0]:
        weights[key] = torch.cat([s[key] for s in shards])  # (L, ...) rows in label order
    return weights


# -- the placement run_training drives ---------------------------------------------------------------


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
