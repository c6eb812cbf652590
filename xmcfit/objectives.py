"""The training objectives: the classifier loss over every label, the auxiliary label-cluster loss beside
it, and their mix (1 − α)·main + α·aux.

Components, like the sparse layer: they see features (batch, d) and positive labels, never optimizers,
data or logging. The recipe builds them from the plan; a label-sharded classifier slots in by being
another ClassifierLoss (xmcfit.sparse.sharded.ShardedClassifierLoss), and the auxiliary head, replicated
in every process, by `GlobalBatchAuxLoss`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from xmcfit.sparse import FixedFanInLinear, chunked_loss
from xmcfit.sparse.sharded import with_value


class ClassifierLoss(Protocol):
    """The main loss of the classifier's logits against `positives`, reduced over batch x labels."""

    def __call__(self, features: torch.Tensor, positives: torch.Tensor,
                 tfidf_x: torch.Tensor | None = None) -> torch.Tensor:
        """features (batch, d); positives (n_pos, 2) [row, label]; tfidf_x (batch, n_words) the TF-IDF rows
        when the model has a TF-IDF side; a 0-dim loss that back-propagates."""
        ...


@dataclass(frozen=True)
class ChunkedClassifierLoss:
    """The whole label space on this device, in label chunks (xmcfit.sparse.chunked_loss): never
    builds the (batch, n_labels) logits."""

    classifier: FixedFanInLinear | nn.Linear
    loss: str
    """"squared_hinge" or "bce"."""
    chunk_size: int
    """Labels per chunk."""
    reduction: str = "mean"
    """"mean" over batch x labels or "sum_over_labels" (xmcfit.sparse.chunked_loss)."""
    tfidf: FixedFanInLinear | None = None
    """The TF-IDF scorer's layer (xmcfit.model.TfidfScorer), its scores added to the classifier's."""

    def __call__(self, features: torch.Tensor, positives: torch.Tensor,
                 tfidf_x: torch.Tensor | None = None) -> torch.Tensor:
        extra = (tfidf_x, self.tfidf) if self.tfidf is not None else None
        return chunked_loss(features, self.classifier, positives, loss=self.loss, chunk_size=self.chunk_size,
                            reduction=self.reduction, extra=extra)


@dataclass(frozen=True)
class AuxClusterLoss:
    """BCE of a small dense head over label clusters; a cluster is positive when any of its labels is."""

    head: nn.Linear
    """features (batch, d) -> cluster logits (batch, n_clusters)."""
    clusters: torch.Tensor
    """Cluster id of every label (n_labels,) int64, on the head's device."""
    reduction: str = "mean"
    """Like the main loss's: "mean" over batch x clusters, or "sum_over_labels" (summed over the clusters,
    averaged over the batch), so α weighs the two losses on the same scale."""

    def logits_and_targets(self, features: torch.Tensor, positives: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The head's logits (batch, n_clusters) fp32, whatever the classifier's dtype, and 0/1 targets."""
        logits = self.head(features.float())
        targets = torch.zeros_like(logits)
        targets[positives[:, 0], self.clusters[positives[:, 1]]] = 1.0
        return logits, targets

    def __call__(self, features: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
        logits, targets = self.logits_and_targets(features, positives)
        if self.reduction == "mean":
            return F.binary_cross_entropy_with_logits(logits, targets)
        return F.binary_cross_entropy_with_logits(logits, targets, reduction="sum") / logits.shape[0]


@dataclass(frozen=True)
class GlobalBatchAuxLoss:
    """The auxiliary loss of a process's own micro-batch, scaled by the batch of every process.

    In a label-sharded run each process computes the replicated aux head on its local rows only (no
    gather: the head is small and its input is local), divides the summed BCE by the global batch (and
    the clusters, for "mean"), and the head's gradients are summed across processes: together exactly
    the single-process loss of the whole batch. The value returned is that whole loss (the same in every
    process); its gradient is the local part.
    """

    aux: AuxClusterLoss
    group: Any = None
    """The torch.distributed process group (None: the default one)."""

    def __call__(self, features: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
        logits, targets = self.aux.logits_and_targets(features, positives)  # (m, C) each
        local = F.binary_cross_entropy_with_logits(logits, targets, reduction="sum")
        sums = torch.stack([local.detach(), torch.tensor(float(logits.shape[0]), device=local.device)])
        dist.all_reduce(sums, group=self.group)  # [loss summed over every process's rows, global batch]
        total, batch = sums[0], sums[1]
        per = batch * logits.shape[1] if self.aux.reduction == "mean" else batch
        return with_value(local / per, total / per)


@dataclass(frozen=True)
class LossParts:
    """One micro-batch's loss to back-propagate, and its two parts as numbers for the log."""

    total: torch.Tensor
    main: float
    aux: float


def mixed_loss(features: torch.Tensor, positives: torch.Tensor, main: ClassifierLoss,
               aux: AuxClusterLoss | GlobalBatchAuxLoss | None, alpha: float,
               tfidf_x: torch.Tensor | None = None) -> LossParts:
    """(1 − α)·main + α·aux; the aux head is not run once α has decayed to 0 (or without one). tfidf_x:
    the TF-IDF rows the main loss's TF-IDF side reads (None without one)."""
    main_loss = main(features, positives, tfidf_x) if tfidf_x is not None else main(features, positives)
    if alpha <= 0.0 or aux is None:
        return LossParts(main_loss, float(main_loss.detach()), 0.0)
    aux_loss = aux(features, positives)
    return LossParts((1.0 - alpha) * main_loss + alpha * aux_loss, float(main_loss.detach()), float(aux_loss.detach()))
