"""Which memory terms coexist in each phase of a training step, and which phase sets the peak.

Names and sums only (the bytes come from xmcfit.plan.memory, whose docstring explains the phases), so
the plan schema can also say where an older plan.json peaked from the terms it stored. Pure Python.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Literal

PeakPhase = Literal["backward", "step", "rewiring"]

RESIDENT = ("encoder_weights", "encoder_optimizer_state", "intermediate_weights", "intermediate_optimizer_state",
            "classifier_values", "classifier_indices", "classifier_bias", "classifier_optimizer_state",
            "classifier_pattern_cache", "aux_weights", "aux_optimizer_state", "ddp_gradient_buckets",
            "tfidf_weights", "tfidf_optimizer_state")
BACKWARD = ("encoder_activations", "encoder_amp_weight_copies", "head_activations", "loss_workspace",
            "aux_logits", "classifier_grads", "intermediate_grads", "aux_grads", "gathered_features",
            "tfidf_inputs", "tfidf_grads")
DISTRIBUTED = ("ddp_gradient_buckets", "gathered_features")
"""Terms a plan has only when it spans several devices (n_devices > 1)."""
TFIDF = ("tfidf_weights", "tfidf_optimizer_state", "tfidf_inputs", "tfidf_grads")
"""Terms a plan has only with a TF-IDF side (xmcfit.model.TfidfScorer)."""
OPTIONAL = DISTRIBUTED + TFIDF
"""Terms only some plans have; the sums below skip them where absent."""
STEP = ("encoder_grads", "intermediate_grads", "classifier_grads", "aux_grads", "tfidf_grads",
        "optimizer_step_workspace")
REWIRING = ("rewiring_workspace",)
RESERVES = ("fragmentation_margin", "cuda_context")


def phase_terms(grad_accum: int) -> dict[PeakPhase, tuple[str, ...]]:
    """The transient terms of each phase; the encoder's gradients persist through backward only when
    micro-batches accumulate (grad_accum > 1)."""
    backward = BACKWARD + (("encoder_grads",) if grad_accum > 1 else ())
    return {"backward": backward, "step": STEP, "rewiring": REWIRING}


def peak_phase(terms_bytes: Mapping[str, int], grad_accum: int) -> PeakPhase:
    """The phase whose transient terms sum highest (the first of equals, in step order)."""
    phases = phase_terms(grad_accum)
    return max(phases, key=lambda name: sum(term_bytes(terms_bytes, t) for t in phases[name]))


def term_bytes(terms_bytes: Mapping[str, int], name: str) -> int:
    """The bytes of term `name`; 0 for an OPTIONAL term the plan does not have (KeyError for any other
    missing term)."""
    return terms_bytes.get(name, 0) if name in OPTIONAL else terms_bytes[name]


def peak_terms(phase: PeakPhase, grad_accum: int, present: Collection[str] | None = None) -> tuple[str, ...]:
    """The terms alive at the peak of `phase`: resident, the phase's own, and the reserves; the OPTIONAL
    ones only when `present` (the plan's term names) has them."""
    names = RESIDENT + phase_terms(grad_accum)[phase] + RESERVES
    return tuple(t for t in names if t not in OPTIONAL or (present is not None and t in present))
