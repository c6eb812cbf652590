"""Recipe part 2, the step: micro-batch losses, gradient accumulation, the finiteness check, the update.

`train_step` is one optimizer step over a group of micro-batches. The loss of a micro-batch is the
model's features (the encoder under autocast) cast to the classifier's dtype, then the parts' classifier
loss and auxiliary loss mixed by α (xmcfit.objectives); a step whose loss or gradients are not finite
changes nothing. In a label-sharded run `parts.sync` runs the encoder through its DDP wrapper, lets the
replicated gradients meet after the last micro-batch, and makes the processes agree on finiteness.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from xmcfit.objectives import LossParts, mixed_loss
from xmcfit.train.optim import set_learning_rates
from xmcfit.train.setup import TrainParts


@dataclass(frozen=True)
class StepOutcome:
    """What one optimizer step did: losses averaged over its micro-batches, α, the lr multiplier."""

    loss: float
    main: float
    aux: float
    alpha: float
    lr_mult: float
    finite: bool
    """False when the step was skipped (a non-finite loss or gradient)."""


def micro_batch_loss(parts: TrainParts, batch: dict[str, torch.Tensor], alpha: float) -> LossParts:
    """The mixed loss of one micro-batch already on the device."""
    autocast = (torch.autocast(parts.device.type, dtype=parts.amp_dtype) if parts.amp_dtype
                else contextlib.nullcontext())
    with autocast:
        feats = parts.model.features(batch, encoder=parts.sync.encoder if parts.sync else None)  # (micro_batch, d)
    # The classifier and its loss run outside autocast, in the classifier's storage dtype: the chunked
    # loss keeps fp32 logits per chunk, which is what the planner prices.
    feats = feats.to(parts.feature_dtype)
    tfidf = parts.model.tfidf
    tfidf_x = tfidf.inputs(batch) if tfidf is not None else None  # (micro_batch, n_words) fp32
    return mixed_loss(feats, batch["positives"], parts.classifier_loss, parts.aux_loss, alpha, tfidf_x)


def accumulate_gradients(parts: TrainParts, micro_batches: list[dict[str, torch.Tensor]],
                         alpha: float) -> tuple[float, float, float, bool]:
    """Backward of every micro-batch's loss / n_micro; (loss, main, aux) averaged, and False as soon as a
    loss is not finite (the rest are not run)."""
    n = len(micro_batches)
    total = main_sum = aux_sum = 0.0
    for i, batch in enumerate(micro_batches):
        batch = {k: v.to(parts.device, non_blocking=True) for k, v in batch.items()}
        with parts.sync.micro_batch(last=i == n - 1) if parts.sync else contextlib.nullcontext():
            out = micro_batch_loss(parts, batch, alpha)
            if not torch.isfinite(out.total):
                return total, main_sum, aux_sum, False
            parts.optimizers.scaler.scale(out.total / n).backward()
        total += float(out.total.detach()) / n
        main_sum += out.main / n
        aux_sum += out.aux / n
    if parts.sync:
        parts.sync.after_backward()
    return total, main_sum, aux_sum, True


def gradients_finite(parts: TrainParts) -> bool:
    """Clip the encoder's gradient norm (when the plan says so) and check every gradient is finite."""
    model_parts, scaler = parts.model.parts(), parts.optimizers.scaler
    if parts.max_grad_norm > 0:
        scaler.unscale_(parts.optimizers.encoder)
        enc_norm = torch.nn.utils.clip_grad_norm_(model_parts.encoder, parts.max_grad_norm)  # the norm before clipping
    else:
        enc_norm = torch.nn.utils.get_total_norm([p.grad for p in model_parts.encoder if p.grad is not None])
    if scaler.is_enabled():
        return True  # the fp16 GradScaler skips a step with non-finite gradients itself
    # A finite loss can still back-propagate a non-finite gradient; one such step would poison the
    # weights for good, so it is skipped like a non-finite loss (the fp16 GradScaler does this).
    others = model_parts.heads + model_parts.classifier + model_parts.tfidf
    rest = torch.nn.utils.get_total_norm([p.grad for p in others if p.grad is not None])
    finite = bool(torch.isfinite(enc_norm + rest))
    return parts.sync.all_finite(finite) if parts.sync else finite


def train_step(parts: TrainParts, micro_batches: list[dict[str, torch.Tensor]], step: int) -> StepOutcome:
    """One optimizer step over `micro_batches` (gradient accumulation) at optimizer step `step`; skipped
    when a loss or gradient is not finite. Gradients are cleared afterwards either way."""
    alpha = parts.schedule.aux_weight(step)
    lr_mult = parts.schedule.lr_multiplier(step)
    set_learning_rates(parts.optimizers.all(), lr_mult)
    loss, main, aux, finite = accumulate_gradients(parts, micro_batches, alpha)
    finite = finite and gradients_finite(parts)
    if finite:
        parts.optimizers.step()
    parts.optimizers.zero_grad()
    return StepOutcome(loss, main, aux, alpha, lr_mult, finite)


def rewire(parts: TrainParts, step: int) -> int:
    """SET rewiring when `step` is due; the number of connections moved (0 otherwise)."""
    if parts.rewirer is None:
        return 0
    stats = parts.rewirer.step(step)
    return int(stats.n_moved) if stats is not None else 0
