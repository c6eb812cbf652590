"""The time model: the work of one training step per phase, and the seconds it takes on a device.

Pure arithmetic beside xmcfit.plan.memory (no torch, no I/O), over the same `Layout`. Each phase of a step
is counted as `Work`: matrix-multiply FLOPs (16-bit under AMP, else fp32), bytes streamed (elementwise ops,
optimizer updates), bytes gathered row by row (embedding bags: the sparse classifier's products, the
bag-of-words encoder), operations launched, and bytes sent between devices. A phase takes

    seconds = flops / (peak flops x eff_matmul)                    matrix multiplies: compute-bound
            + streamed / (bandwidth x eff_stream)                 elementwise ops: memory-bound
            + gathered / (gather rate x eff_gather)               embedding bags: memory-bound
            + ops x seconds per op + sent / (interconnect bandwidth / 2)

that is, each kind of op at its own roofline bound (a GEMM of these sizes is compute-bound, an elementwise
op or a bag memory-bound), summed: a phase runs its ops one after another (one CPU thread pool, one CUDA
stream), so their times add; max(compute, memory) over a whole phase would assume they overlap, and
under-predicted the bag-of-words rows by 30 % (bench/RESULTS.md). `DeviceRates` carry the
peaks: published datasheet figures for a GPU profile (xmcfit/plan/profiles_data/gpus), measured ones for the CPU
(xmcfit.calibrate, `xmcfit calibrate`). `Efficiency` factors say what fraction of the peak a phase reaches;
CPU_EFFICIENCY is fitted to measured runs (bench/time_model.py, bench/RESULTS.md "Time model (issue 20)"),
GPU_EFFICIENCY is not fitted yet (no GPU run so far).

Counts per micro-batch of b points (B = b x n_devices rows reach a label shard, R = its rows, d its input
width, k the fan-in, s tokens, h hidden, i FFN width, n layers):

    encoder forward      2 x b·s x n x (4h² + 2hi) + 4·b·s² x h x n     (Q/K/V/O, FFN; QKᵀ and PV)
    encoder backward     2 x forward (+ one forward recomputed under gradient checkpointing)
    dense classifier     6·B·R·d fp32 (logits, weight gradient, input gradient)
    fixed fan-in         3 bags of R·k rows of B values each (logits, value gradient, input gradient)
    chunked loss         LOSS_PASSES passes over (R, B) fp32
    optimizer            OPTIMIZER_BYTES_PER_PARAM bytes per parameter (single-tensor/foreach AdamW)
    rewiring             its workspace touched REWIRE_PASSES times, every interval_steps (while it runs)
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING

from xmcfit import workspace
from xmcfit.dtypes import DTYPE_BYTES
from xmcfit.plan.memory import (FP32_BYTES, Layout, aux_param_count, intermediate_param_count,
                                layer_activation_bytes_per_token)

if TYPE_CHECKING:
    from xmcfit.plan.schema import Plan, TimeSection

PHASES = ("encoder_forward", "encoder_backward", "encoder_recompute", "head", "classifier_forward",
          "classifier_backward", "loss", "tfidf_side", "aux_head", "optimizer_step", "rewiring", "communication")
"""The phases of one optimizer step, in the order they run."""

OPS_PER_LAYER_FORWARD = 30
"""Torch operations one transformer layer launches in forward (4 Linears, the SDPA call and its reshapes,
3 dropouts, 2 residual adds, 2 LayerNorms, GELU, autocast casts); backward launches about twice as many."""
OPS_PER_LOSS_CHUNK = 30
"""Operations per chunk of xmcfit.sparse.chunked_loss (slices, the three products, the loss's passes)."""
OPS_PER_PARAM_TENSOR = {"cpu": 12, "cuda": 0.5}
"""Optimizer operations per parameter tensor: torch's single-tensor AdamW on the CPU runs about 12 ops per
tensor; foreach on CUDA groups all tensors into a few dozen kernels (0.5 per tensor is a round figure)."""
LOSS_PASSES = {"squared_hinge": 12, "bce": 10}
"""fp32 passes over a chunk's (chunk, batch) logits: squared hinge fills, scatters, multiplies, clamps, dots,
copies and scales (xmcfit.sparse.loss._loss_and_grad_), plus the bias gradient's row sums."""
OPTIMIZER_BYTES_PER_PARAM = {"adamw": 88, "sgd_momentum": 44, "sgd": 20, "lowprec": 64}
"""Bytes read and written per parameter by one optimizer step. AdamW (single-tensor or foreach): weight
decay 8, exp_avg.lerp_ 12, exp_avg_sq.mul_/addcmul_ 20, sqrt / bias correction / eps 24, addcdiv_ 16, and
the gradient-norm check 8. SGD with momentum about half; plain SGD a read-modify-write of the parameter and
its gradient; the sliced pure-bf16 optimizers (xmcfit.sparse.lowprec_optim) work in fp32 temporaries."""
REWIRE_PASSES = 4
"""Times a rewiring event touches its per-row workspace (xmcfit.workspace.rewire_workspace_bytes)."""
PATTERN_REBUILD_BYTES_PER_CONNECTION = 48
"""CPU (torch backend): after a rewiring each chunk's transposed pattern is sorted again (int32 sort,
bincount, cumsum; xmcfit.sparse.torch_backend.transposed_pattern)."""
SPARSE_STREAM_BYTES_PER_CONNECTION = 30
"""Per connection and step, besides the bags: index casts to int32 (2+4 bytes read/written per bag call,
three calls), the values gathered into the transposed order (12) and the CSR pattern of the value gradient."""
CPU_BACKWARD_BAG_SLOWDOWN = 4.0
"""The torch backend's two backward products gather about 4x slower per byte than the forward's embedding
bag: the value gradient is torch.sparse.sampled_addmm (a strided column of x per connection), the input
gradient an index_select into the transposed order and a bag over it. Measured on the development machine
(1 thread, fan-in 64/256, d 384/512, batch 32/64): forward 83-87 GB/s, value gradient 19 GB/s, input
gradient 16-23 GB/s of gathered rows. The Triton backend's kernels are not measured (factor 1 on CUDA)."""
CPU_SKINNY_GEMM_COST = 1.6
"""The dense classifier's GEMMs have the batch (32-128) as one dimension; on the CPU they ran at about 60 % of
the calibration GEMM's rate in a step (profile of the citeulike-t dense row, 1 thread: mm + addmm + addmm_
229 ms for 10.4 GFLOP, against 91 GFLOP/s calibrated): their FLOPs count 1.6 times."""
STEP_OVERHEAD_OPS = 40
"""Operations of a step outside the model: moving the batch, the loss mix, finiteness checks, the learning
rates, zero_grad, the progress record."""


@dataclass(frozen=True)
class DeviceRates:
    """Peak rates of one device, per second. A GPU's come from its profile's datasheet figures; the CPU's
    are measured (xmcfit.calibrate) at the thread count the trainer uses."""

    name: str
    """What the rates describe: "H100-80G (datasheet)" or "cpu: AMD EPYC, 1 thread (calibrated ...)"."""
    kind: str
    """"cuda" or "cpu": which efficiency factors and op counts apply."""
    matmul_16bit_flops_per_s: float
    """Dense matrix multiply in bf16/fp16 (tensor cores; on a CPU, torch's bf16 GEMM)."""
    matmul_fp32_flops_per_s: float
    """Dense matrix multiply in fp32 (no TF32: torch's default for matmul)."""
    memory_bytes_per_s: float
    """Streaming bandwidth (read + write bytes per second of an elementwise op)."""
    gather_bytes_per_s: float
    """Bytes per second gathered by an embedding bag of short rows (the sparse products' access pattern);
    a GPU profile uses its memory bandwidth."""
    op_overhead_s: float
    """Seconds to launch one operation: Python and dispatcher on a CPU, kernel launch on a GPU."""
    interconnect_bytes_per_s: float = 0.0
    """Device-to-device bandwidth, both directions together (NVLink, PCIe); 0 = none known."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and f.name != "interconnect_bytes_per_s" and not value > 0:
                raise ValueError(f"{f.name}={value!r}: must be > 0")


@dataclass(frozen=True)
class Efficiency:
    """Fractions of the peak rates a training step reaches, per kind of work."""

    matmul: float
    """fp32 matrix multiplies."""
    stream: float
    gather: float
    matmul_16bit: float
    """bf16/fp16 matrix multiplies (autocast's casts around them are counted as streamed bytes)."""


CPU_EFFICIENCY = Efficiency(matmul=0.8, stream=0.5, gather=0.6, matmul_16bit=0.7)
"""Fitted by hand to bench/time_model.py's 14 configurations on the 2-core AMD EPYC development machine, core 1,
1 thread, 2026-12-07 (bench/RESULTS.md, "Time model (issue 20)"): matmul from the text rows (the encoder's
GEMMs dominate them), matmul_16bit from the one bf16 row, stream from the bag-of-words rows (AdamW dominates
them), gather from the fan-in rows together with CPU_BACKWARD_BAG_SLOWDOWN. The calibration's GEMM and bag are
the trainer's own kinds of op, so the factors stay near 1: what is lost is the encoder's smaller GEMMs and the
caches the ops between them evict."""
GPU_EFFICIENCY = Efficiency(matmul=0.5, stream=0.7, gather=0.4, matmul_16bit=0.5)
"""NOT FITTED (no GPU run yet): about half of the tensor-core peak is what BERT-sized training reaches in
published MFU figures; streams reach most of HBM bandwidth, short-row gathers less. bench/gpu_check.py's time
model check measures them on the first GPU run; replace these with its figures."""


@dataclass(frozen=True)
class Work:
    """What one phase does: FLOPs, bytes, operations launched and bytes sent between devices."""

    flops_16bit: float = 0.0
    flops_fp32: float = 0.0
    stream_bytes: float = 0.0
    gather_bytes: float = 0.0
    n_ops: float = 0.0
    sent_bytes: float = 0.0

    def __add__(self, other: "Work") -> "Work":
        return Work(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def times(self, factor: float) -> "Work":
        return Work(*(getattr(self, f.name) * factor for f in fields(self)))

    @property
    def flops(self) -> float:
        return self.flops_16bit + self.flops_fp32


@dataclass(frozen=True)
class Workload:
    """What the data adds to the plan: how many points an epoch has and how wide a bag-of-words input is."""

    n_train_points: int
    """Training points per epoch."""
    nnz_per_point: float = 0.0
    """Bag-of-words input: nonzero features per point (0 for text)."""
    assumed: tuple[str, ...] = ()
    """Which of these figures were assumed rather than read from data or a dataset profile, one phrase each."""

    def __post_init__(self) -> None:
        if self.n_train_points < 1:
            raise ValueError(f"n_train_points={self.n_train_points}: must be >= 1")


def seconds(work: Work, rates: DeviceRates, eff: Efficiency) -> float:
    """The time of `work` on `rates`: each kind of op at its roofline bound, summed (module docstring)."""
    compute = (work.flops_16bit / (rates.matmul_16bit_flops_per_s * eff.matmul_16bit)
               + work.flops_fp32 / (rates.matmul_fp32_flops_per_s * eff.matmul))
    memory = (work.stream_bytes / (rates.memory_bytes_per_s * eff.stream)
              + work.gather_bytes / (rates.gather_bytes_per_s * eff.gather))
    link = rates.interconnect_bytes_per_s / 2 or rates.memory_bytes_per_s  # one direction of the link
    return compute + memory + work.n_ops * rates.op_overhead_s + work.sent_bytes / link


def _matmul(layout: Layout, flops: float, in_16bit: bool) -> Work:
    return Work(flops_16bit=flops) if in_16bit else Work(flops_fp32=flops)


# -- the encoder -----------------------------------------------------------------------------------------


def text_encoder_forward(layout: Layout, nnz_per_point: float = 0.0) -> Work:
    """One micro-batch through the transformer (see the module docstring); bytes: each layer writes and
    reads back what it saves for backward, and reads its weights (16-bit copies made from fp32 under AMP)."""
    enc, s, b = layout.encoder, layout.seq_len, layout.micro_batch
    h, i, n = enc.hidden_size, enc.intermediate_size, enc.n_layers
    tokens = b * s
    flops = 2 * tokens * n * (4 * h * h + 2 * h * i) + 4 * b * s * s * h * n
    activations = tokens * n * layer_activation_bytes_per_token(enc, s, layout.precision)
    weight_bytes = enc.n_params * (FP32_BYTES + 2 * DTYPE_BYTES["bfloat16"] if layout.amp else FP32_BYTES)
    return _matmul(layout, flops, layout.amp) + Work(stream_bytes=2 * activations + weight_bytes,
                                                     n_ops=n * OPS_PER_LAYER_FORWARD + 10)


def bow_encoder_forward(layout: Layout, nnz_per_point: float) -> Work:
    """EmbeddingBag(sum): each point gathers its nonzero features' rows of the (n_features, h) weight."""
    h = layout.encoder.hidden_size
    gathered = layout.micro_batch * nnz_per_point * h * FP32_BYTES
    return Work(flops_fp32=2 * layout.micro_batch * nnz_per_point * h, gather_bytes=gathered, n_ops=8)


def encoder_forward(layout: Layout, nnz_per_point: float) -> Work:
    build = bow_encoder_forward if layout.encoder.kind == "bow" else text_encoder_forward
    return build(layout, nnz_per_point)


def encoder_backward(layout: Layout, nnz_per_point: float) -> Work:
    """Twice the forward's FLOPs and bytes; the (token or feature) embedding's gradient is dense, so it is
    zero-filled and written whole every micro-batch (vocab x h fp32)."""
    enc = layout.encoder
    embedding_grad = Work(stream_bytes=2 * enc.vocab_size * enc.hidden_size * FP32_BYTES, n_ops=4)
    return encoder_forward(layout, nnz_per_point).times(2) + embedding_grad


def encoder_recompute(layout: Layout, nnz_per_point: float) -> Work:
    """Gradient checkpointing runs every layer's forward again in backward."""
    if not layout.gradient_checkpointing or layout.encoder.kind != "text":
        return Work()
    return encoder_forward(layout, nnz_per_point)


# -- the heads ----------------------------------------------------------------------------------------------


def head(layout: Layout) -> Work:
    """Pooling, dropout and the intermediate layer (forward and backward, under autocast like the encoder)."""
    enc, b, d_mid = layout.encoder, layout.micro_batch, layout.intermediate_dim
    pooled = b * max(1, layout.seq_len) * enc.hidden_size * FP32_BYTES * 3  # mean pooling reads, backward writes
    flops = 6 * b * enc.hidden_size * d_mid
    mid_bytes = intermediate_param_count(enc.hidden_size, d_mid) * FP32_BYTES * 3 + 8 * b * d_mid * FP32_BYTES
    return _matmul(layout, flops, layout.amp) + Work(stream_bytes=pooled + mid_bytes, n_ops=12 + (12 if d_mid else 0))


def aux_head(layout: Layout) -> Work:
    """The auxiliary head's (b, d) x (d, C) product, its gradients, and BCE over the (b, C) logits (fp32)."""
    if not layout.aux_enabled:
        return Work()
    b, d, c = layout.micro_batch, layout.features_dim, layout.n_clusters
    params = aux_param_count(d, c, True) * FP32_BYTES
    return Work(flops_fp32=6 * b * d * c, stream_bytes=3 * params + LOSS_PASSES["bce"] * b * c * FP32_BYTES, n_ops=25)


# -- the classifier and its chunked loss -----------------------------------------------------------------


def _n_loss_chunks(layout: Layout) -> int:
    return -(-layout.rows_per_device // min(layout.loss_chunk_size, layout.rows_per_device))


def classifier_forward(layout: Layout) -> Work:
    """Logits of every label row for the gathered batch: a dense fp32 GEMM, or one bag of k rows per label."""
    rows, batch, d = layout.rows_per_device, layout.gathered_batch, layout.features_dim
    ops = Work(n_ops=_n_loss_chunks(layout) * OPS_PER_LOSS_CHUNK / 3)
    if layout.classifier_kind == "dense":
        skinny = CPU_SKINNY_GEMM_COST if layout.device == "cpu" else 1.0
        return ops + Work(flops_fp32=2 * batch * rows * d * skinny, stream_bytes=rows * d * FP32_BYTES)
    connections = rows * layout.fan_in
    return ops + Work(flops_fp32=2 * batch * connections, gather_bytes=connections * batch * FP32_BYTES,
                      stream_bytes=connections * SPARSE_STREAM_BYTES_PER_CONNECTION / 3)


def classifier_backward(layout: Layout) -> Work:
    """The weight (value) gradient and the input gradient: twice the forward's products (gathered at a
    fraction of the forward's rate on the CPU: CPU_BACKWARD_BAG_SLOWDOWN); each chunk's weight gradient is
    written, then copied into the whole gradient (three passes over it)."""
    rows, d = layout.rows_per_device, layout.features_dim
    width = d if layout.classifier_kind == "dense" else layout.fan_in
    grad_write = 3 * rows * width * DTYPE_BYTES[layout.value_dtype]
    products = classifier_forward(layout).times(2)
    if layout.classifier_kind == "sparse" and layout.device == "cpu":
        products = replace(products, gather_bytes=products.gather_bytes * CPU_BACKWARD_BAG_SLOWDOWN)
    return products + Work(stream_bytes=grad_write)


def loss(layout: Layout, loss_name: str = "squared_hinge") -> Work:
    """The loss and its gradient over every (label, row) pair, chunk by chunk, in fp32."""
    logits = layout.rows_per_device * layout.gathered_batch * FP32_BYTES
    return Work(stream_bytes=LOSS_PASSES[loss_name] * logits, n_ops=_n_loss_chunks(layout) * OPS_PER_LOSS_CHUNK / 3)


def tfidf_side(layout: Layout) -> Work:
    """The TF-IDF scorer: logits and value gradient (a bag and a sampled product of k' rows per label, the
    latter at the backward's rate), over the dense (b, n_words) TF-IDF rows built for the micro-batch."""
    if not layout.tfidf_n_words:
        return Work()
    connections = layout.rows_per_device * layout.tfidf_fan_in
    gathered = layout.gathered_batch if layout.n_devices > 1 else 0  # the all-gathered rows, written once
    inputs = (3 * layout.micro_batch + gathered) * layout.tfidf_n_words * FP32_BYTES
    value_grad_cost = CPU_BACKWARD_BAG_SLOWDOWN if layout.device == "cpu" else 1.0
    return Work(flops_fp32=4 * layout.gathered_batch * connections,
                gather_bytes=(1 + value_grad_cost) * connections * layout.gathered_batch * FP32_BYTES,
                stream_bytes=inputs + connections * SPARSE_STREAM_BYTES_PER_CONNECTION,
                n_ops=_n_loss_chunks(layout) * 8 + 6)


# -- once per optimizer step ----------------------------------------------------------------------------


def _param_tensors(layout: Layout) -> int:
    """Parameter tensors the optimizers update one by one (single-tensor AdamW on the CPU)."""
    encoder = 16 * layout.encoder.n_layers + 5 if layout.encoder.kind == "text" else 2
    return encoder + 2 * bool(layout.intermediate_dim) + 2 * layout.aux_enabled + bool(layout.tfidf_n_words) + 2


def optimizer_step(layout: Layout) -> Work:
    """Both optimizers' updates: the encoder side's AdamW (encoder, intermediate layer, aux head, TF-IDF
    values) and the classifier's (its values and bias)."""
    enc = layout.encoder
    side = (enc.n_params + intermediate_param_count(enc.hidden_size, layout.intermediate_dim)
            + aux_param_count(layout.features_dim, layout.n_clusters, layout.aux_enabled)
            + layout.rows_per_device * layout.tfidf_fan_in)
    width = layout.features_dim if layout.classifier_kind == "dense" else layout.fan_in
    classifier = layout.rows_per_device * (width + int(layout.bias))
    lowprec = layout.classifier_kind == "sparse" and layout.value_dtype == "bfloat16"
    per_value = OPTIMIZER_BYTES_PER_PARAM["lowprec" if lowprec else layout.optimizer]
    return Work(stream_bytes=side * OPTIMIZER_BYTES_PER_PARAM["adamw"] + classifier * per_value,
                n_ops=_param_tensors(layout) * OPS_PER_PARAM_TENSOR[layout.device] + STEP_OVERHEAD_OPS)


def rewiring(layout: Layout, stop_fraction: float, interval_steps: int) -> Work:
    """One rewiring event's work spread over the steps between events, while rewiring runs (the first
    `stop_fraction` of the steps): its workspace touched REWIRE_PASSES times, plus, on the CPU, the
    transposed patterns sorted again."""
    if not (layout.rewiring_enabled and layout.classifier_kind == "sparse"):
        return Work()
    rows, k = layout.rows_per_device, layout.fan_in
    touched = REWIRE_PASSES * workspace.rewire_workspace_bytes(rows, layout.features_dim, k,
                                                               DTYPE_BYTES[layout.value_dtype])
    patterns = rows * k * PATTERN_REBUILD_BYTES_PER_CONNECTION if layout.device == "cpu" else 0
    chunks = -(-rows // min(layout.rewiring_chunk_rows, rows))
    event = Work(stream_bytes=touched + patterns, n_ops=40 * chunks + 4 * _n_loss_chunks(layout))
    return event.times(stop_fraction / interval_steps)


def communication(layout: Layout) -> tuple[Work, Work]:
    """(per micro-batch, per step) bytes sent by a label-sharded run: the features all-gathered and their
    gradient reduce-scattered (B x d fp32 each, (n-1)/n of it leaves the device), the TF-IDF side's input
    rows all-gathered (B x n_words fp32), and DDP's all-reduce of the encoder's gradients once per step
    (2 (n-1)/n of them, ring all-reduce)."""
    n = layout.n_devices
    if n == 1:
        return Work(), Work()
    share = (n - 1) / n
    features = 2 * layout.gathered_batch * layout.features_dim * FP32_BYTES * share
    tfidf = layout.gathered_batch * layout.tfidf_n_words * FP32_BYTES * share
    gradients = 2 * layout.encoder.n_params * FP32_BYTES * share
    return (Work(sent_bytes=features + tfidf, n_ops=4 + 2 * bool(layout.tfidf_n_words)),
            Work(sent_bytes=gradients, n_ops=8))


# -- the sum ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepWork:
    """The work of one optimizer step per phase (micro-batch phases already times grad_accum)."""

    phases: dict[str, Work]


def step_work(layout: Layout, nnz_per_point: float = 0.0, loss_name: str = "squared_hinge",
              rewiring_stop_fraction: float = 0.66, rewiring_interval_steps: int = 1000) -> StepWork:
    """Every phase's work for one optimizer step of `layout` (per device)."""
    per_micro = {
        "encoder_forward": encoder_forward(layout, nnz_per_point),
        "encoder_backward": encoder_backward(layout, nnz_per_point),
        "encoder_recompute": encoder_recompute(layout, nnz_per_point),
        "head": head(layout),
        "classifier_forward": classifier_forward(layout),
        "classifier_backward": classifier_backward(layout),
        "loss": loss(layout, loss_name),
        "tfidf_side": tfidf_side(layout),
        "aux_head": aux_head(layout),
    }
    micro_comm, step_comm = communication(layout)
    phases = {name: work.times(layout.grad_accum) for name, work in per_micro.items()}
    phases["optimizer_step"] = optimizer_step(layout)
    phases["rewiring"] = rewiring(layout, rewiring_stop_fraction, rewiring_interval_steps)
    phases["communication"] = micro_comm.times(layout.grad_accum) + step_comm
    return StepWork(phases={name: phases[name] for name in PHASES})


def efficiency_for(rates: DeviceRates) -> Efficiency:
    return CPU_EFFICIENCY if rates.kind == "cpu" else GPU_EFFICIENCY


@dataclass(frozen=True)
class TimeEstimate:
    """Predicted seconds of one optimizer step per phase, and of an epoch and the run."""

    device: str
    phase_seconds: dict[str, float]
    step_seconds: float
    dominant_phase: str
    steps_per_epoch: int
    epoch_seconds: float
    """An end-to-end epoch."""
    run_seconds: float
    """The linear-probe warm start (when the plan has one) and every end-to-end epoch."""
    probe_seconds: float = 0.0
    """The linear probe: the encoder's forward over every training point once, then the heads' steps."""
    assumed: tuple[str, ...] = field(default=())


def steps_per_epoch(n_train_points: int, micro_batch: int, grad_accum: int, n_devices: int) -> int:
    """Optimizer steps of one epoch: micro-batches of micro_batch x n_devices points, grad_accum per step
    (xmcfit.train.epoch.run_epoch: the last group may be short)."""
    n_micro = -(-n_train_points // (micro_batch * n_devices))
    return -(-n_micro // grad_accum)


ENCODER_PHASES = ("encoder_forward", "encoder_backward", "encoder_recompute")


def probe_seconds(layout: Layout, phase_seconds: dict[str, float], rates: DeviceRates, eff: Efficiency,
                  workload: Workload, n_steps: int, probe_epochs: int) -> float:
    """The linear-probe warm start: one forward of the encoder over every training point (no gradients), then
    `probe_epochs` epochs of steps without the encoder's phases (its optimizer has no gradients to apply)."""
    if not probe_epochs:
        return 0.0
    forward_per_micro = seconds(encoder_forward(layout, workload.nnz_per_point), rates, eff)
    encode_all = forward_per_micro * workload.n_train_points / layout.micro_batch
    head_step = sum(s for name, s in phase_seconds.items() if name not in ENCODER_PHASES)
    return encode_all + probe_epochs * n_steps * head_step


def predict_time(layout: Layout, rates: DeviceRates, workload: Workload, *, epochs: int, probe_epochs: int = 0,
                 loss_name: str = "squared_hinge", rewiring_stop_fraction: float = 0.66,
                 rewiring_interval_steps: int = 1000, efficiency: Efficiency | None = None) -> TimeEstimate:
    """Seconds per step (per phase), per epoch and for the whole run (`probe_epochs` of the linear probe, then
    `epochs` end to end) of `layout` on `rates`; a CPU runs the torch sparse backend and its optimizers."""
    layout = replace(layout, device="cpu" if rates.kind == "cpu" else "cuda")
    eff = efficiency or efficiency_for(rates)
    work = step_work(layout, workload.nnz_per_point, loss_name, rewiring_stop_fraction, rewiring_interval_steps)
    phase_seconds = {name: seconds(w, rates, eff) for name, w in work.phases.items()}
    step_s = sum(phase_seconds.values())
    n_steps = steps_per_epoch(workload.n_train_points, layout.micro_batch, layout.grad_accum, layout.n_devices)
    probe_s = probe_seconds(layout, phase_seconds, rates, eff, workload, n_steps, probe_epochs)
    return TimeEstimate(device=rates.name, phase_seconds=phase_seconds, step_seconds=step_s,
                        dominant_phase=max(phase_seconds, key=lambda name: phase_seconds[name]),
                        steps_per_epoch=n_steps, epoch_seconds=step_s * n_steps,
                        run_seconds=step_s * n_steps * epochs + probe_s, probe_seconds=probe_s,
                        assumed=workload.assumed)


def predict_plan_time(plan: "Plan", rates: DeviceRates, workload: Workload) -> TimeEstimate:
    """predict_time for everything a plan says: its layout, epochs, loss and rewiring schedule."""
    layout = Layout.on_cpu(plan) if rates.kind == "cpu" else Layout.from_plan(plan)
    return predict_time(layout, rates, workload, epochs=plan.training.epochs,
                        probe_epochs=plan.training.probe_epochs, loss_name=plan.classifier.loss,
                        rewiring_stop_fraction=plan.rewiring.stop_fraction,
                        rewiring_interval_steps=plan.rewiring.interval_steps)



ASSUMED_POINTS_PER_LABEL = 1.0
"""Training points per label assumed when only --labels is known: the Extreme Classification Repository's
large sets have about as many training points as labels (Amazon-670K 490k / 670k, Amazon-3M 1.7M / 2.8M,
Wiki-500K 1.8M / 0.5M, LF-AmazonTitles-1.3M 2.2M / 1.3M)."""


def workload_for(n_labels: int, n_train_points: int, nnz_per_point: float) -> Workload:
    """The plan's workload: the request's training points (--train-points, else the data's or the dataset
    profile's count), else one point per label (said in `assumed`)."""
    if n_train_points:
        return Workload(n_train_points, nnz_per_point)
    assumed = (f"{n_labels:,} training points (one per label; pass --train-points)",)
    return Workload(max(1, round(n_labels * ASSUMED_POINTS_PER_LABEL)), nnz_per_point, assumed)


def time_section(estimate: TimeEstimate, workload: Workload) -> "TimeSection":
    """The plan's time section from an estimate."""
    from xmcfit.plan.schema import TimeSection

    return TimeSection(device=estimate.device, phase_seconds=dict(estimate.phase_seconds),
                       step_seconds=estimate.step_seconds, dominant_phase=estimate.dominant_phase,
                       n_train_points=workload.n_train_points, steps_per_epoch=estimate.steps_per_epoch,
                       epoch_seconds=estimate.epoch_seconds, run_seconds=estimate.run_seconds,
                       assumed=workload.assumed)
