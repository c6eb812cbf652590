"""A rank's training parts: setup_training with this rank's classifier rows (xmcfit.sparse.sharded) and
the same rows of the TF-IDF side, the encoder in DistributedDataParallel with summed gradients, the
replicated heads all-reduced, SET rewiring statistics summed over the ranks, and the sharded classifier
and auxiliary losses. The side's gradients, like the classifier's, are this rank's alone: never all-reduced."""

from __future__ import annotations

import contextlib
import inspect
from dataclasses import replace
from typing import Callable

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from xmcfit.dtypes import torch_dtype
from xmcfit.objectives import GlobalBatchAuxLoss
from xmcfit.plan.memory import DDP_BUCKET_BYTES
from xmcfit.plan.schema import Plan
from xmcfit.sparse import SETRewirer
from xmcfit.sparse.rewire import RewireStats
from xmcfit.sparse.sharded import ShardedClassifierLoss, shard_fixed_fan_in, shard_linear
from xmcfit.train.data import TrainData
from xmcfit.train.ranks import any_rank, rank_seed
from xmcfit.train.setup import TrainParts, setup_training
from xmcfit.train.world import World
from xmcfit.workspace import label_range


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


def setup_label_sharded(plan: Plan, data: TrainData, device: torch.device, resume: bool, world: World) -> TrainParts:
    """setup_training with this rank's classifier rows, the encoder in DDP and the sharded losses."""
    cls = plan.classifier
    lo, hi = label_range(cls.n_labels, world.size, world.rank)
    parts = setup_training(plan, data, device, resume, build_classifier_fn=_classifier_shard(plan, lo, hi),
                           label_rows=(lo, hi))
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
                                              cls.loss_reduction,
                                              tfidf=model.tfidf.layer if model.tfidf is not None else None),
        aux_loss=GlobalBatchAuxLoss(parts.aux_loss) if parts.aux_loss is not None else None,
        sync=ReplicaSync(encoder, model.parts().heads, device),
    )
