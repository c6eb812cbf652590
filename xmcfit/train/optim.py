"""Optimizers for a plan: AdamW for the encoder and dense heads; the plan's optimizer for the classifier.

Learning rates follow `schedules.warmup_cosine` of the optimizer step (the recipe's Schedule) and are
set on the parameter groups before each step (no scheduler objects), so a resumed run needs only the step number.
`Optimizers` holds the two with the fp16 loss scaler: what a step updates and a checkpoint saves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from xmcfit.model import XMCModel
from xmcfit.plan.schema import Plan

_NO_DECAY_MARKERS = ("bias", "LayerNorm", "layer_norm", "layernorm")


def _split_decay(params: list[tuple[str, nn.Parameter]]) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    decay = [p for n, p in params if not any(m in n for m in _NO_DECAY_MARKERS) and p.ndim > 1]
    no_decay = [p for n, p in params if any(m in n for m in _NO_DECAY_MARKERS) or p.ndim <= 1]
    return decay, no_decay


def build_encoder_optimizer(model: XMCModel, plan: Plan) -> torch.optim.Optimizer:
    """AdamW over the encoder (encoder lr), the intermediate/aux heads (classifier lr) and the TF-IDF side
    (its own lr), fp32 state."""
    t = plan.training
    enc_decay, enc_plain = _split_decay(list(model.encoder.named_parameters()))
    groups = [
        {"params": enc_decay, "lr": t.encoder_lr, "weight_decay": t.encoder_weight_decay},
        {"params": enc_plain, "lr": t.encoder_lr, "weight_decay": 0.0},
    ]
    parts = model.parts()
    if parts.heads:
        groups.append({"params": parts.heads, "lr": plan.classifier.lr, "weight_decay": plan.classifier.weight_decay})
    if parts.tfidf:  # the TF-IDF side at its own rate (xmcfit.plan.defaults: tfidf_lr)
        groups.append({"params": parts.tfidf, "lr": plan.tfidf.lr, "weight_decay": plan.classifier.weight_decay})
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


def set_learning_rates(optimizers: list[torch.optim.Optimizer], mult: float) -> None:
    """Set every group's lr to base_lr × `mult` (the step's warm-up/cosine multiplier)."""
    for opt in optimizers:
        for g in opt.param_groups:
            g["lr"] = g["base_lr"] * mult


@dataclass(frozen=True)
class Optimizers:
    """The encoder-side and the classifier's optimizer, and the GradScaler (enabled for fp16 AMP only)."""

    encoder: torch.optim.Optimizer
    """AdamW over the encoder and the dense heads (intermediate layer, aux head)."""
    classifier: torch.optim.Optimizer
    scaler: torch.amp.GradScaler

    @classmethod
    def for_plan(cls, model: XMCModel, plan: Plan, device: torch.device) -> "Optimizers":
        return cls(build_encoder_optimizer(model, plan), build_classifier_optimizer(model, plan),
                   torch.amp.GradScaler(device.type, enabled=plan.precision == "fp16_amp"))

    def all(self) -> list[torch.optim.Optimizer]:
        return [self.encoder, self.classifier]

    def zero_grad(self) -> None:
        for opt in self.all():
            opt.zero_grad(set_to_none=True)

    def step(self) -> None:
        """Both optimizers through the scaler (which skips them when fp16 gradients overflowed). One whose
        parameters got no gradient (the encoder side during a linear probe without dense heads) is not
        stepped: the fp16 scaler refuses an optimizer it recorded no overflow check for."""
        for opt in self.all():
            if any(p.grad is not None for group in opt.param_groups for p in group["params"]):
                self.scaler.step(opt)
        self.scaler.update()

    def state_dict(self) -> dict[str, Any]:
        return {"enc_opt": self.encoder.state_dict(), "cls_opt": self.classifier.state_dict(),
                "scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.encoder.load_state_dict(state["enc_opt"])
        self.classifier.load_state_dict(state["cls_opt"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
