"""Which memory terms coexist in each phase of a training step, and which phase sets the peak.

Names and sums only (the bytes come from xmcfit.plan.memory, whose docstring explains the phases), so
the plan schema can also say where an older plan.json peaked from the terms it stored. Pure Python.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Literal

from xmcfit.plan import terms as T

PeakPhase = Literal["backward", "step", "rewiring"]

RESIDENT = (T.ENCODER_WEIGHTS, T.ENCODER_OPTIMIZER_STATE, T.INTERMEDIATE_WEIGHTS, T.INTERMEDIATE_OPTIMIZER_STATE,
            T.CLASSIFIER_VALUES, T.CLASSIFIER_INDICES, T.CLASSIFIER_BIAS, T.CLASSIFIER_OPTIMIZER_STATE,
            T.CLASSIFIER_PATTERN_CACHE, T.AUX_WEIGHTS, T.AUX_OPTIMIZER_STATE, T.DDP_GRADIENT_BUCKETS,
            T.TFIDF_WEIGHTS, T.TFIDF_OPTIMIZER_STATE)
BACKWARD = (T.ENCODER_ACTIVATIONS, T.ENCODER_AMP_WEIGHT_COPIES, T.HEAD_ACTIVATIONS, T.LOSS_WORKSPACE,
            T.AUX_LOGITS, T.CLASSIFIER_GRADS, T.INTERMEDIATE_GRADS, T.AUX_GRADS, T.GATHERED_FEATURES,
            T.TFIDF_INPUTS, T.TFIDF_GRADS)
DISTRIBUTED = (T.DDP_GRADIENT_BUCKETS, T.GATHERED_FEATURES)
"""Terms a plan has only when it spans several devices (n_devices > 1)."""
TFIDF = (T.TFIDF_WEIGHTS, T.TFIDF_OPTIMIZER_STATE, T.TFIDF_INPUTS, T.TFIDF_GRADS)
"""Terms a plan has only with a TF-IDF side (xmcfit.model.TfidfScorer)."""
OPTIONAL = DISTRIBUTED + TFIDF
"""Terms only some plans have; the sums below skip them where absent."""
STEP = (T.ENCODER_GRADS, T.INTERMEDIATE_GRADS, T.CLASSIFIER_GRADS, T.AUX_GRADS, T.TFIDF_GRADS,
        T.OPTIMIZER_STEP_WORKSPACE)
REWIRING = (T.REWIRING_WORKSPACE,)
RESERVES = (T.FRAGMENTATION_MARGIN, T.CUDA_CONTEXT)


def phase_terms(grad_accum: int) -> dict[PeakPhase, tuple[str, ...]]:
    """The transient terms of each phase; the encoder's gradients persist through backward only when
    micro-batches accumulate (grad_accum > 1)."""
    backward = BACKWARD + ((T.ENCODER_GRADS,) if grad_accum > 1 else ())
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
