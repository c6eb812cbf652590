"""The training objectives: the classifier loss over every label, the auxiliary label-cluster loss beside
it, and their mix (1 − α)·main + α·aux.

Components, like the sparse layer: they see features (batch, d) and positive labels, never optimizers,
data or logging. The recipe builds them from the plan; a label-sharded classifier slots in by being
another ClassifierLoss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from xmcfit.sparse import FixedFanInLinear, chunked_loss


class ClassifierLoss(Protocol):
    """The main loss of the classifier's logits against `positives`, reduced over batch x labels."""

    def __call__(self, features: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
        """features (batch, d); positives (n_pos, 2) [row, label]; a 0-dim loss that back-propagates."""
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

    def __call__(self, features: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
        return chunked_loss(features, self.classifier, positives, loss=self.loss, chunk_size=self.chunk_size,
                            reduction=self.reduction)


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

    def __call__(self, features: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
        logits = self.head(features.float())  # (batch, n_clusters), fp32 whatever the classifier's dtype
        targets = torch.zeros_like(logits)
        targets[positives[:, 0], self.clusters[positives[:, 1]]] = 1.0
        if self.reduction == "mean":
            return F.binary_cross_entropy_with_logits(logits, targets)
        return F.binary_cross_entropy_with_logits(logits, targets, reduction="sum") / logits.shape[0]


@dataclass(frozen=True)
class LossParts:
    """One micro-batch's loss to back-propagate, and its two parts as numbers for the log."""

    total: torch.Tensor
    main: float
    aux: float


def mixed_loss(features: torch.Tensor, positives: torch.Tensor, main: ClassifierLoss,
               aux: AuxClusterLoss | None, alpha: float) -> LossParts:
    """(1 − α)·main + α·aux; the aux head is not run once α has decayed to 0 (or without one)."""
    main_loss = main(features, positives)
    if alpha <= 0.0 or aux is None:
        return LossParts(main_loss, float(main_loss.detach()), 0.0)
    aux_loss = aux(features, positives)
    return LossParts((1.0 - alpha) * main_loss + alpha * aux_loss, float(main_loss.detach()), float(aux_loss.detach()))
