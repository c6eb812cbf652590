"""The names of the memory model's terms: one registry for xmcfit.plan.memory (which prices them),
xmcfit.plan.phases (which groups them by phase) and xmcfit.train.memory_report (which measures them).

Plain strings, so plan.json and memory.json keep their keys. Pure Python.
"""

from __future__ import annotations

ENCODER_WEIGHTS = "encoder_weights"
ENCODER_GRADS = "encoder_grads"
ENCODER_OPTIMIZER_STATE = "encoder_optimizer_state"
ENCODER_ACTIVATIONS = "encoder_activations"
ENCODER_AMP_WEIGHT_COPIES = "encoder_amp_weight_copies"
HEAD_ACTIVATIONS = "head_activations"
INTERMEDIATE_WEIGHTS = "intermediate_weights"
INTERMEDIATE_GRADS = "intermediate_grads"
INTERMEDIATE_OPTIMIZER_STATE = "intermediate_optimizer_state"
CLASSIFIER_VALUES = "classifier_values"
CLASSIFIER_INDICES = "classifier_indices"
CLASSIFIER_BIAS = "classifier_bias"
CLASSIFIER_GRADS = "classifier_grads"
CLASSIFIER_OPTIMIZER_STATE = "classifier_optimizer_state"
CLASSIFIER_PATTERN_CACHE = "classifier_pattern_cache"
LOSS_WORKSPACE = "loss_workspace"
AUX_WEIGHTS = "aux_weights"
AUX_GRADS = "aux_grads"
AUX_OPTIMIZER_STATE = "aux_optimizer_state"
AUX_LOGITS = "aux_logits"
OPTIMIZER_STEP_WORKSPACE = "optimizer_step_workspace"
REWIRING_WORKSPACE = "rewiring_workspace"
TFIDF_WEIGHTS = "tfidf_weights"
TFIDF_OPTIMIZER_STATE = "tfidf_optimizer_state"
TFIDF_GRADS = "tfidf_grads"
TFIDF_INPUTS = "tfidf_inputs"
GATHERED_FEATURES = "gathered_features"
DDP_GRADIENT_BUCKETS = "ddp_gradient_buckets"
FRAGMENTATION_MARGIN = "fragmentation_margin"
CUDA_CONTEXT = "cuda_context"

ALL_TERMS = (
    ENCODER_WEIGHTS, ENCODER_GRADS, ENCODER_OPTIMIZER_STATE, ENCODER_ACTIVATIONS, ENCODER_AMP_WEIGHT_COPIES,
    HEAD_ACTIVATIONS, INTERMEDIATE_WEIGHTS, INTERMEDIATE_GRADS, INTERMEDIATE_OPTIMIZER_STATE,
    CLASSIFIER_VALUES, CLASSIFIER_INDICES, CLASSIFIER_BIAS, CLASSIFIER_GRADS, CLASSIFIER_OPTIMIZER_STATE,
    CLASSIFIER_PATTERN_CACHE, LOSS_WORKSPACE, AUX_WEIGHTS, AUX_GRADS, AUX_OPTIMIZER_STATE, AUX_LOGITS,
    OPTIMIZER_STEP_WORKSPACE, REWIRING_WORKSPACE, TFIDF_WEIGHTS, TFIDF_OPTIMIZER_STATE, TFIDF_GRADS, TFIDF_INPUTS,
    GATHERED_FEATURES, DDP_GRADIENT_BUCKETS, FRAGMENTATION_MARGIN, CUDA_CONTEXT,
)
"""Every term name the memory model can emit (xmcfit.plan.memory.predict), in its order."""
