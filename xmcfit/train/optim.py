"""Optimizers for a plan: AdamW for the encoder and dense heads; the plan's optimizer for the classifier.

Learning rates follow `schedules.warmup_cosine` of the optimizer step and are set on the parameter
groups before each step (no scheduler objects), so a resumed run needs only the step number.
"""

from __future__ import annotations

import torch
from torch import nn

from xmcfit.model import XMCModel
from xmcfit.plan.schema import Plan
from xmcfit.train.schedules import warmup_cosine

_NO_DECAY_MARKERS = ("bias", "LayerNorm", "layer_norm", "layernorm")


def _split_decay(params: list[tuple[str, nn.Parameter]]) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    decay = [p for n, p in params if not any(m in n for m in _NO_DECAY_MARKERS) and p.ndim > 1]
    no_decay = [p for n, p in params if any(m in n for m in _NO_DECAY_MARKERS) or p.ndim <= 1]
    return decay, no_decay


def build_encoder_optimizer(model: XMCModel, plan: Plan) -> torch.optim.Optimizer:
    """AdamW over the encoder (encoder lr) and the intermediate/aux heads (classifier lr), fp32 state."""
    t = plan.training
    enc_decay, enc_plain = _split_decay(list(model.encoder.named_parameters()))
    groups = [
        {"params": enc_decay, "lr": t.encoder_lr, "weight_decay": t.encoder_weight_decay},
        {"params": enc_plain, "lr": t.encoder_lr, "weight_decay": 0.0},
    ]
    heads = model.parts().heads
    if heads:
        groups.append({"params": heads, "lr": plan.classifier.lr, "weight_decay": plan.classifier.weight_decay})
    for g in groups:
        g["base_lr"] = g["lr"]
    return torch.optim.AdamW([g for g in groups if g["params"]])


def build_classifier_optimizer(model: XMCModel, plan: Plan) -> torch.optim.Optimizer:
    """The classifier's optimizer as planned: AdamW / SGD+momentum / SGD, low-precision variants for bf16."""
    c = plan.classifier
    params = model.parts().classifier
    if c.value_dtype == "bfloat16":
        # Pure-bf16 classifier: bf16 state, updates Kahan-compensated or stochastically rounded (ELMO).
        from xmcfit.sparse.lowprec_optim import LowPrecisionAdamW, LowPrecisionSGD

        rounding = "nearest" if c.update_rounding == "none" else c.update_rounding
        if c.optimizer == "adamw":
            opt: torch.optim.Optimizer = LowPrecisionAdamW(params, lr=c.lr, weight_decay=c.weight_decay,
                                                           rounding=rounding, seed=plan.seed)
        else:
            momentum = c.momentum if c.optimizer == "sgd_momentum" else 0.0
            opt = LowPrecisionSGD(params, lr=c.lr, momentum=momentum, weight_decay=c.weight_decay,
                                  rounding=rounding, seed=plan.seed)
    elif c.optimizer == "adamw":
        opt = torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay)
    elif c.optimizer == "sgd_momentum":
        opt = torch.optim.SGD(params, lr=c.lr, weight_decay=c.weight_decay, momentum=c.momentum)
    else:
        opt = torch.optim.SGD(params, lr=c.lr, weight_decay=c.weight_decay)
    for g in opt.param_groups:
        g["base_lr"] = g["lr"]
    return opt


def set_learning_rates(optimizers: list[torch.optim.Optimizer], step: int, total_steps: int, warmup_steps: int) -> float:
    """Set every group's lr to base_lr × warm-up/cosine multiplier at `step`; returns the multiplier."""
    mult = warmup_cosine(step, total_steps, warmup_steps)
    for opt in optimizers:
        for g in opt.param_groups:
            g["lr"] = g["base_lr"] * mult
    return mult
