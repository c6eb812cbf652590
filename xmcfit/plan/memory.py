"""The memory model: predicted bytes per tensor family of one training step, and the peak they make.

Pure arithmetic (no torch, no pynvml, no I/O). One function per tensor family; `predict` is the one
place they are summed. All sizes are per device (rank): the encoder is replicated (data parallel),
classifier rows are sharded ceil(L / n_devices) per rank. A rank scores its labels for the micro-batches
of every rank, all-gathered (gathered batch = micro_batch x n_devices), so the loss workspace grows with
the device count while the encoder's activations do not; a plan over several devices has two more terms,
the gathered features and DDP's gradient buckets (xmcfit.train.distributed).

Which terms coexist at the peak (a training step, steady state, i.e. after the first optimizer step):

    resident  = weights + optimizer state of every module            (alive for the whole run)
    backward  = encoder activations + AMP weight copies + head activations + loss workspace
                + aux logits + classifier/intermediate/aux gradients
                + encoder gradients only when grad_accum > 1 (they persist across micro-batches; with
                  grad_accum == 1 the encoder's gradients appear as its activations are freed)
    step      = all gradients + the optimizer's transient workspace  (activations already freed)
    rewiring  = the rewiring workspace                               (after the step, grads cleared)
    allocator peak = resident + max(backward, step, rewiring)
    predicted peak = allocator peak + fragmentation margin + CUDA context

A layout is priced for the device it runs on (`Layout.device`). "cuda", what plans are made for: the
Triton sparse kernels, torch's foreach optimizers, the CUDA context and the caching allocator's margin.
"cpu" (`Layout.on_cpu`, what a CPU run of the same plan holds): the torch sparse backend, which keeps
a transposed pattern of the classifier per loss chunk (classifier_pattern_cache, resident); torch's
single-tensor AdamW, which holds two temporaries as large as the largest parameter; no CUDA context
and no caching allocator, so no margin (the process's resident set is the measure; see
bench/scale_memory.py, which measured the CPU terms at 10^5 to 3 x 10^6 labels).

Encoder activations follow what Hugging Face BERT with `attn_implementation="sdpa"` saves for backward
on CUDA, where SDPA runs the memory-efficient / flash kernel: q, k, v, the output and a logsumexp per
head, never the (s x s) probabilities. Counted per token and layer (e = 2 bytes under AMP, 4 in fp32;
dropout masks are 1-byte bool on CUDA):

    q/k/v input   3e·h under AMP (each Linear casts its fp32 input separately), 4h in fp32 (shared)
    q, k, v, out  4e·h          logsumexp 4·a          additive mask cast  e·s under AMP
    O dropout     1·h           LayerNorm input 4h + 8 (fp32, plus mean and rstd)
    FFN input     e·h           GELU input and FC2 input 2e·i          FFN dropout 1·h     LayerNorm 4h + 8

so 26h + 4i + 4a + 2s + 16 bytes per token-layer under AMP and 34h + 8i + 4a + 16 in fp32 (the latter is
Korthikanti et al.'s 34·s·b·h without their 5·a·s/h attention-matrix term, which SDPA does not keep).
Calibrated against a count of saved tensors of a real HF BertModel (tests/test_plan_memory_measured.py).
With gradient checkpointing HF keeps each layer's fp32 input (4h per token-layer) and recomputes one
layer at a time in backward, so the activations are n_layers·4h + one full layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

from xmcfit import workspace
from xmcfit.dtypes import DTYPE_BYTES
from xmcfit.plan import terms as T
from xmcfit.plan.phases import RESIDENT, PeakPhase, peak_phase, peak_terms, phase_terms, term_bytes
from xmcfit.plan.schema import (ClassifierKind, ClassifierOptimizer, EncoderSpec, InputWeighting, MemorySection, Pooling, Precision,
                                UpdateRounding, ValueDtype, index_dtype_for)
from xmcfit.plan.units import gib

if TYPE_CHECKING:
    from xmcfit.plan.schema import Plan

FP32_BYTES = DTYPE_BYTES["float32"]
BF16_BYTES = DTYPE_BYTES["bfloat16"]
OPTIMIZER_STATES = {"adamw": 2, "sgd_momentum": 1, "sgd": 0}
"""Optimizer state tensors per parameter: AdamW exp_avg + exp_avg_sq, SGD momentum buffer, plain SGD none."""

CUDA_CONTEXT_BYTES = 512 * 2**20
"""CUDA context + cuBLAS workspace, seen by the GPU but not by PyTorch's allocator. Commonly 0.3-0.7 GiB
depending on GPU and CUDA version; 0.5 GiB is the middle. NOT YET MEASURED on a GPU by this project."""

FRAGMENTATION_FRACTION = 0.05
"""Margin for the caching allocator's fragmentation, as a fraction of the allocator peak. A guess, NOT YET
MEASURED on a GPU: replace with the ratio reserved/allocated that `xmcfit train` reports."""

DROPOUT_MASK_BYTES_CUDA = 1
"""native_dropout on CUDA saves a bool mask (1 byte per element)."""

LOWPREC_CHUNK_NUMEL = 1 << 22
"""Elements per slice of the pure-bf16 optimizers' update (xmcfit.sparse.lowprec_optim.DEFAULT_CHUNK_NUMEL)."""
LOWPREC_WORKSPACE_BYTES_PER_ELEMENT = {("adamw", "kahan"): 30, ("adamw", "stochastic"): 32,
                                       ("sgd", "kahan"): 22, ("sgd", "stochastic"): 24}
"""fp32 temporaries alive at once per element of one slice of LowPrecisionAdamW / LowPrecisionSGD (SGD with
or without momentum), counted from the update code; `python bench/scale_memory.py --lowprec-probe` measures
them as resident-set growth over one step of a 16M-element bf16 parameter (30.0, 32.0, 22.0, 24.0)."""

PATTERN_BYTES_PER_CONNECTION = 12
"""torch sparse backend: a TransposedPattern holds an int32 row and an int64 position per connection."""

AttentionKernel = Literal["efficient", "math"]
Device = Literal["cuda", "cpu"]


@dataclass(frozen=True)
class Layout:
    """Every knob of a plan that changes memory, per device. Built from a Plan or by the chooser."""

    encoder: EncoderSpec
    seq_len: int
    """Tokens per input (0 for bag-of-words)."""
    precision: Precision
    gradient_checkpointing: bool
    micro_batch: int
    grad_accum: int
    pooling: Pooling
    intermediate_dim: int
    classifier_kind: ClassifierKind
    n_labels: int
    fan_in: int
    value_dtype: ValueDtype
    optimizer: ClassifierOptimizer
    weight_decay: float
    update_rounding: UpdateRounding
    loss_chunk_size: int
    bias: bool
    aux_enabled: bool
    n_clusters: int
    rewiring_enabled: bool
    rewiring_chunk_rows: int
    n_devices: int = 1
    cuda_context_bytes: int = CUDA_CONTEXT_BYTES
    input_weighting: InputWeighting = "raw"
    tfidf_n_words: int = 0
    """Width of the TF-IDF side's input (0: no TF-IDF side)."""
    tfidf_fan_in: int = 0
    """Words per label of the TF-IDF scorer."""
    device: Device = "cuda"
    """"cuda" (Triton kernels, foreach optimizers, caching allocator) or "cpu" (see the module docstring)."""

    @property
    def features_dim(self) -> int:
        """Width d of the classifier's input."""
        return self.intermediate_dim or self.encoder.hidden_size

    @property
    def rows_per_device(self) -> int:
        """Classifier rows held by one rank: ceil(L / n_devices)."""
        return -(-self.n_labels // self.n_devices)

    @property
    def gathered_batch(self) -> int:
        """Rows the classifier scores per micro-batch: every device's micro-batch, all-gathered."""
        return self.micro_batch * self.n_devices

    @property
    def amp(self) -> bool:
        return self.precision != "fp32"

    def as_dense(self) -> "Layout":
        """The same run with a dense fp32 L x d classifier trained by AdamW (the method's baseline)."""
        return replace(self, classifier_kind="dense", fan_in=self.features_dim, value_dtype="float32",
                       optimizer="adamw", update_rounding="none", rewiring_enabled=False)

    def dense_baseline(self) -> "Layout":
        """The plain dense baseline the sparse run is compared with: a dense fp32 L x h classifier straight on
        the encoder's output (no intermediate layer: a dense layer over the 4096-wide intermediate costs ten
        times more and is nobody's baseline) and without the TF-IDF side (the method's baseline has none),
        trained by AdamW; every other knob as in this run."""
        return replace(self, intermediate_dim=0, tfidf_n_words=0, tfidf_fan_in=0).as_dense()

    @classmethod
    def from_plan(cls, plan: "Plan", cuda_context_bytes: int = CUDA_CONTEXT_BYTES) -> "Layout":
        """The memory-relevant knobs of a plan."""
        c, m = plan.classifier, plan.model
        return cls(encoder=m.encoder, seq_len=m.seq_len, precision=plan.precision,
                   gradient_checkpointing=m.gradient_checkpointing, micro_batch=plan.training.micro_batch,
                   grad_accum=plan.training.grad_accum, pooling=m.pooling, intermediate_dim=m.intermediate_dim,
                   classifier_kind=c.kind, n_labels=c.n_labels, fan_in=c.fan_in, value_dtype=c.value_dtype,
                   optimizer=c.optimizer, weight_decay=c.weight_decay, update_rounding=c.update_rounding,
                   loss_chunk_size=c.loss_chunk_size, bias=c.bias, aux_enabled=plan.aux.enabled,
                   n_clusters=plan.aux.n_clusters, rewiring_enabled=plan.rewiring.enabled,
                   rewiring_chunk_rows=plan.rewiring.chunk_rows, n_devices=plan.n_devices,
                   cuda_context_bytes=cuda_context_bytes, input_weighting=m.input_weighting,
                   tfidf_n_words=plan.tfidf.n_words if plan.tfidf.enabled else 0,
                   tfidf_fan_in=plan.tfidf.fan_in if plan.tfidf.enabled else 0)

    @classmethod
    def on_cpu(cls, plan: "Plan") -> "Layout":
        """The same plan run on the CPU: torch sparse backend, single-tensor optimizers, no CUDA context."""
        return replace(cls.from_plan(plan, cuda_context_bytes=0), device="cpu")


# -- encoder ---------------------------------------------------------------------------------------


def encoder_weight_bytes(encoder: EncoderSpec, input_weighting: InputWeighting = "raw") -> int:
    """fp32 master weights of the encoder (AMP autocasts on the fly; see amp_weight_copy_bytes), plus the
    fp32 idf of every input feature for a bag-of-words input weighted by TF-IDF."""
    idf = encoder.vocab_size * FP32_BYTES if encoder.kind == "bow" and input_weighting == "tfidf" else 0
    return encoder.n_params * FP32_BYTES + idf


def encoder_grad_bytes(encoder: EncoderSpec) -> int:
    """fp32 gradients, one per encoder parameter."""
    return encoder.n_params * FP32_BYTES


def encoder_optimizer_bytes(encoder: EncoderSpec) -> int:
    """torch.optim.AdamW state: exp_avg and exp_avg_sq in fp32."""
    return encoder.n_params * OPTIMIZER_STATES["adamw"] * FP32_BYTES


def matmul_weight_params(encoder: EncoderSpec) -> int:
    """Parameters of the encoder's Linear weights (Q, K, V, O, FFN in and out), the ones autocast copies."""
    h, i = encoder.hidden_size, encoder.intermediate_size
    return encoder.n_layers * (4 * h * h + 2 * h * i)


def amp_weight_copy_bytes(encoder: EncoderSpec, precision: Precision, gradient_checkpointing: bool) -> int:
    """16-bit copies autocast makes of the Linear weights and backward keeps until it has used them.

    Without checkpointing all layers' copies are saved; with it only the recomputed layer's are. No
    pooler: xmcfit builds the encoder without one and pools the hidden states itself.
    """
    if precision == "fp32" or encoder.kind != "text":
        return 0
    n_layers_saved = 1 if gradient_checkpointing else encoder.n_layers
    return matmul_weight_params(encoder) // encoder.n_layers * n_layers_saved * BF16_BYTES


def layer_activation_bytes_per_token(encoder: EncoderSpec, seq_len: int, precision: Precision,
                                     attention: AttentionKernel = "efficient",
                                     dropout_mask_bytes: int | None = None) -> int:
    """Bytes one transformer layer saves for backward, per token (see the module docstring).

    `attention="math"` adds what the unfused SDPA kernel keeps (scores, probabilities, their dropout
    mask: a·s values each, in fp32), which is what PyTorch uses on a CPU when attention dropout is on, and
    what prices an eager-attention encoder (MPNet, DeBERTa-v2: within 3 % of the tensors they save in fp32;
    under AMP softmax runs in fp32 and this errs from -5 % to +50 %, high for DeBERTa at long sequences;
    tests/test_plan_memory_measured.py).
    `dropout_mask_bytes`: 1 on CUDA (bool mask); on CPU the mask has the dropped tensor's dtype.
    """
    h, i, a, s = encoder.hidden_size, encoder.intermediate_size, encoder.n_heads, seq_len
    amp = precision != "fp32"
    e = BF16_BYTES if amp else FP32_BYTES
    mask = DROPOUT_MASK_BYTES_CUDA if dropout_mask_bytes is None else dropout_mask_bytes
    qkv_input = (3 * e if amp else FP32_BYTES) * h
    attention_saved = 4 * e * h + 4 * a  # q, k, v, out (shared with O's input) + logsumexp (fp32)
    mask_cast = e * s if amp else 0  # the additive padding mask, cast to 16 bits per layer
    if attention == "math":
        attention_saved += 3 * a * s * FP32_BYTES
    layer_norms = 2 * (FP32_BYTES * h + 2 * FP32_BYTES)
    ffn = e * h + 2 * e * i
    dropouts = 2 * mask * h
    return qkv_input + attention_saved + mask_cast + layer_norms + ffn + dropouts


def embedding_activation_bytes_per_token(encoder: EncoderSpec, seq_len: int, dropout_mask_bytes: int | None = None) -> int:
    """Embeddings (not checkpointed by HF): token and type ids (int64), fp32 LayerNorm input, dropout
    mask, and the fp32 additive attention mask (s values per token, one copy shared by all layers)."""
    h = encoder.hidden_size
    mask = DROPOUT_MASK_BYTES_CUDA if dropout_mask_bytes is None else dropout_mask_bytes
    return 2 * 8 + FP32_BYTES * h + 2 * FP32_BYTES + mask * h + FP32_BYTES * seq_len


def pooling_activation_bytes_per_token(encoder: EncoderSpec, pooling: Pooling) -> int:
    """Mean pooling multiplies the fp32 last hidden state by the mask and keeps both; CLS keeps nothing."""
    return (FP32_BYTES * encoder.hidden_size + FP32_BYTES) if pooling == "mean" else 0


def encoder_activation_bytes(encoder: EncoderSpec, seq_len: int, micro_batch: int, precision: Precision,
                             gradient_checkpointing: bool, pooling: Pooling = "mean",
                             attention: AttentionKernel = "efficient", dropout_mask_bytes: int | None = None) -> int:
    """Everything the encoder saves for backward for one micro-batch (bytes), excluding weight copies."""
    if encoder.kind == "bow":
        # EmbeddingBag(sum) output (micro_batch, h) fp32; its saved indices depend on nnz (not priced).
        return micro_batch * encoder.hidden_size * FP32_BYTES
    tokens = micro_batch * seq_len
    layer = layer_activation_bytes_per_token(encoder, seq_len, precision, attention, dropout_mask_bytes)
    if gradient_checkpointing:
        layers = encoder.n_layers * FP32_BYTES * encoder.hidden_size + layer
    else:
        layers = encoder.n_layers * layer
    fixed = embedding_activation_bytes_per_token(encoder, seq_len, dropout_mask_bytes)
    return tokens * (layers + fixed + pooling_activation_bytes_per_token(encoder, pooling))


# -- head: pooled features, intermediate layer, aux head ---------------------------------------------


def head_activation_bytes(hidden_size: int, intermediate_dim: int, micro_batch: int) -> int:
    """Pooled vector (fp32) and its dropout mask; the intermediate Linear's input and ReLU output; the
    classifier's saved input (micro_batch, d) fp32."""
    d = intermediate_dim or hidden_size
    pooled = micro_batch * hidden_size * (FP32_BYTES + DROPOUT_MASK_BYTES_CUDA)
    intermediate = micro_batch * (hidden_size + intermediate_dim) * FP32_BYTES if intermediate_dim else 0
    return pooled + intermediate + micro_batch * d * FP32_BYTES


def dense_layer_param_count(in_features: int, out_features: int) -> int:
    """nn.Linear(in_features, out_features) parameters (weight + bias)."""
    return in_features * out_features + out_features


def intermediate_param_count(hidden_size: int, intermediate_dim: int) -> int:
    return dense_layer_param_count(hidden_size, intermediate_dim) if intermediate_dim else 0


def aux_param_count(features_dim: int, n_clusters: int, enabled: bool) -> int:
    return dense_layer_param_count(features_dim, n_clusters) if enabled else 0


def aux_logit_bytes(micro_batch: int, n_clusters: int, enabled: bool) -> int:
    """Aux logits (micro_batch, n_clusters) fp32 and their gradient."""
    return 2 * micro_batch * n_clusters * FP32_BYTES if enabled else 0


# -- classifier --------------------------------------------------------------------------------------


def classifier_value_bytes(layout: Layout) -> int:
    """values (rows, k) in value_dtype; dense: weight (rows, d) fp32."""
    if layout.classifier_kind == "dense":
        return layout.rows_per_device * layout.features_dim * FP32_BYTES
    return layout.rows_per_device * layout.fan_in * DTYPE_BYTES[layout.value_dtype]


def classifier_index_bytes(layout: Layout) -> int:
    """indices (rows, k), int16 when d <= 32767 else int32; dense: none."""
    if layout.classifier_kind == "dense":
        return 0
    return layout.rows_per_device * layout.fan_in * DTYPE_BYTES[index_dtype_for(layout.features_dim)]


def classifier_bias_bytes(layout: Layout) -> int:
    """bias (rows,): in value_dtype for the sparse layer (FixedFanInLinear keeps one dtype), fp32 dense."""
    if not layout.bias:
        return 0
    dtype = "float32" if layout.classifier_kind == "dense" else layout.value_dtype
    return layout.rows_per_device * DTYPE_BYTES[dtype]


def classifier_grad_bytes(layout: Layout) -> int:
    """Gradients of values (same dtype as values) and of the bias."""
    return classifier_value_bytes(layout) + classifier_bias_bytes(layout)


def classifier_optimizer_bytes(layout: Layout) -> int:
    """Optimizer state per value and bias entry (AdamW 2, SGD-momentum 1, SGD 0) in the values' dtype,
    plus one bf16 Kahan compensation buffer per value and bias entry for bf16 values with Kahan updates."""
    n_states = OPTIMIZER_STATES[layout.optimizer]
    kahan = int(layout.classifier_kind == "sparse" and layout.value_dtype == "bfloat16"
                and layout.update_rounding == "kahan")
    return (n_states + kahan) * (classifier_value_bytes(layout) + classifier_bias_bytes(layout))


def loss_workspace_bytes(layout: Layout) -> int:
    """Transient buffers of one chunk of xmcfit.sparse.chunked_loss (c = chunk rows, b = gathered batch):
    2·b·c fp32 (logits and the loss/margin buffer) + c·k·16 (int32 columns, the sampled fp32 value
    gradient, fp32 copies of 16-bit values) + (c+1)·4 CSR row pointers; dense: 2·b·c·4 + c·d·4 for the
    weight-gradient chunk (xmcfit.workspace.loss_workspace_bytes)."""
    c = min(layout.loss_chunk_size, layout.rows_per_device)
    fan_in = None if layout.classifier_kind == "dense" else layout.fan_in
    tfidf = workspace.extra_term_workspace_bytes(c, layout.tfidf_fan_in) if layout.tfidf_n_words else 0
    return workspace.loss_workspace_bytes(layout.gathered_batch, c, fan_in, layout.features_dim) + tfidf


def rewiring_workspace_bytes(layout: Layout) -> int:
    """SET prune-and-regrow buffers of one chunk of r rows: r·(117·k + 288 + value_bytes·k) bytes (per-slot
    masks, sorted kept columns, rejection-sampled free-column draws, sort orders and one permuted state
    tensor, int64 indices): xmcfit.workspace.rewire_workspace_bytes, the bound the rewirer documents."""
    if not (layout.rewiring_enabled and layout.classifier_kind == "sparse"):
        return 0
    rows = min(layout.rewiring_chunk_rows, layout.rows_per_device)
    return workspace.rewire_workspace_bytes(rows, layout.features_dim, layout.fan_in,
                                            DTYPE_BYTES[layout.value_dtype])


def classifier_pattern_cache_bytes(layout: Layout) -> int:
    """The torch sparse backend (the CPU path) caches, per loss chunk of c rows, the chunk's pattern
    sorted by input column for the input gradient: c·k·12 bytes (int32 rows, int64 positions) + (d+1)·4
    (offsets). Built in the first step, dropped and rebuilt after each rewiring; none for Triton or dense."""
    if layout.classifier_kind != "sparse" or layout.device != "cpu":
        return 0
    rows = layout.rows_per_device
    n_chunks = -(-rows // min(layout.loss_chunk_size, rows))
    return rows * layout.fan_in * PATTERN_BYTES_PER_CONNECTION + n_chunks * (layout.features_dim + 1) * 4


def _largest_side_param_bytes(layout: Layout) -> int:
    """The largest single fp32 tensor the encoder-side AdamW updates: the (token or feature) embedding, the
    intermediate layer's weight or the aux head's weight."""
    enc = layout.encoder
    d = layout.features_dim
    return FP32_BYTES * max(enc.vocab_size * enc.hidden_size,
                            enc.hidden_size * layout.intermediate_dim,
                            d * layout.n_clusters if layout.aux_enabled else 0,
                            layout.rows_per_device * layout.tfidf_fan_in)


def lowprec_step_workspace_bytes(layout: Layout) -> int:
    """LowPrecisionAdamW / LowPrecisionSGD (bf16 values) update in fp32 one slice of LOWPREC_CHUNK_NUMEL
    elements at a time, whatever the device: LOWPREC_WORKSPACE_BYTES_PER_ELEMENT bytes per element."""
    rounding = "stochastic" if layout.update_rounding == "stochastic" else "kahan"
    optimizer = "adamw" if layout.optimizer == "adamw" else "sgd"
    numel = min(layout.rows_per_device * layout.fan_in, LOWPREC_CHUNK_NUMEL)
    return numel * LOWPREC_WORKSPACE_BYTES_PER_ELEMENT[(optimizer, rounding)]


def optimizer_step_workspace_bytes(layout: Layout) -> int:
    """Transient bytes of the optimizer steps. The encoder-side optimizer (encoder + intermediate + aux)
    and the classifier's run one after the other, so the larger of the two is transient.

    cuda: torch's foreach AdamW (and SGD with weight decay) allocates one temporary as large as the tensors
    it updates together (e.g. sqrt(exp_avg_sq)). cpu: torch's single-tensor AdamW (the default off CUDA)
    updates one parameter at a time but evaluates `exp_avg_sq.sqrt() / bias_correction` into two
    temporaries as large as that parameter; single-tensor SGD with weight decay one. A pure-bf16
    classifier uses xmcfit's sliced low-precision optimizers on either device.
    """
    classifier_bytes = classifier_value_bytes(layout) + classifier_bias_bytes(layout)
    needs_temp = layout.optimizer == "adamw" or layout.weight_decay > 0
    if layout.device == "cpu":
        side = 2 * _largest_side_param_bytes(layout)
        copies = 2 if layout.optimizer == "adamw" else 1
        classifier = copies * classifier_value_bytes(layout) if needs_temp else 0
    else:
        side = (layout.encoder.n_params + intermediate_param_count(layout.encoder.hidden_size, layout.intermediate_dim)
                + aux_param_count(layout.features_dim, layout.n_clusters, layout.aux_enabled)
                + layout.rows_per_device * layout.tfidf_fan_in) * FP32_BYTES
        classifier = classifier_bytes if needs_temp else 0
    if layout.classifier_kind == "sparse" and layout.value_dtype == "bfloat16":
        classifier = lowprec_step_workspace_bytes(layout)
    return max(side, classifier)


# -- the TF-IDF side (xmcfit.model.TfidfScorer) ----------------------------------------------------------


def tfidf_value_bytes(layout: Layout) -> int:
    """The scorer's fp32 values (R, k'): R = the labels this device holds (all of them on one device; a
    label shard holds the same rows of the side as of the classifier)."""
    return layout.rows_per_device * layout.tfidf_fan_in * FP32_BYTES


def tfidf_weight_bytes(layout: Layout) -> int:
    """values (R, k') fp32 + indices (R, k') int16/int32 by the word count + idf (n_words,) fp32."""
    if not layout.tfidf_n_words:
        return 0
    index_bytes = DTYPE_BYTES[index_dtype_for(layout.tfidf_n_words)]
    return (tfidf_value_bytes(layout) + layout.rows_per_device * layout.tfidf_fan_in * index_bytes
            + layout.tfidf_n_words * FP32_BYTES)


def tfidf_input_bytes(layout: Layout) -> int:
    """The micro-batch's TF-IDF rows, dense (b, n_words) fp32 (the chunked loss reads them as they are); a
    label shard also holds every device's rows, all-gathered (b x n_devices, n_words), which its side scores."""
    gathered = layout.gathered_batch if layout.n_devices > 1 else 0
    return (layout.micro_batch + gathered) * layout.tfidf_n_words * FP32_BYTES


# -- several devices -----------------------------------------------------------------------------------


DDP_BUCKET_BYTES = 25 * 2**20
"""DistributedDataParallel's bucket_cap_mb default (25 MiB): gradients are all-reduced bucket by bucket."""


def gathered_feature_bytes(layout: Layout) -> int:
    """A label shard's view of the micro-batch (b = gathered batch, d features, fp32 at most): the
    all-gathered features (b, d), the chunked loss's input-gradient accumulator (d, b) and the gradient
    it hands back (b, d), which the backward reduce-scatters to the ranks that made the features."""
    return 3 * layout.gathered_batch * layout.features_dim * FP32_BYTES


def ddp_bucket_bytes(encoder: EncoderSpec) -> int:
    """DDP copies the encoder's gradients into flat buckets of DDP_BUCKET_BYTES for the all-reduce; the
    buckets are allocated when the wrapper is built and live for the run: one fp32 copy of every
    encoder gradient."""
    return encoder.n_params * FP32_BYTES


# -- the sum (which terms coexist in which phase: xmcfit.plan.phases) ----------------------------------


@dataclass(frozen=True)
class MemoryEstimate:
    """Predicted bytes per term and the peak they make (per device)."""

    terms_bytes: dict[str, int]
    peak_phase: PeakPhase
    """"backward", "step" or "rewiring": the phase that sets the peak."""
    peak_terms: tuple[str, ...]
    """The terms that coexist at the peak (their sum is predicted_peak_bytes)."""
    predicted_peak_bytes: int

    def dominant_term(self) -> str:
        """The largest term alive at the peak."""
        return max(self.peak_terms, key=lambda name: self.terms_bytes[name])


def memory_terms(layout: Layout) -> dict[str, int]:
    """Bytes of every tensor family (per device), reserves excluded; the DISTRIBUTED terms of
    xmcfit.plan.phases only when the plan spans several devices, the TFIDF terms only with a TF-IDF side."""
    enc = layout.encoder
    n_inter = intermediate_param_count(enc.hidden_size, layout.intermediate_dim)
    n_aux = aux_param_count(layout.features_dim, layout.n_clusters, layout.aux_enabled)
    terms = {
        T.ENCODER_WEIGHTS: encoder_weight_bytes(enc, layout.input_weighting),
        T.ENCODER_GRADS: encoder_grad_bytes(enc),
        T.ENCODER_OPTIMIZER_STATE: encoder_optimizer_bytes(enc),
        T.ENCODER_ACTIVATIONS: encoder_activation_bytes(enc, layout.seq_len, layout.micro_batch, layout.precision,
                                                        layout.gradient_checkpointing, layout.pooling,
                                                        "math" if enc.attention == "eager" else "efficient"),
        T.ENCODER_AMP_WEIGHT_COPIES: amp_weight_copy_bytes(enc, layout.precision, layout.gradient_checkpointing),
        T.HEAD_ACTIVATIONS: head_activation_bytes(enc.hidden_size, layout.intermediate_dim, layout.micro_batch),
        T.INTERMEDIATE_WEIGHTS: n_inter * FP32_BYTES,
        T.INTERMEDIATE_GRADS: n_inter * FP32_BYTES,
        T.INTERMEDIATE_OPTIMIZER_STATE: n_inter * OPTIMIZER_STATES["adamw"] * FP32_BYTES,
        T.CLASSIFIER_VALUES: classifier_value_bytes(layout),
        T.CLASSIFIER_INDICES: classifier_index_bytes(layout),
        T.CLASSIFIER_BIAS: classifier_bias_bytes(layout),
        T.CLASSIFIER_GRADS: classifier_grad_bytes(layout),
        T.CLASSIFIER_OPTIMIZER_STATE: classifier_optimizer_bytes(layout),
        T.CLASSIFIER_PATTERN_CACHE: classifier_pattern_cache_bytes(layout),
        T.LOSS_WORKSPACE: loss_workspace_bytes(layout),
        T.AUX_WEIGHTS: n_aux * FP32_BYTES,
        T.AUX_GRADS: n_aux * FP32_BYTES,
        T.AUX_OPTIMIZER_STATE: n_aux * OPTIMIZER_STATES["adamw"] * FP32_BYTES,
        T.AUX_LOGITS: aux_logit_bytes(layout.micro_batch, layout.n_clusters, layout.aux_enabled),
        T.OPTIMIZER_STEP_WORKSPACE: optimizer_step_workspace_bytes(layout),
        T.REWIRING_WORKSPACE: rewiring_workspace_bytes(layout),
    }
    if layout.tfidf_n_words:
        terms[T.TFIDF_WEIGHTS] = tfidf_weight_bytes(layout)
        terms[T.TFIDF_OPTIMIZER_STATE] = OPTIMIZER_STATES["adamw"] * tfidf_value_bytes(layout)
        terms[T.TFIDF_GRADS] = tfidf_value_bytes(layout)
        terms[T.TFIDF_INPUTS] = tfidf_input_bytes(layout)
    if layout.n_devices > 1:
        terms[T.GATHERED_FEATURES] = gathered_feature_bytes(layout)
        terms[T.DDP_GRADIENT_BUCKETS] = ddp_bucket_bytes(enc)
    return terms


def predict(layout: Layout) -> MemoryEstimate:
    """The predicted peak: resident + the largest phase + fragmentation margin + CUDA context."""
    terms = memory_terms(layout)
    phase = peak_phase(terms, layout.grad_accum)
    allocator_peak = sum(term_bytes(terms, t) for t in RESIDENT + phase_terms(layout.grad_accum)[phase])
    margin = FRAGMENTATION_FRACTION if layout.device == "cuda" else 0.0  # the CPU has no caching allocator
    terms[T.FRAGMENTATION_MARGIN] = math.ceil(margin * allocator_peak)
    terms[T.CUDA_CONTEXT] = layout.cuda_context_bytes
    at_peak = peak_terms(phase, layout.grad_accum, terms)
    return MemoryEstimate(terms_bytes=terms, peak_phase=phase, peak_terms=at_peak,
                          predicted_peak_bytes=sum(terms[t] for t in at_peak))


def memory_section(layout: Layout, budget_bytes: int) -> MemorySection:
    """The plan's memory section for `layout`: its terms and peak, and what the plain dense baseline
    (Layout.dense_baseline) would need."""
    est = predict(layout)
    return MemorySection(terms_bytes=dict(est.terms_bytes), predicted_peak_bytes=est.predicted_peak_bytes,
                         dense_predicted_peak_bytes=predict(layout.dense_baseline()).predicted_peak_bytes,
                         budget_bytes=budget_bytes, peak_phase=est.peak_phase, peak_terms=est.peak_terms)


def reprice(plan: "Plan") -> "Plan":
    """`plan` with its memory section recomputed from its knobs (same budget): for plans changed after
    the chooser made them (the trainer's out-of-memory recovery, hand-built test plans)."""
    return replace(plan, memory=memory_section(Layout.from_plan(plan), plan.memory.budget_bytes))


def revalidate(plan: "Plan") -> tuple["Plan", str | None]:
    """`plan` with its memory section recomputed from its knobs, and a sentence when the stored one differed
    (a hand-edited plan.json: `fan_in` 256 -> 64 or `pooling` -> `cls` left the old bytes behind; or a plan
    written by an xmcfit with another memory model); (plan, None) when it matches. Recomputed, not refused:
    editing a knob is a legitimate pin, and a memory-model fix must not make existing plans unreadable."""
    cuda_context_bytes = plan.memory.terms_bytes.get(T.CUDA_CONTEXT, CUDA_CONTEXT_BYTES)
    fresh = memory_section(Layout.from_plan(plan, cuda_context_bytes), plan.memory.budget_bytes)
    if fresh == plan.memory:
        return plan, None
    old, new, budget = (gib(b) for b in (plan.memory.predicted_peak_bytes, fresh.predicted_peak_bytes,
                                          fresh.budget_bytes))
    note = (f"memory section recomputed on load (it did not match the plan's knobs; edited by hand?): predicted "
            f"peak {old:.2f} -> {new:.2f} GiB of the {budget:.2f} GiB budget"
            + (" (over budget: re-run `xmcfit plan` with the knob pinned)" if new > budget else ""))
    return replace(plan, memory=fresh, reasons=plan.reasons + (note,)), note
