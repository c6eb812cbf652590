"""The chooser: from labels, a memory budget, an encoder and a target batch to a Plan that fits.

Deterministic. It walks a fixed degradation chain, changing one knob at a time, cheapest in accuracy
first (the measured costs are in bench/RESULTS.md, "Accuracy cost of each memory move"), and keeps
the first configuration whose predicted peak fits:

  0. a dense fp32 L x d classifier trained by AdamW, no checkpointing, micro-batch = target batch over
     the devices (the target batch is the effective one: micro-batch x accumulation x devices):
     when it fits as it is, a sparse classifier would only cost accuracy and speed (skipped when
     `--classifier sparse` or a sparse-only knob is pinned, and for bag-of-words input: see 1)
  1. sparse start: fan-in = largest of the ladder <= d, fp32 classifier values, AdamW, no checkpointing,
     micro-batch = target batch over the devices. Bag-of-words input beside the TF-IDF side starts at fan-in 32
     with the intermediate layer (DEFAULTS.bow_fan_in): level with dense or above on all three bag-of-words
     sets, so it is the first configuration there, not a memory move (from about 5,000 labels on it is also
     cheaper than dense or fan-in 256; below, the layer adds some 40 MiB)
  2. gradient checkpointing on                     (costs ~1 extra forward, no accuracy)
  3. halve the micro-batch, doubling grad_accum, down to 16 (effective batch kept; costs speed)
     -- steps 2-3 are speed moves: each is taken only if it saves >= 5% of the current peak, else the
        next accuracy move (4-8) comes first and the speed move is reconsidered after it --
  4. fan-in down the ladder to 32; every lowered rung (and any below half of d) has a 4096-wide ReLU intermediate layer
     in front of the classifier, the method's remedy for low fan-in (without it fan-in 64 of 384 lost a
     third of P@1 on EURLEX57K; with it fan-in 64 gained 2 points over fan-in 256 and fan-in 32 kept 98 %)
  5. pure-bf16 classifier: bf16 values/grads/state with Kahan-compensated updates (-1.6 P@1 on EURLEX57K
     features, -0.2 on Bibtex: dearer than any fan-in step with the intermediate layer, so it comes after)
  6. classifier optimizer AdamW -> SGD with momentum
  7. fan-in down the ladder to 16
  8. classifier optimizer -> plain SGD
  8b. the TF-IDF side's words per label 64 -> 32 -> 16 (DEFAULTS.tfidf_fallback_fan_ins; unless
     --tfidf-fan-in pins them): each label keeps its heaviest words. The side carries more P@1 than any
     classifier move costs (bench/RESULTS.md), so it is thinned only after them, and turned off (the chain
     walked again without it) only when nothing fits even then
  9. halve the micro-batch down to 1
With `--classifier dense` (the baseline the method is compared with) the classifier is a dense fp32
L x d matrix trained by AdamW and only the speed moves (2, 3, 9) apply.
Along the chain the fan-in, the micro-batch, the classifier's precision and optimizer and the TF-IDF
side's words per label only go down, so more memory never gives a smaller fan-in, a smaller micro-batch
or a cheaper classifier, with the side as with it off. Across the side's switch it may: a budget too small
for the side walks the chain again without it and can afford a richer classifier than a slightly larger
budget that keeps the side at the chain's end. A pinned
knob (set by flag) is skipped. If nothing fits, PlanError names the smallest budget that would fit and
the term that dominates it.

Ties are broken by time when the plan has a device to time it on (a GPU profile, or this CPU's
calibration): the speed moves cost no accuracy, so once the first fit is found, every setting of
checkpointing and micro-batch that fits beside its accuracy knobs is priced by the time model
(xmcfit.plan.time_model) and the fastest taken when it beats the first fit by SPEED_TIE_MARGIN (a reason
line says so). A micro-batch of 16 without checkpointing often beats 128 with it.
"""

from __future__ import annotations

import logging
import math
import typing
from dataclasses import dataclass, replace

from xmcfit.version import __version__
from xmcfit.errors import XmcfitError
from xmcfit.plan.defaults import DEFAULTS
from xmcfit.plan.memory import CUDA_CONTEXT_BYTES, Layout, MemoryEstimate, memory_section, predict
from xmcfit.plan.schema import (SCHEMA_VERSION, AuxSection, ClassifierKind, ClassifierOptimizer, ClassifierSection, EncoderSpec,
                                InputsSection, InputWeighting, LossName, LossReduction, ModelSection, Plan, PlanError,
                                Pooling, Precision, RewiringSection, TfidfSection, TrainingSection, ValueDtype, check_value,
                                index_dtype_for, MAX_SEED)
from xmcfit.plan.units import gib
from xmcfit.workspace import loss_workspace_per_label_bytes

log = logging.getLogger(__name__)

COST_TABLE = '`python -m xmcfit.docs`, "Accuracy cost of each memory move"'
"""Where the reasons send a user for the measured accuracy cost of a memory move: a document shipped in
the package (xmcfit/docs/accuracy.md), so a wheel install can read it (bench/ is not in the wheel)."""
RECIPE_DOC = '`python -m xmcfit.docs`, "The recipe\'s measured defaults"'
"""Where the reasons send a user for the measurements behind a recipe default."""
TFIDF_DOC = '`python -m xmcfit.docs`, "The TF-IDF side"'
"""... and behind the TF-IDF side being on by default."""

FAN_IN_LADDER = (256, 192, 128, 96, 64, 48, 32, 24, 16)
FAN_IN_ACCURACY_FLOOR = 32
"""Down to this fan-in (with the intermediate layer) the accuracy cost stays under that of SGD; below it the
chooser changes the optimizer first (bench/RESULTS.md)."""
MICRO_BATCH_FLOOR = 16
"""Micro-batch halving stops here until every accuracy knob is spent."""
SPEED_MOVE_MIN_SAVING = 0.05
"""A speed move must save this fraction of the peak to come before the next accuracy move."""


@dataclass(frozen=True)
class Pins:
    """Knobs the user fixed by flag (None = the chooser decides). A pinned value is never changed."""

    precision: Precision | None = None
    fan_in: int | None = None
    optimizer: ClassifierOptimizer | None = None
    value_dtype: ValueDtype | None = None
    gradient_checkpointing: bool | None = None
    micro_batch: int | None = None
    intermediate_dim: int | None = None
    loss_chunk_size: int | None = None
    aux_clusters: int | None = None
    """0 turns the auxiliary objective off."""
    rewiring_interval: int | None = None
    classifier: ClassifierKind | None = None
    """"dense" plans the L x d baseline; None or "sparse" the fixed fan-in classifier."""
    # -- recipe knobs (no effect on memory, except input_weighting's idf vector) --------------------
    encoder_lr: float | None = None
    classifier_lr: float | None = None
    loss: LossName | None = None
    loss_reduction: LossReduction | None = None
    probe_epochs: int | None = None
    """0 turns the linear-probe warm start off."""
    dropout: float | None = None
    input_weighting: InputWeighting | None = None
    tfidf: bool | None = None
    """False turns the TF-IDF side off; True keeps it on even where it does not fit (then nothing fits)."""
    tfidf_fan_in: int | None = None

    pooling: Pooling | None = None
    """How a text encoder's token states become one vector ("mean" or "cls"); priced (mean pooling keeps
    its fp32 input for backward, CLS nothing)."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(Pins)
        for name, value in vars(self).items():
            if value is not None:
                check_value(hints[name], value, PIN_FLAGS[name])

    def names(self) -> tuple[str, ...]:
        return tuple(name for name, value in vars(self).items() if value is not None)


PIN_FLAGS = {"precision": "--precision", "fan_in": "--fan-in", "optimizer": "--classifier-optimizer",
             "value_dtype": "--classifier-dtype", "gradient_checkpointing": "--checkpointing",
             "micro_batch": "--micro-batch", "intermediate_dim": "--intermediate-dim", "loss_chunk_size": "--loss-chunk",
             "aux_clusters": "--aux-clusters", "rewiring_interval": "--rewire-every", "classifier": "--classifier",
             "encoder_lr": "--encoder-lr", "classifier_lr": "--classifier-lr", "loss": "--loss",
             "loss_reduction": "--loss-reduction", "probe_epochs": "--probe-epochs", "dropout": "--dropout",
             "input_weighting": "--input-weighting", "tfidf": "--tfidf", "tfidf_fan_in": "--tfidf-fan-in",
             "pooling": "--pooling"}
"""The `xmcfit plan` flag of each pin, for error lines (the Python API passes the same names as keywords)."""


@dataclass(frozen=True)
class PlanRequest:
    """What the user asked for: the problem, the hardware budget and the training targets."""

    n_labels: int
    budget_bytes: int
    encoder: EncoderSpec
    seq_len: int
    target_batch: int = DEFAULTS.target_batch
    batch_pinned: bool = False
    """--batch gave target_batch; else it was sized to n_train_points (DEFAULTS.batch_for)."""
    gpu_name: str = "manual"
    bf16_supported: bool = True
    cuda_context_bytes: int = CUDA_CONTEXT_BYTES
    n_devices: int = 1
    epochs: int = DEFAULTS.epochs
    seed: int = 0
    pooling: Pooling = DEFAULTS.pooling
    dataset: str | None = None
    data_path: str | None = None
    pins: Pins = Pins()
    n_train_points: int = 0
    """Training points per epoch: they size the batch, the TF-IDF side's rate and the time (0: unknown; the
    time model then assumes one per label)."""
    nnz_per_point: float = 0.0
    """Bag-of-words input: nonzero features per point (0: text, or unknown)."""
    points_per_label: float = 0.0
    """Training points per label, on average over the labels that have one (0: unknown)."""

    def __post_init__(self) -> None:
        def need(ok: bool, flag: str, value: object, rule: str) -> None:
            if not ok:
                raise XmcfitError(f"{flag} {value}: {rule}")

        need(self.n_labels >= 1, "--labels", self.n_labels, "must be >= 1")
        need(self.budget_bytes >= 1, "--gpu-mem", self.budget_bytes, "must be >= 1 byte")
        need(self.target_batch >= 1, "--batch", self.target_batch, "must be >= 1")
        need(self.n_devices >= 1, "--devices", self.n_devices, "must be >= 1")
        need(self.target_batch % self.n_devices == 0, "--batch", self.target_batch,
             f"must be a multiple of --devices {self.n_devices} (the effective batch is split evenly across them)")
        need(self.epochs >= 0, "--epochs", self.epochs, "must be >= 0")
        need(0 <= self.seed <= MAX_SEED, "--seed", self.seed, f"must be between 0 and 2**62 ({MAX_SEED})")
        if self.encoder.kind == "text":
            need(1 <= self.seq_len <= self.encoder.max_seq_len, "--seq-len", self.seq_len,
                 f"must be between 1 and {self.encoder.name}'s maximum {self.encoder.max_seq_len}")
        p = self.pins
        d = p.intermediate_dim or self.encoder.hidden_size
        if p.fan_in is not None:
            need(1 <= p.fan_in <= d, "--fan-in", p.fan_in, f"must be between 1 and the input dimension d={d}")
        if p.micro_batch is not None:
            need(1 <= p.micro_batch <= self.device_batch, "--micro-batch", p.micro_batch,
                 f"must be between 1 and the per-device batch {self.device_batch} (--batch {self.target_batch} "
                 f"over {self.n_devices} device(s))")
        if p.precision == "bf16_amp":
            need(self.bf16_supported, "--precision", p.precision, f"{self.gpu_name} has no bf16 support")
        for flag, value in (("--intermediate-dim", p.intermediate_dim), ("--aux-clusters", p.aux_clusters)):
            need(value is None or value >= 0, flag, value, "must be >= 0")
        for flag, value in (("--loss-chunk", p.loss_chunk_size), ("--rewire-every", p.rewiring_interval)):
            need(value is None or value >= 1, flag, value, "must be >= 1")
        for flag, value in (("--encoder-lr", p.encoder_lr), ("--classifier-lr", p.classifier_lr)):
            need(value is None or value > 0, flag, value, "must be > 0")
        need(p.probe_epochs is None or p.probe_epochs >= 0, "--probe-epochs", p.probe_epochs, "must be >= 0")
        need(self.epochs >= 1 or (p.probe_epochs or 0) >= 1, "--epochs", self.epochs,
             "must be >= 1 (0 only with --probe-epochs >= 1: a head trained on frozen encoder features)")
        need(p.dropout is None or 0.0 <= p.dropout < 1.0, "--dropout", p.dropout, "must be in [0, 1)")
        need(p.input_weighting in (None, "raw") or self.encoder.kind == "bow", "--input-weighting",
             p.input_weighting, "applies to bag-of-words data only")
        need(p.tfidf_fan_in is None or p.tfidf_fan_in >= 1, "--tfidf-fan-in", p.tfidf_fan_in, "must be >= 1")
        need(not (p.tfidf is False and p.tfidf_fan_in is not None), "--tfidf-fan-in", p.tfidf_fan_in,
             "applies to the TF-IDF side, which --no-tfidf turns off")
        need(p.pooling in (None, "mean") or self.encoder.kind == "text", "--pooling", p.pooling,
             "applies to text encoders only (bag-of-words input has no [CLS] token)")
        if p.classifier == "dense":
            for flag, value in (("--fan-in", p.fan_in), ("--classifier-optimizer", p.optimizer),
                                ("--classifier-dtype", p.value_dtype), ("--rewire-every", p.rewiring_interval)):
                need(value is None, flag, value, "applies to the sparse classifier, not --classifier dense")

    @property
    def pooled_by(self) -> Pooling:
        """The pooling the plan gets: the --pooling pin, else the request's default."""
        return self.pins.pooling or self.pooling

    @property
    def device_batch(self) -> int:
        """Points per device and optimizer step: the effective batch (--batch) over the devices."""
        return self.target_batch // self.n_devices

    @property
    def dense(self) -> bool:
        return self.pins.classifier == "dense"

    @property
    def sparse_only(self) -> bool:
        """--classifier sparse, or a knob only the sparse classifier has, was pinned."""
        p = self.pins
        return p.classifier == "sparse" or any(v is not None for v in (p.fan_in, p.optimizer, p.value_dtype,
                                                                       p.rewiring_interval))


@dataclass(frozen=True)
class _Knobs:
    """One point of the search: the knobs the chain degrades."""

    checkpointing: bool
    micro_batch: int
    value_dtype: ValueDtype
    fan_in: int
    optimizer: ClassifierOptimizer
    intermediate_dim: int
    dense: bool = False
    """A dense L x d classifier (fan_in = d, fp32, AdamW)."""
    tfidf_cap: int = 0
    """The TF-IDF side's words per label at most this many (0: the request's, _tfidf_fan_in)."""


StepSeconds = typing.Callable[[Layout], float]
"""Predicted seconds of one optimizer step of a layout (xmcfit.plan.inputs builds it from the time model)."""

SPEED_TIE_MARGIN = 0.02
"""A speed-move alternative replaces the chain's first fit only when predicted at least this much faster."""


def choose_plan(req: PlanRequest, step_seconds: StepSeconds | None = None) -> Plan:
    """The first configuration on the degradation chain that fits `req.budget_bytes` (see module doc); with
    the TF-IDF side first (its words per label lowered on the chain's last rungs), and without it when
    nothing fits with it (unless --tfidf pinned it on).
    With `step_seconds`, ties between speed moves are broken by time (_fastest_speed_moves)."""
    if _tfidf_width(req) and req.pins.tfidf is None:
        try:
            return _choose(req, step_seconds)
        except PlanError:
            plan = _choose(replace(req, pins=replace(req.pins, tfidf=False)), step_seconds)
            return replace(plan, reasons=plan.reasons + (
                "TF-IDF side off: nothing fits with it (`--tfidf` keeps it, then says what would fit)",))
    return _choose(req, step_seconds)


def _tfidf_width(req: PlanRequest) -> int:
    """Words of the TF-IDF side (0: off): the bag-of-words features, or the text vocabulary's cap."""
    on = req.pins.tfidf if req.pins.tfidf is not None else DEFAULTS.tfidf
    if not on:
        return 0
    return req.encoder.vocab_size if req.encoder.kind == "bow" else DEFAULTS.tfidf_max_words


def _tfidf_fan_in(req: PlanRequest) -> int:
    n_words = _tfidf_width(req)
    return min(n_words, req.pins.tfidf_fan_in or DEFAULTS.tfidf_fan_in) if n_words else 0


def _side_fan_in(req: PlanRequest, k: _Knobs) -> int:
    """The side's words per label at knobs `k`: the request's, or the chain's cap where it set one."""
    return min(_tfidf_fan_in(req), k.tfidf_cap) if k.tfidf_cap else _tfidf_fan_in(req)


def _choose(req: PlanRequest, step_seconds: StepSeconds | None = None) -> Plan:
    reasons: list[str] = []
    precision = _precision(req, reasons)
    chain = list(_chain(req, precision))
    fitting = next(((k, est) for k, est in ((k, predict(_layout(req, precision, k))) for k in chain)
                    if est.predicted_peak_bytes <= req.budget_bytes), None)
    if fitting is None:
        last = chain[-1]
        est = predict(_layout(req, precision, last))
        raise PlanError(
            f"nothing fits in {gib(req.budget_bytes):.2f} GiB: the smallest configuration "
            f"(fan-in {last.fan_in}, micro-batch {last.micro_batch}, {last.value_dtype} {last.optimizer} classifier, "
            f"checkpointing {'on' if last.checkpointing else 'off'}) needs {gib(est.predicted_peak_bytes):.2f} GiB, "
            f"dominated by {est.dominant_term()} ({gib(est.terms_bytes[est.dominant_term()]):.2f} GiB)")
    knobs, estimate = fitting
    faster = _fastest_speed_moves(req, precision, knobs, step_seconds) if step_seconds is not None else None
    if faster is not None:
        knobs, estimate, why = faster
    reasons.extend(_explain(req, knobs, next((c for c in chain if not c.dense), chain[0]), estimate))
    if faster is not None:
        reasons.append(why)
    return _build_plan(req, precision, knobs, tuple(reasons))


def _fastest_speed_moves(req: PlanRequest, precision: Precision, k: _Knobs, step_seconds: StepSeconds):
    """The tie-break by time: the speed moves (checkpointing, micro-batch) change speed, not accuracy, so
    among the settings of the two that fit the budget beside the first fit's accuracy knobs, the one the time
    model predicts fastest; None when the first fit is it (or within SPEED_TIE_MARGIN of it). Pinned knobs
    stay; the micro-batch ranges over the target's halvings down to the first fit's own (or the floor)."""
    pins = req.pins
    checkpointing = [k.checkpointing] if pins.gradient_checkpointing is not None or req.encoder.kind != "text" \
        else [False, True]
    micros, m = [k.micro_batch], req.device_batch
    if pins.micro_batch is None:
        while m >= min(k.micro_batch, MICRO_BATCH_FLOOR):
            micros.append(m)
            m //= 2
    first = step_seconds(_layout(req, precision, k))
    best: tuple[float, _Knobs, MemoryEstimate] | None = None
    for c in checkpointing:
        for micro in sorted(set(micros), reverse=True):
            alt = replace(k, checkpointing=c, micro_batch=micro)
            if alt == k:
                continue
            layout = _layout(req, precision, alt)
            est = predict(layout)
            if est.predicted_peak_bytes > req.budget_bytes:
                continue
            s = step_seconds(layout)
            if s <= first * (1 - SPEED_TIE_MARGIN) and (best is None or s < best[0]):
                best = (s, alt, est)
    if best is None:
        return None
    s, alt, est = best
    return alt, est, (f"checkpointing {'on' if alt.checkpointing else 'off'}, micro-batch {alt.micro_batch}: of the "
                      f"speed moves that fit, the fastest by the time model ({s:.3g} s a step against {first:.3g} s "
                      f"with checkpointing {'on' if k.checkpointing else 'off'}, micro-batch {k.micro_batch})")


def _precision(req: PlanRequest, reasons: list[str]) -> Precision:
    if req.pins.precision is not None:
        reasons.append(f"precision {req.pins.precision}: pinned by --precision")
        return req.pins.precision
    if req.bf16_supported:
        reasons.append("precision bf16_amp: the GPU has bf16 tensor cores (no loss scaling needed)")
        return "bf16_amp"
    reasons.append(f"precision fp16_amp: {req.gpu_name} has no bf16, so fp16 autocast with a GradScaler")
    return "fp16_amp"


def _fan_in_ladder(req: PlanRequest, d: int) -> list[int]:
    if req.dense:
        return [d]
    if req.pins.fan_in is not None:
        return [req.pins.fan_in]
    top = min(d, DEFAULTS.bow_fan_in) if _bow_start(req) else d
    return [k for k in FAN_IN_LADDER if k <= top] or [top]


def _bow_start(req: PlanRequest) -> bool:
    """Bag-of-words input beside the TF-IDF side starts at DEFAULTS.bow_fan_in with the intermediate layer, never
    dense (its docstring has the figures), unless the classifier, its fan-in or the layer's width is pinned.
    Without the side it does not: there fan-in 32 was never level with dense (citeulike-t: 9 P@1)."""
    p = req.pins
    return (req.encoder.kind == "bow" and _tfidf_width(req) > 0 and not req.dense and p.fan_in is None
            and p.intermediate_dim is None and _layer_keeps_index_dtype(req))


def _layer_keeps_index_dtype(req: PlanRequest) -> bool:
    """The intermediate layer is planned only where its width needs the same index dtype as the encoder's."""
    return index_dtype_for(DEFAULTS.intermediate_dim) == index_dtype_for(req.encoder.hidden_size)


def _chain(req: PlanRequest, precision: Precision):
    """Yield the degradation chain, best configuration first (module docstring).

    A speed move (checkpointing, micro-batch halving) is taken only while it saves at least
    SPEED_MOVE_MIN_SAVING of the current peak; otherwise the next accuracy move comes first and the
    speed move is reconsidered after it. The chain depends on the request, never on the budget.
    """
    p = req.pins
    inter = p.intermediate_dim or 0
    hidden = req.encoder.hidden_size
    ladder = _fan_in_ladder(req, inter or hidden)
    k = _Knobs(checkpointing=bool(p.gradient_checkpointing), micro_batch=p.micro_batch or req.device_batch,
               value_dtype=p.value_dtype or "float32", fan_in=ladder[0], optimizer=p.optimizer or "adamw",
               intermediate_dim=inter)
    if not req.dense and not req.sparse_only and p.intermediate_dim in (None, 0) and not _bow_start(req):
        yield replace(k, dense=True, fan_in=hidden, value_dtype="float32", optimizer="adamw")
    k = _with_remedy(req, k)
    yield k
    speed: list = []
    if p.gradient_checkpointing is None and req.encoder.kind == "text":
        speed.append(lambda k: replace(k, checkpointing=True))
    if p.micro_batch is None:
        micro = k.micro_batch
        while micro > MICRO_BATCH_FLOOR:
            micro = max(MICRO_BATCH_FLOOR, micro // 2)
            speed.append(lambda k, m=micro: replace(k, micro_batch=m))
    accuracy: list = []
    if not req.dense:
        accuracy += [lambda k, f=f: _with_remedy(req, replace(k, fan_in=f))
                     for f in ladder[1:] if f >= FAN_IN_ACCURACY_FLOOR]
        if p.value_dtype is None:
            accuracy.append(lambda k: replace(k, value_dtype="bfloat16"))
        if p.optimizer is None:
            accuracy.append(lambda k: replace(k, optimizer="sgd_momentum"))
        accuracy += [lambda k, f=f: _with_remedy(req, replace(k, fan_in=f))
                     for f in ladder[1:] if f < FAN_IN_ACCURACY_FLOOR]
        if p.optimizer is None:
            accuracy.append(lambda k: replace(k, optimizer="sgd"))
        if _tfidf_width(req) and p.tfidf_fan_in is None:
            accuracy += [lambda k, c=c: replace(k, tfidf_cap=c)
                         for c in DEFAULTS.tfidf_fallback_fan_ins if c < _tfidf_fan_in(req)]
    while speed or accuracy:
        if speed:
            peak = predict(_layout(req, precision, k)).predicted_peak_bytes
            candidate = speed[0](k)
            saving = peak - predict(_layout(req, precision, candidate)).predicted_peak_bytes
            if saving >= SPEED_MOVE_MIN_SAVING * peak or not accuracy:
                speed.pop(0)
                k = candidate
                yield k
                continue
        k = accuracy.pop(0)(k)
        yield k
    if p.micro_batch is None:
        while k.micro_batch > 1:
            k = replace(k, micro_batch=k.micro_batch // 2)
            yield k


def _with_remedy(req: PlanRequest, k: _Knobs) -> _Knobs:
    """The intermediate layer in front of a sparse classifier whose fan-in is below half the encoder's
    width or below the ladder's start (DEFAULTS.intermediate_below_fan_in_fraction; unless the width is pinned): a 4096-wide ReLU layer gives each label row more, and trained,
    features to choose from (EURLEX57K, frozen MiniLM features: fan-in 64 of 384 P@1 33.4 -> 50.2)."""
    if req.dense or req.pins.intermediate_dim is not None:
        return k
    hidden = req.encoder.hidden_size
    low = k.fan_in < max(DEFAULTS.intermediate_below_fan_in_fraction * hidden, _fan_in_ladder(req, hidden)[0])
    if low and _layer_keeps_index_dtype(req):
        return replace(k, intermediate_dim=DEFAULTS.intermediate_dim)
    return replace(k, intermediate_dim=0)


def _loss_chunk(req: PlanRequest, gathered_batch: int, fan_in: int, features_dim: int, dense: bool) -> int:
    """The largest power of two whose loss workspace (xmcfit.workspace) stays under the target; the
    loss scores the micro-batches of every device (gathered_batch rows)."""
    if req.pins.loss_chunk_size is not None:
        return req.pins.loss_chunk_size
    per_label_bytes = loss_workspace_per_label_bytes(gathered_batch, None if dense else fan_in, features_dim)
    chunk = 2 ** int(math.log2(max(1, DEFAULTS.loss_workspace_target_bytes // per_label_bytes)))
    lo, hi = DEFAULTS.loss_chunk_range
    return min(max(chunk, lo), hi, req.n_labels)


def _aux_clusters(req: PlanRequest) -> int:
    """0 = off. The pin, else DEFAULTS.aux_clusters (about 256 labels per cluster)."""
    if req.pins.aux_clusters is not None:
        return min(req.pins.aux_clusters, req.n_labels)  # a cluster per label at most; the reason says so
    return DEFAULTS.aux_clusters(req.n_labels)


def _layout(req: PlanRequest, precision: Precision, k: _Knobs) -> Layout:
    n_clusters = _aux_clusters(req)
    d = k.intermediate_dim or req.encoder.hidden_size
    layout = Layout(encoder=req.encoder, seq_len=req.seq_len, precision=precision, gradient_checkpointing=k.checkpointing,
                  micro_batch=k.micro_batch, grad_accum=math.ceil(req.device_batch / k.micro_batch), pooling=req.pooled_by,
                  intermediate_dim=k.intermediate_dim, classifier_kind="sparse", n_labels=req.n_labels,
                  fan_in=k.fan_in, value_dtype=k.value_dtype, optimizer=k.optimizer,
                  weight_decay=DEFAULTS.classifier_weight_decay_adamw if k.optimizer == "adamw" else 0.0,
                  update_rounding="kahan" if k.value_dtype == "bfloat16" else "none",
                  loss_chunk_size=_loss_chunk(req, k.micro_batch * req.n_devices, k.fan_in, d, req.dense or k.dense), bias=DEFAULTS.bias, aux_enabled=n_clusters > 0,
                  n_clusters=max(1, n_clusters), rewiring_enabled=True,
                  rewiring_chunk_rows=min(DEFAULTS.rewiring_chunk_rows, req.n_labels), n_devices=req.n_devices,
                  cuda_context_bytes=req.cuda_context_bytes, input_weighting=_recipe(req, k.optimizer).input_weighting,
                  tfidf_n_words=_tfidf_width(req), tfidf_fan_in=_side_fan_in(req, k))
    return layout.as_dense() if req.dense or k.dense else layout


def _rewiring_interval(req: PlanRequest) -> int:
    """The pin, else DEFAULTS.rewiring_interval (300 steps at 30K labels up to 1500 at 3M, log-scaled)."""
    if req.pins.rewiring_interval is not None:
        return req.pins.rewiring_interval
    return DEFAULTS.rewiring_interval(req.n_labels)


def _explain(req: PlanRequest, k: _Knobs, best: _Knobs, est: MemoryEstimate) -> list[str]:
    pinned = set(req.pins.names())
    why = []

    def say(knob: str, text: str, default: str) -> None:
        why.append(f"{text}: pinned by flag" if knob in pinned else f"{text}: {default}")

    if req.dense:
        why.append(f"dense fp32 classifier ({req.n_labels} x {k.intermediate_dim or req.encoder.hidden_size}) "
                   "trained by AdamW: pinned by --classifier dense (the baseline)")
    elif k.dense:
        why.append(f"dense fp32 classifier ({req.n_labels} x {req.encoder.hidden_size}) trained by AdamW: it fits "
                   f"({gib(est.predicted_peak_bytes):.2f} of {gib(req.budget_bytes):.2f} GiB), so a sparse one would "
                   "only cost accuracy and speed (`--classifier sparse` plans the sparse classifier)")
    else:
        said_fits = (f"the first configuration on the degradation chain that fits "
                     f"({gib(est.predicted_peak_bytes):.2f} of {gib(req.budget_bytes):.2f} GiB)")
        start = (f"where bag-of-words input starts (with the intermediate layer, level with dense or above on every "
                 f"bag-of-words set; {COST_TABLE})" if _bow_start(req) else "largest of the ladder that fits")
        say("fan_in", f"fan-in {k.fan_in}", start if k.fan_in == best.fan_in
            else f"lowered from {best.fan_in}; {said_fits}; {COST_TABLE}")
        say("value_dtype", f"classifier values {k.value_dtype}",
            "fp32 fits" if k.value_dtype == "float32" else "pure-bf16 values, gradients and state with "
            f"Kahan-compensated updates, to fit (measured 0.2 to 1.6 P@1 below fp32; {COST_TABLE})")
        say("optimizer", f"classifier optimizer {k.optimizer}",
            "the method's default" if k.optimizer == "adamw" else
            f"cheaper optimizer state, to fit (measured about 1 P@1 below AdamW; {COST_TABLE})")
    say("gradient_checkpointing", f"gradient checkpointing {'on' if k.checkpointing else 'off'}",
        "needed to fit the encoder's activations" if k.checkpointing else "activations fit without it")
    accum = math.ceil(req.device_batch / k.micro_batch)
    say("micro_batch", f"micro-batch {k.micro_batch} x {accum} accumulation x {req.n_devices} device(s)",
        "keeps the effective batch" if accum > 1 else "the whole target batch fits at once")
    if not req.batch_pinned and req.target_batch < DEFAULTS.target_batch:
        why.append(f"batch {req.target_batch}: {req.n_train_points:,} training points make about "
                   f"{req.n_train_points // req.target_batch:,} steps an epoch (a batch of at most "
                   f"{DEFAULTS.target_batch} keeps >= {DEFAULTS.min_steps_per_epoch} or reaches "
                   f"{DEFAULTS.min_target_batch}; --batch pins it; {RECIPE_DOC})")
    if k.intermediate_dim:
        say("intermediate_dim", f"intermediate layer {k.intermediate_dim} wide",
            f"fan-in {k.fan_in} is below half of d={req.encoder.hidden_size}, so a wider, trained input gives the "
            f"sparse rows more to choose from (fan-in 32 kept 0.98 of dense P@1 with it, 0.47 without; {COST_TABLE})")
    n_clusters = _aux_clusters(req)
    pin = req.pins.aux_clusters
    if pin is not None and pin > n_clusters:
        why.append(f"auxiliary objective on, {n_clusters} clusters: --aux-clusters {pin} capped at the "
                   f"{req.n_labels} labels (one cluster per label at most)")
    else:
        say("aux_clusters", f"auxiliary objective {'on, ' + str(n_clusters) + ' clusters' if n_clusters else 'off'}",
            f"on from {DEFAULTS.aux_min_labels} labels, ~{DEFAULTS.aux_labels_per_cluster} labels per cluster"
            if n_clusters else f"under {DEFAULTS.aux_min_labels} labels the sparse layer trains the encoder well enough")
    why.extend(_explain_recipe(req, k.optimizer, k.dense or req.dense))
    why.append(_explain_tfidf(req, k))
    why.append(f"peak set by the {est.peak_phase} phase; largest term {est.dominant_term()}")
    return why


def _explain_recipe(req: PlanRequest, optimizer: ClassifierOptimizer, dense: bool) -> list[str]:
    """One line per recipe knob: its value, and whether it was pinned or is the measured default."""
    r, pinned = _recipe(req, optimizer), set(req.pins.names())
    measured = f"the measured default ({RECIPE_DOC})"
    scales = dict(zip(("encoder_lr", "classifier_lr"), _side_lr_scales(req)))
    # the factor beside the side, said only where the planner applied it (a pinned rate is the user's)
    side = {knob: f"x{scale:g} beside the TF-IDF side" if scale != 1.0 and knob not in pinned else ""
            for knob, scale in scales.items()}
    encoder_note = f" ({side['encoder_lr']})" if side["encoder_lr"] else ""
    classifier_note = ", ".join(filter(None, (optimizer, side["classifier_lr"])))
    lines = [
        ("encoder_lr", f"encoder learning rate {r.encoder_lr:g}{encoder_note}",
         "a bag-of-words projection starts random and learns at a head's rate" if req.encoder.kind == "bow"
         else measured),
        ("classifier_lr", f"classifier learning rate {r.classifier_lr:g} ({classifier_note})", measured),
        ("loss", f"loss {r.loss}, {r.loss_reduction.replace('_', ' ')}", measured),
        ("dropout", f"dropout {r.dropout:g} on the pooled features", measured),
    ]
    if not dense:
        m = DEFAULTS
        lines.append(("rewiring_interval", f"SET rewiring every {_rewiring_interval(req)} steps, pruning "
                      + (f"|w| < {m.rewiring_initial:g}" if m.rewiring_mode == "threshold" else
                         f"{m.rewiring_initial:.0%} of each row") + f", decaying to 0 at {m.rewiring_stop_fraction:.0%} "
                      "of the steps", measured))
    if req.encoder.kind == "text":
        lines.append(("pooling", f"{req.pooled_by} pooling", "the mean of the last layer's "
                      "token states, one of the method's two poolings (`--pooling cls` takes the [CLS] state)"))
        lines.append(("probe_epochs", f"linear-probe warm start {r.probe_epochs} epoch(s)",
                      "heads first on frozen features, so fine-tuning starts from a trained classifier"
                      if r.probe_epochs else "none"))
    else:
        lines.append(("input_weighting", f"bag-of-words input {r.input_weighting}", measured))
    return [f"{text}: pinned by flag" if knob in pinned or (knob == "loss" and "loss_reduction" in pinned)
            else f"{text}: {why}" for knob, text, why in lines]


def _explain_tfidf(req: PlanRequest, k: _Knobs) -> str:
    n_words = _tfidf_width(req)
    if not n_words:
        why = "pinned by --no-tfidf" if req.pins.tfidf is False else "off by default"
        return f"TF-IDF side off: {why}"
    words = (f"the {n_words} bag-of-words features" if req.encoder.kind == "bow"
             else f"up to {n_words} words of the training texts (in >= {DEFAULTS.tfidf_min_df} of them)")
    fan = ("pinned by --tfidf-fan-in" if req.pins.tfidf_fan_in is not None else
           f"thinned: nothing else fits with {_tfidf_fan_in(req)}" if k.tfidf_cap else "the default")
    ppl, floor = req.points_per_label, DEFAULTS.tfidf_init_min_points_per_label
    known = f"{ppl:.1f} training points per label" if ppl else "the points per label unknown"
    start = (f"starting at its TF-IDF centroid x{DEFAULTS.tfidf_init_scale:g} ({known})" if _tfidf_init(req)
             else f"starting from zeros ({known}, under {floor:g}: a centroid of so few is those documents)")
    shards = (f", its labels split over the {req.n_devices} devices like the classifier's"
              if req.n_devices > 1 else "")
    return (f"TF-IDF side on: a scorer over {words}, {_side_fan_in(req, k)} words per label ({fan}), each label's "
            f"most weighted words in its training texts, {start}, learning at {_tfidf_lr(req):.3g} "
            f"({_tfidf_lr_why(req)}), its scores added to the classifier's{shards}: "
            + ("pinned by --tfidf" if req.pins.tfidf else f"the measured default ({TFIDF_DOC})"))


def _run_steps(req: PlanRequest) -> int:
    """Optimizer steps of the whole run (linear probe included) at the request's batch; 0 when the data's
    size is unknown."""
    return (req.epochs + _probe_epochs(req)) * math.ceil(req.n_train_points / req.target_batch)


def _probe_epochs(req: PlanRequest) -> int:
    """The linear probe's epochs: the pin, else none for bag-of-words input, else the default."""
    if req.pins.probe_epochs is not None:
        return req.pins.probe_epochs
    return 0 if req.encoder.kind == "bow" else DEFAULTS.probe_epochs


def _tfidf_init(req: PlanRequest) -> float:
    return DEFAULTS.tfidf_init(req.points_per_label)


def _tfidf_lr(req: PlanRequest) -> float:
    return DEFAULTS.tfidf_lr(_run_steps(req))


def _tfidf_lr_why(req: PlanRequest) -> str:
    steps = _run_steps(req)
    if not steps:
        return "the training set's size is unknown"
    low, high = DEFAULTS.tfidf_lr_range
    return f"{DEFAULTS.tfidf_lr_budget:g} over the run's {steps:,} steps, within {low:g}-{high:g}"


@dataclass(frozen=True)
class _Recipe:
    """The training recipe's knobs for a request: each the pin, else the measured default (DEFAULTS)."""

    encoder_lr: float
    classifier_lr: float
    loss: LossName
    loss_reduction: LossReduction
    probe_epochs: int
    dropout: float
    input_weighting: InputWeighting


def _side_lr_scales(req: PlanRequest) -> tuple[float, float]:
    """(encoder, classifier) learning-rate factors beside the TF-IDF side (1.0 without it; a bag-of-words
    projection keeps its rate): DEFAULTS.tfidf_encoder_lr_scale and tfidf_classifier_lr_scale."""
    if not _tfidf_width(req):
        return 1.0, 1.0
    m = DEFAULTS
    return (m.tfidf_encoder_lr_scale if req.encoder.kind == "text" else 1.0), m.tfidf_classifier_lr_scale


def _recipe(req: PlanRequest, optimizer: ClassifierOptimizer) -> _Recipe:
    p, m = req.pins, DEFAULTS
    bow = req.encoder.kind == "bow"
    encoder_scale, classifier_scale = _side_lr_scales(req)

    def pick(pinned, default):
        return default if pinned is None else pinned

    return _Recipe(
        encoder_lr=pick(p.encoder_lr, m.bow_encoder_lr if bow else m.text_encoder_lr(req.encoder.n_params)
                        * encoder_scale),
        classifier_lr=pick(p.classifier_lr, m.classifier_lr(optimizer) * classifier_scale),
        loss=pick(p.loss, m.loss),
        loss_reduction=pick(p.loss_reduction, m.loss_reduction),
        probe_epochs=_probe_epochs(req),
        dropout=pick(p.dropout, m.dropout(req.n_labels, bow)),
        input_weighting=pick(p.input_weighting, m.bow_input_weighting if bow else "raw"),
    )


def _build_plan(req: PlanRequest, precision: Precision, k: _Knobs, reasons: tuple[str, ...]) -> Plan:
    layout = _layout(req, precision, k)
    d = layout.features_dim
    n_clusters = _aux_clusters(req)
    m = DEFAULTS
    r = _recipe(req, layout.optimizer)
    return Plan(
        schema_version=SCHEMA_VERSION, xmcfit_version=__version__, seed=req.seed, n_devices=req.n_devices,
        precision=precision,
        inputs=InputsSection(gpu=req.gpu_name, budget_bytes=req.budget_bytes, n_labels=req.n_labels,
                             dataset=req.dataset, data_path=req.data_path, target_batch=req.target_batch,
                             pinned=req.pins.names(), train_points=req.n_train_points),
        model=ModelSection(encoder=req.encoder, seq_len=req.seq_len, pooling=req.pooled_by,
                           dropout=r.dropout, intermediate_dim=k.intermediate_dim,
                           gradient_checkpointing=k.checkpointing, input_weighting=r.input_weighting),
        classifier=ClassifierSection(kind=layout.classifier_kind, n_labels=req.n_labels, in_features=d,
                                     fan_in=layout.fan_in, index_dtype=index_dtype_for(d), value_dtype=layout.value_dtype,
                                     optimizer=layout.optimizer, update_rounding=layout.update_rounding,
                                     lr=r.classifier_lr, weight_decay=layout.weight_decay,
                                     momentum=m.sgd_momentum if layout.optimizer == "sgd_momentum" else 0.0,
                                     loss=r.loss, loss_chunk_size=layout.loss_chunk_size, bias=layout.bias,
                                     loss_reduction=r.loss_reduction),
        rewiring=RewiringSection(enabled=layout.rewiring_enabled, mode=m.rewiring_mode, initial=m.rewiring_initial,
                                 interval_steps=_rewiring_interval(req), stop_fraction=m.rewiring_stop_fraction,
                                 chunk_rows=layout.rewiring_chunk_rows),
        aux=AuxSection(enabled=n_clusters > 0, n_clusters=max(1, n_clusters), initial_weight=m.aux_initial_weight,
                       cutoff_fraction=m.aux_cutoff_fraction),
        training=TrainingSection(epochs=req.epochs, micro_batch=k.micro_batch, grad_accum=layout.grad_accum,
                                 encoder_lr=r.encoder_lr, encoder_weight_decay=m.encoder_weight_decay,
                                 warmup_fraction=m.warmup_fraction, max_grad_norm=m.max_grad_norm,
                                 eval_batch=min(m.eval_batch_max, 2 * k.micro_batch), probe_epochs=r.probe_epochs),
        memory=memory_section(layout, req.budget_bytes),
        tfidf=TfidfSection(enabled=layout.tfidf_n_words > 0, n_words=layout.tfidf_n_words, fan_in=layout.tfidf_fan_in,
                           min_df=m.tfidf_min_df, lr=_tfidf_lr(req), init_scale=_tfidf_init(req)),
        reasons=reasons,
    )
