"""Recipe part 1, setup: from a plan and the training data to the objects a step touches.

`setup_training` builds the model on the device, its optimizers, the SET rewirer, the classifier and
auxiliary losses and the step schedule, and returns them as one `TrainParts`. The label-sharded recipe
(xmcfit.train.distributed) builds the same parts with a classifier shard, a sharded ClassifierLoss and a
GradientSync (the DDP-wrapped encoder), and reuses the step and epoch parts unchanged.
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Callable, Protocol

import torch
from torch import nn

from xmcfit.dtypes import AUTOCAST_DTYPE, torch_dtype
from xmcfit.model import BowEncoder, TfidfScorer, XMCModel, build_model, inverse_document_frequency
from xmcfit.objectives import AuxClusterLoss, ChunkedClassifierLoss, ClassifierLoss, GlobalBatchAuxLoss
from xmcfit.plan.schema import Plan
from xmcfit.sparse import SETRewirer
from xmcfit.train.data import TrainData
from xmcfit.train.optim import Optimizers
from xmcfit.train.schedules import cosine_decay, cosine_schedule, fraction_step, warmup_cosine


def steps_per_epoch(n_points: int, micro_batch: int, grad_accum: int) -> int:
    return math.ceil(math.ceil(n_points / micro_batch) / grad_accum)


@dataclass(frozen=True)
class Schedule:
    """The step-indexed numbers of a run: pure functions of the plan and the number of training points.

    A run with a linear-probe warm start has two phases, each with its own warm-up + cosine learning
    rate: `probe_steps` of the heads alone on frozen features, then the end-to-end steps. The auxiliary
    weight and SET rewiring follow fractions of all `total_steps`.
    """

    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    """Warm-up of the end-to-end phase."""
    aux_initial_weight: float
    """α at step 0 (0 when the auxiliary objective is off)."""
    aux_end_step: int
    """α reaches 0 here (0 when the auxiliary objective is off)."""
    rewire_end_step: int
    """The last step SET rewiring may run."""
    probe_steps: int = 0
    """Steps of the linear-probe phase (the first `probe_epochs` epochs); 0 without one."""
    probe_warmup_steps: int = 0

    @classmethod
    def from_plan(cls, plan: Plan, n_points: int) -> "Schedule":
        t, aux = plan.training, plan.aux
        # Each of the plan's n_devices processes takes micro_batch rows of every micro-batch.
        per_epoch = steps_per_epoch(n_points, t.micro_batch * plan.n_devices, t.grad_accum)
        probe, end_to_end = per_epoch * t.probe_epochs, per_epoch * t.epochs
        total = probe + end_to_end
        return cls(steps_per_epoch=per_epoch, total_steps=total, warmup_steps=int(t.warmup_fraction * end_to_end),
                   aux_initial_weight=aux.initial_weight if aux.enabled else 0.0,
                   aux_end_step=fraction_step(aux.cutoff_fraction, total) if aux.enabled else 0,
                   rewire_end_step=fraction_step(plan.rewiring.stop_fraction, total),
                   probe_steps=probe, probe_warmup_steps=int(t.warmup_fraction * probe))

    def lr_multiplier(self, step: int) -> float:
        """Warm-up then cosine over the phase `step` is in (xmcfit.train.schedules.warmup_cosine)."""
        if step < self.probe_steps:
            return warmup_cosine(step, self.probe_steps, self.probe_warmup_steps)
        return warmup_cosine(step - self.probe_steps, self.total_steps - self.probe_steps, self.warmup_steps)

    def aux_weight(self, step: int) -> float:
        """α of (1 − α)·main + α·aux at `step`: cosine-decayed to 0 at aux_end_step."""
        return cosine_decay(step, self.aux_end_step, self.aux_initial_weight)


class GradientSync(Protocol):
    """How the gradients of modules replicated in every process meet (xmcfit.train.distributed); a run on
    one device has none."""

    encoder: nn.Module
    """The encoder as the forward runs it: its DistributedDataParallel wrapper."""

    def micro_batch(self, last: bool) -> AbstractContextManager[None]:
        """Around one micro-batch's forward and backward: replicated gradients meet after the last only."""
        ...

    def after_backward(self) -> None:
        """After the step's last backward: the replicated heads' gradients summed over the processes."""
        ...

    def all_finite(self, finite: bool) -> bool:
        """True when the gradients are finite in every process (so all step, or all skip)."""
        ...


@dataclass(frozen=True)
class TrainParts:
    """Everything one optimizer step reads or updates (built once per attempt by `setup_training`)."""

    model: XMCModel
    optimizers: Optimizers
    rewirer: SETRewirer | None
    classifier_loss: ClassifierLoss
    aux_loss: AuxClusterLoss | GlobalBatchAuxLoss | None
    schedule: Schedule
    device: torch.device
    amp_dtype: torch.dtype | None
    """Autocast dtype of the encoder forward (None: fp32)."""
    feature_dtype: torch.dtype
    """The classifier's storage dtype: features are cast to it, outside autocast, before the losses."""
    max_grad_norm: float
    """Clip the encoder's gradient norm to this (0: no clipping)."""
    sync: GradientSync | None = None
    """Replicated gradients across processes (a label-sharded run); None on one device."""


def build_rewirer(plan: Plan, model: XMCModel, optimizer: torch.optim.Optimizer,
                  schedule: Schedule) -> SETRewirer | None:
    """SET rewiring of the sparse classifier on the plan's schedule; None for dense or rewiring off."""
    rw = plan.rewiring
    if plan.classifier.kind != "sparse" or not rw.enabled:
        return None
    end = schedule.rewire_end_step
    return SETRewirer(model.classifier, optimizer, fraction_schedule=cosine_schedule(rw.initial, 0.0, end),
                      interval=rw.interval_steps, end_step=end, mode=rw.mode, seed=plan.seed + 1,
                      chunk_rows=rw.chunk_rows)


def initialise_tfidf(scorer: TfidfScorer, data: TrainData, plan: Plan,
                     label_rows: tuple[int, int] | None = None) -> None:
    """The TF-IDF scorer's idf, data-chosen pattern and starting values (the labels' scaled TF-IDF centroids)
    from the training split's term counts (a resumed run takes all three from its checkpoint). `label_rows`
    (lo, hi): a label shard's scorer gets those rows of what the whole one would (the pattern's random
    filler words are drawn for every label, so each rank's rows are the one-process rows)."""
    from xmcfit.data.words import label_centroids, label_word_pattern, label_word_values, smooth_idf, tfidf_rows

    assert data.words is not None, "a plan with a TF-IDF side needs the training split's term counts"
    idf = smooth_idf(data.words)
    centroid = label_centroids(tfidf_rows(data.words, idf), data.dataset.labels)
    pattern = label_word_pattern(centroid, plan.tfidf.fan_in, plan.seed)
    lo, hi = label_rows if label_rows is not None else (0, centroid.shape[0])
    values = label_word_values(centroid[lo:hi], pattern[lo:hi], plan.tfidf.init_scale)
    scorer.initialise(torch.from_numpy(pattern[lo:hi]), torch.from_numpy(idf), torch.from_numpy(values))


def setup_training(plan: Plan, data: TrainData, device: torch.device, resume: bool,
                   build_classifier_fn: Callable[[], nn.Module] | None = None,
                   label_rows: tuple[int, int] | None = None) -> TrainParts:
    """The plan's model on `device` (pretrained encoder, or built from its config when resuming: the
    weights then come from the checkpoint), its optimizers, rewirer, losses and schedule.
    `build_classifier_fn` and `label_rows` (lo, hi): a label shard's classifier and TF-IDF side instead of
    the whole ones (xmcfit.model.build_model)."""
    model = build_model(plan, data.encoder_source, pretrained=not resume, build_classifier_fn=build_classifier_fn,
                        label_rows=label_rows)
    if isinstance(model.encoder, BowEncoder) and model.encoder.idf is not None and not resume:
        model.encoder.set_idf(inverse_document_frequency(data.dataset.features, model.encoder.idf.numel()))
    if model.tfidf is not None and not resume:
        initialise_tfidf(model.tfidf, data, plan, label_rows)
    model.to(device)
    clusters = data.clusters.to(device) if data.clusters is not None else None
    schedule = Schedule.from_plan(plan, data.dataset.n_points)
    optimizers = Optimizers.for_plan(model, plan, device)
    cls = plan.classifier
    aux = (AuxClusterLoss(model.aux_head, clusters, plan.classifier.loss_reduction)
           if model.aux_head is not None and clusters is not None else None)
    amp = AUTOCAST_DTYPE[plan.precision]
    return TrainParts(
        model=model, optimizers=optimizers, rewirer=build_rewirer(plan, model, optimizers.classifier, schedule),
        classifier_loss=ChunkedClassifierLoss(model.classifier, cls.loss, cls.loss_chunk_size, cls.loss_reduction,
                                              tfidf=model.tfidf.layer if model.tfidf is not None else None),
        aux_loss=aux,
        schedule=schedule, device=device, amp_dtype=torch_dtype(amp) if amp is not None else None,
        feature_dtype=torch_dtype(cls.value_dtype), max_grad_norm=plan.training.max_grad_norm,
    )
