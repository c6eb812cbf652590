"""The Plan: the one contract between planner and trainer, as frozen, validated dataclasses.

Every knob that changes training memory is a field here. `Plan.to_json` / `Plan.from_json` round-trip
exactly; loading rejects unknown, missing, mistyped or out-of-range fields with one line naming the
field (`classifier.fan_in=0: must be >= 1`). Pure Python: no torch, no I/O beyond the JSON file.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from xmcfit.dtypes import index_dtype_name
from xmcfit.errors import XmcfitError
from xmcfit.plan import phases
from xmcfit.plan.phases import PeakPhase

if TYPE_CHECKING:
    from xmcfit.data import XMCDataset

SCHEMA_VERSION = 1
MAX_SEED = 2**62
"""Largest seed: the trainer derives seed + 1 + rank for other generators, and torch's take 64 bits."""

Precision = Literal["bf16_amp", "fp16_amp", "fp32"]
ClassifierKind = Literal["sparse", "dense"]
ValueDtype = Literal["float32", "bfloat16"]
IndexDtype = Literal["int16", "int32"]
ClassifierOptimizer = Literal["adamw", "sgd_momentum", "sgd"]
UpdateRounding = Literal["none", "kahan", "stochastic"]
LossName = Literal["squared_hinge", "bce"]
RewireMode = Literal["fraction", "threshold"]
Pooling = Literal["mean", "cls"]
InputKind = Literal["text", "bow"]
AttentionImpl = Literal["sdpa", "eager"]
LossReduction = Literal["mean", "sum_over_labels"]
InputWeighting = Literal["raw", "tfidf"]



class PlanError(XmcfitError):
    """A plan field is missing, unknown, mistyped or out of range."""


def _require(ok: bool, name: str, value: object, rule: str) -> None:
    if not ok:
        raise PlanError(f"{name}={value!r}: {rule}")


def index_dtype_for(in_features: int) -> IndexDtype:
    """Narrowest index type that addresses `in_features` columns (xmcfit.dtypes: int16 up to 32767)."""
    return typing.cast(IndexDtype, index_dtype_name(in_features))


@dataclass(frozen=True)
class EncoderSpec:
    """The input encoder. For bag-of-words input (`kind="bow"`) it is a projection of the features."""

    name: str
    """Profile name, local directory or hub id of a transformers encoder; "bow" for bag-of-words."""
    kind: InputKind
    """"text": a transformer over tokens; "bow": sparse features -> dense projection (EmbeddingBag)."""
    n_params: int
    """Trainable parameters of the encoder as xmcfit builds it (count; without a BERT pooler head)."""
    hidden_size: int
    """Output width d of the pooled representation (features)."""
    n_layers: int
    """Transformer layers (0 for bag-of-words)."""
    n_heads: int
    """Attention heads per layer (0 for bag-of-words)."""
    intermediate_size: int
    """Feed-forward width inside each layer (0 for bag-of-words)."""
    vocab_size: int
    """Token vocabulary (text) or number of input features (bag-of-words)."""
    max_seq_len: int
    """Longest sequence the encoder accepts, in tokens (0 for bag-of-words)."""
    attention: AttentionImpl = "sdpa"
    """The attention transformers runs for it: "sdpa" (fused kernels that keep no s x s tensor) or "eager"
    (MPNet, DeBERTa-v2, which have no SDPA path: every layer keeps its heads x s x s probabilities)."""

    def __post_init__(self) -> None:
        _require(bool(self.name), "model.encoder.name", self.name, "must not be empty")
        for name in ("n_params", "hidden_size", "vocab_size"):
            _require(getattr(self, name) >= 1, f"model.encoder.{name}", getattr(self, name), "must be >= 1")
        for name in ("n_layers", "n_heads", "intermediate_size", "max_seq_len"):
            _require(getattr(self, name) >= 0, f"model.encoder.{name}", getattr(self, name), "must be >= 0")
        if self.kind == "text":
            for name in ("n_layers", "n_heads", "max_seq_len"):
                _require(getattr(self, name) >= 1, f"model.encoder.{name}", getattr(self, name),
                         "must be >= 1 for a text encoder")
            _require(self.hidden_size % self.n_heads == 0, "model.encoder.n_heads", self.n_heads,
                     f"must divide hidden_size={self.hidden_size}")


@dataclass(frozen=True)
class ModelSection:
    """Encoder, pooling and the optional intermediate layer between encoder and classifier."""

    encoder: EncoderSpec
    seq_len: int
    """Tokens per input after truncation/padding (0 for bag-of-words)."""
    pooling: Pooling
    """How token states become one vector: mean of the last layer, or the [CLS] state."""
    dropout: float
    """Dropout on the pooled representation (the method uses 0.35 to 0.6)."""
    intermediate_dim: int
    """Width of a dense ReLU layer between encoder and classifier; 0 = none."""
    gradient_checkpointing: bool
    """Recompute encoder activations in backward (saves memory, costs ~1 extra forward)."""
    input_weighting: InputWeighting = "raw"
    """Bag-of-words input only: "raw" feature values, or "tfidf": each value times its feature's idf on the
    training split, each row then L2-normalised (the idf vector is stored in the run directory)."""

    def __post_init__(self) -> None:
        enc = self.encoder
        if enc.kind == "text":
            _require(self.seq_len >= 1, "model.seq_len", self.seq_len, "must be >= 1")
            _require(self.seq_len <= enc.max_seq_len, "model.seq_len", self.seq_len,
                     f"must be <= the encoder's maximum {enc.max_seq_len}")
        else:
            _require(self.seq_len == 0, "model.seq_len", self.seq_len, "must be 0 for bag-of-words input")
            _require(not self.gradient_checkpointing, "model.gradient_checkpointing",
                     self.gradient_checkpointing, "has no effect for bag-of-words input; set false")
        _require(0.0 <= self.dropout < 1.0, "model.dropout", self.dropout, "must be in [0, 1)")
        _require(self.intermediate_dim >= 0, "model.intermediate_dim", self.intermediate_dim, "must be >= 0")
        if enc.kind == "text":
            _require(self.input_weighting == "raw", "model.input_weighting", self.input_weighting,
                     "applies to bag-of-words input only; must be 'raw' for a text encoder")

    @property
    def features_dim(self) -> int:
        """Width of the vector the classifier sees (d)."""
        return self.intermediate_dim or self.encoder.hidden_size


@dataclass(frozen=True)
class ClassifierSection:
    """The label classifier: fixed fan-in sparse (ELLPACK values + indices) or dense."""

    kind: ClassifierKind
    n_labels: int
    """Output rows L (labels)."""
    in_features: int
    """Input width d (encoder hidden size, or the intermediate width)."""
    fan_in: int
    """Connections per label row k (sparse); equals in_features for dense."""
    index_dtype: IndexDtype
    """Storage of the column indices (int16 when in_features <= 32767)."""
    value_dtype: ValueDtype
    """Storage of values, their gradients and optimizer state: float32, or bfloat16 (pure-bf16)."""
    optimizer: ClassifierOptimizer
    """adamw (2 states per value), sgd_momentum (1), sgd (0)."""
    update_rounding: UpdateRounding
    """For bfloat16 values: Kahan-compensated (1 extra bf16 state) or stochastically rounded updates."""
    lr: float
    weight_decay: float
    momentum: float
    """Momentum for sgd_momentum (ignored otherwise)."""
    loss: LossName
    loss_chunk_size: int
    """Labels per chunk of the chunked loss: logits live as (micro_batch, chunk) only."""
    bias: bool
    loss_reduction: LossReduction = "mean"
    """"mean" over batch x labels, or "sum_over_labels": summed over the labels, averaged over the batch
    (the scale under which plain and momentum SGD take steps of a useful size)."""

    def __post_init__(self) -> None:
        _require(self.n_labels >= 1, "classifier.n_labels", self.n_labels, "must be >= 1")
        _require(self.in_features >= 1, "classifier.in_features", self.in_features, "must be >= 1")
        _require(self.fan_in >= 1, "classifier.fan_in", self.fan_in, "must be >= 1")
        _require(self.fan_in <= self.in_features, "classifier.fan_in", self.fan_in,
                 f"must be <= in_features={self.in_features}")
        if self.kind == "dense":
            _require(self.fan_in == self.in_features, "classifier.fan_in", self.fan_in,
                     f"must equal in_features={self.in_features} for a dense classifier")
        _require(self.index_dtype == index_dtype_for(self.in_features), "classifier.index_dtype",
                 self.index_dtype, f"must be {index_dtype_for(self.in_features)} for in_features={self.in_features}")
        if self.value_dtype == "float32":
            _require(self.update_rounding == "none", "classifier.update_rounding", self.update_rounding,
                     "must be 'none' unless value_dtype is 'bfloat16'")
        _require(self.lr > 0, "classifier.lr", self.lr, "must be > 0")
        _require(self.weight_decay >= 0, "classifier.weight_decay", self.weight_decay, "must be >= 0")
        _require(0.0 <= self.momentum < 1.0, "classifier.momentum", self.momentum, "must be in [0, 1)")
        _require(1 <= self.loss_chunk_size, "classifier.loss_chunk_size", self.loss_chunk_size, "must be >= 1")


@dataclass(frozen=True)
class RewiringSection:
    """SET prune-and-regrow schedule for the sparse classifier."""

    enabled: bool
    mode: RewireMode
    """"fraction": prune that fraction of each row; "threshold": prune |w| below it."""
    initial: float
    """Starting fraction (0, 1) or threshold (> 0); decays by cosine to 0 at the stop."""
    interval_steps: int
    """Optimizer steps between rewirings (ΔT)."""
    stop_fraction: float
    """Rewiring stops after this fraction of all training steps (the method: 0.66)."""
    chunk_rows: int
    """Label rows rewired at a time; bounds the rewiring workspace."""

    def __post_init__(self) -> None:
        if self.mode == "fraction":
            _require(0.0 < self.initial < 1.0, "rewiring.initial", self.initial, "must be in (0, 1) in fraction mode")
        else:
            _require(self.initial > 0.0, "rewiring.initial", self.initial, "must be > 0 in threshold mode")
        _require(self.interval_steps >= 1, "rewiring.interval_steps", self.interval_steps, "must be >= 1")
        _require(0.0 <= self.stop_fraction <= 1.0, "rewiring.stop_fraction", self.stop_fraction, "must be in [0, 1]")
        _require(self.chunk_rows >= 1, "rewiring.chunk_rows", self.chunk_rows, "must be >= 1")


@dataclass(frozen=True)
class AuxSection:
    """Auxiliary objective: a small dense head over label clusters, its weight cosine-decayed to 0."""

    enabled: bool
    n_clusters: int
    """Label clusters C (output width of the auxiliary head)."""
    initial_weight: float
    """α at step 0; total loss = (1 − α)·main + α·aux."""
    cutoff_fraction: float
    """α reaches 0 after this fraction of all training steps, and the head is dropped."""

    def __post_init__(self) -> None:
        _require(self.n_clusters >= 1, "aux.n_clusters", self.n_clusters, "must be >= 1")
        _require(0.0 <= self.initial_weight < 1.0, "aux.initial_weight", self.initial_weight, "must be in [0, 1)")
        _require(0.0 < self.cutoff_fraction <= 1.0, "aux.cutoff_fraction", self.cutoff_fraction, "must be in (0, 1]")


@dataclass(frozen=True)
class TfidfSection:
    """The TF-IDF side: a fixed fan-in scorer over the input's words whose scores add to the classifier's
    (xmcfit.model.TfidfScorer). Its pattern is chosen from the training labels and not rewired; its values
    start at the labels' scaled TF-IDF centroids and train with the heads' AdamW at their own learning rate."""

    enabled: bool = False
    n_words: int = 0
    """Width of the TF-IDF vector: the features of bag-of-words input; for text, the most words the
    vocabulary fitted on the training texts may keep."""
    fan_in: int = 0
    """Words per label (k')."""
    min_df: int = 2
    """Text: a word is kept when at least this many training texts contain it."""
    lr: float = 0.03
    """AdamW learning rate of the scorer's values."""
    init_scale: float = 3.0
    """The values start at each label's L2-normalised TF-IDF centroid times this (0: from zeros)."""

    def __post_init__(self) -> None:
        if not self.enabled:
            return
        _require(self.n_words >= 1, "tfidf.n_words", self.n_words, "must be >= 1")
        _require(1 <= self.fan_in <= self.n_words, "tfidf.fan_in", self.fan_in, f"must be in [1, n_words={self.n_words}]")
        _require(self.min_df >= 1, "tfidf.min_df", self.min_df, "must be >= 1")
        _require(self.lr > 0, "tfidf.lr", self.lr, "must be > 0")
        _require(self.init_scale >= 0, "tfidf.init_scale", self.init_scale, "must be >= 0")

    @property
    def index_dtype(self) -> IndexDtype:
        return index_dtype_for(self.n_words)


@dataclass(frozen=True)
class TrainingSection:
    """Batching, epochs and the encoder's optimizer and schedules."""

    epochs: int
    """End-to-end epochs (after any probe epochs); 0 with probe_epochs > 0 trains the heads on frozen features only."""
    micro_batch: int
    """Points per forward/backward (what sits in memory at once)."""
    grad_accum: int
    """Micro-batches per optimizer step; effective batch = micro_batch × grad_accum × n_devices."""
    encoder_lr: float
    encoder_weight_decay: float
    warmup_fraction: float
    """Linear warm-up over this fraction of steps, then cosine decay to 0 (both optimizers)."""
    max_grad_norm: float
    """Clip the encoder's gradient norm to this; 0 = no clipping."""
    eval_batch: int
    """Points per forward at evaluation (no gradients held)."""
    probe_epochs: int = 0
    """Linear-probe warm start: epochs of training the heads alone on the frozen encoder's features
    (computed once, kept in host memory) before the `epochs` of end-to-end training; 0 = none."""

    def __post_init__(self) -> None:
        _require(self.probe_epochs >= 0, "training.probe_epochs", self.probe_epochs, "must be >= 0")
        _require(self.epochs >= (0 if self.probe_epochs else 1), "training.epochs", self.epochs,
                 "must be >= 1 (0 only with probe_epochs >= 1: a head trained on frozen features)")
        for name in ("micro_batch", "grad_accum", "eval_batch"):
            _require(getattr(self, name) >= 1, f"training.{name}", getattr(self, name), "must be >= 1")
        _require(self.encoder_lr > 0, "training.encoder_lr", self.encoder_lr, "must be > 0")
        _require(self.encoder_weight_decay >= 0, "training.encoder_weight_decay", self.encoder_weight_decay,
                 "must be >= 0")
        _require(0.0 <= self.warmup_fraction < 1.0, "training.warmup_fraction", self.warmup_fraction,
                 "must be in [0, 1)")
        _require(self.max_grad_norm >= 0, "training.max_grad_norm", self.max_grad_norm, "must be >= 0")


@dataclass(frozen=True)
class MemorySection:
    """The planner's prediction: bytes per tensor family, summed into the peak, for this plan and dense."""

    terms_bytes: dict[str, int]
    """Predicted bytes per term of the memory model (names as in xmcfit.plan.memory)."""
    predicted_peak_bytes: int
    dense_predicted_peak_bytes: int
    """The plain dense baseline: the same configuration with a dense L × h classifier on the encoder's output
    (h = encoder width, no intermediate layer), trained by AdamW."""
    budget_bytes: int
    """GPU memory the plan had to fit in."""
    peak_phase: PeakPhase
    """The phase of a step that sets the peak: "backward", "step" or "rewiring" (xmcfit.plan.phases)."""
    peak_terms: tuple[str, ...]
    """The terms alive at the peak; their bytes sum to predicted_peak_bytes."""

    def __post_init__(self) -> None:
        for name, value in self.terms_bytes.items():
            _require(value >= 0, f"memory.terms_bytes.{name}", value, "must be >= 0")
        for name in self.peak_terms:
            _require(name in self.terms_bytes, "memory.peak_terms", name, "must name a term of memory.terms_bytes")
        _require(self.predicted_peak_bytes >= 1, "memory.predicted_peak_bytes", self.predicted_peak_bytes, "must be >= 1")
        _require(self.dense_predicted_peak_bytes >= 1, "memory.dense_predicted_peak_bytes",
                 self.dense_predicted_peak_bytes, "must be >= 1")
        _require(self.budget_bytes >= 1, "memory.budget_bytes", self.budget_bytes, "must be >= 1")

    @property
    def headroom_bytes(self) -> int:
        """Budget left over at the predicted peak (negative when the plan does not fit)."""
        return self.budget_bytes - self.predicted_peak_bytes


@dataclass(frozen=True)
class TimeSection:
    """The time model's prediction for one device (xmcfit.plan.time_model): seconds per step by phase, per
    epoch and for the run. Absent (null) when no rates were known for the plan's device."""

    device: str
    """Whose rates: a GPU profile's datasheet peaks, or this CPU's calibration and thread count."""
    phase_seconds: dict[str, float]
    """Predicted seconds of each phase of one optimizer step (names as in xmcfit.plan.time_model.PHASES)."""
    step_seconds: float
    dominant_phase: str
    n_train_points: int
    """Training points per epoch the figures assume."""
    steps_per_epoch: int
    epoch_seconds: float
    """One end-to-end epoch."""
    run_seconds: float
    """The whole run: the linear probe (if any) and every end-to-end epoch."""
    assumed: tuple[str, ...] = ()
    """Figures assumed rather than read from data or a dataset profile, one phrase each."""

    def __post_init__(self) -> None:
        for name in ("step_seconds", "epoch_seconds", "run_seconds"):
            _require(getattr(self, name) >= 0, f"time.{name}", getattr(self, name), "must be >= 0")
        _require(self.dominant_phase in self.phase_seconds, "time.dominant_phase", self.dominant_phase,
                 "must name a phase of time.phase_seconds")


@dataclass(frozen=True)
class InputsSection:
    """What the plan was made from, so a plan can be re-made or questioned."""

    gpu: str
    """GPU profile name, the pynvml device name, or "manual" when only --gpu-mem was given."""
    budget_bytes: int
    n_labels: int
    dataset: str | None
    """Dataset profile name, if one was given."""
    data_path: str | None
    """Data path whose statistics were read, if one was given."""
    target_batch: int
    """Effective batch the user asked for."""
    pinned: tuple[str, ...]
    """Knobs the user fixed by flag; the chooser never changed these."""
    train_points: int = 0
    """Training points per epoch the batch and the TF-IDF side's rate were sized for (0: unknown)."""

    def __post_init__(self) -> None:
        _require(self.budget_bytes >= 1, "inputs.budget_bytes", self.budget_bytes, "must be >= 1")
        _require(self.train_points >= 0, "inputs.train_points", self.train_points, "must be >= 0")
        _require(self.n_labels >= 1, "inputs.n_labels", self.n_labels, "must be >= 1")
        _require(self.target_batch >= 1, "inputs.target_batch", self.target_batch, "must be >= 1")


@dataclass(frozen=True)
class Plan:
    """A fully resolved training configuration and its predicted memory."""

    schema_version: int
    xmcfit_version: str
    seed: int
    n_devices: int
    """Devices (torch.distributed processes) the run is spread over: the encoder replicated, the classifier's
    rows split by label ranges; memory terms are per device."""
    precision: Precision
    """Autocast mode of the encoder and the loss: bf16 AMP, fp16 AMP with loss scaling, or fp32."""
    inputs: InputsSection
    model: ModelSection
    classifier: ClassifierSection
    rewiring: RewiringSection
    aux: AuxSection
    training: TrainingSection
    memory: MemorySection
    tfidf: TfidfSection = TfidfSection()
    """The TF-IDF side (off in plans written before it existed)."""
    reasons: tuple[str, ...] = field(default=())
    """Why the chooser picked what it picked, one sentence each."""
    time: TimeSection | None = None
    """Predicted seconds per step, epoch and run (None: no rates for the plan's device, or an older plan)."""

    def __post_init__(self) -> None:
        _require(self.schema_version == SCHEMA_VERSION, "schema_version", self.schema_version,
                 f"this xmcfit reads schema {SCHEMA_VERSION}; re-run `xmcfit plan`")
        _require(self.n_devices >= 1, "n_devices", self.n_devices, "must be >= 1")
        _require(0 <= self.seed <= MAX_SEED, "seed", self.seed, f"must be between 0 and 2**62 ({MAX_SEED})")
        _require(self.classifier.in_features == self.model.features_dim, "classifier.in_features",
                 self.classifier.in_features, f"must equal the model's output width {self.model.features_dim}")
        _require(self.classifier.n_labels == self.inputs.n_labels, "classifier.n_labels", self.classifier.n_labels,
                 f"must equal inputs.n_labels={self.inputs.n_labels}")
        if self.classifier.kind == "dense":
            _require(not self.rewiring.enabled, "rewiring.enabled", self.rewiring.enabled,
                     "must be false for a dense classifier")
        if self.tfidf.enabled:
            enc = self.model.encoder
            if enc.kind == "bow":
                _require(self.tfidf.n_words == enc.vocab_size, "tfidf.n_words", self.tfidf.n_words,
                         f"must equal the bag-of-words features ({enc.vocab_size})")

    @property
    def effective_batch(self) -> int:
        return self.training.micro_batch * self.training.grad_accum * self.n_devices

    def check_data(self, dataset: "XMCDataset", fix: str) -> None:
        """One XmcfitError line unless `dataset` has the input kind, labels and (bag-of-words) features
        this plan was made for; `fix` ends the line with what to do (train, eval and predict say it)."""
        enc, n_labels = self.model.encoder, self.classifier.n_labels
        if dataset.kind != enc.kind:
            raise XmcfitError(f"{dataset.source}: {dataset.kind} data, but the plan's encoder reads {enc.kind} "
                              f"input; {fix}")
        if dataset.n_labels != n_labels:
            raise XmcfitError(f"{dataset.source}: {dataset.n_labels} labels but the plan has n_labels={n_labels}; {fix}")
        if dataset.kind == "bow" and dataset.n_features != enc.vocab_size:
            raise XmcfitError(f"{dataset.source}: {dataset.n_features} features but the plan's input has "
                              f"{enc.vocab_size}; {fix}")

    # -- (de)serialisation -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """Indented JSON; floats keep their exact repr, so loading gives an equal Plan."""
        return json.dumps(_jsonable(self.to_dict()), indent=2) + "\n"

    def save(self, path: str | Path) -> None:
        """Write atomically (temp file + rename) so a crash never leaves half a plan."""
        from xmcfit.atomic import atomic_write_text

        atomic_write_text(path, self.to_json())

    @classmethod
    def from_dict(cls, data: Any) -> "Plan":
        return dataclass_from_dict(cls, _with_peak(data), "")

    @classmethod
    def from_json(cls, path: str | Path) -> "Plan":
        path = Path(path)
        try:
            text = path.read_bytes().decode("utf-8")
        except OSError as err:
            raise PlanError(f"{path}: cannot read plan ({err.strerror})") from None
        except UnicodeDecodeError as err:
            raise PlanError(f"{path}: not a plan: not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset "
                            f"{err.start}); write it with `xmcfit plan -o`") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise PlanError(f"{path}: not valid JSON (line {err.lineno}: {err.msg})") from None
        try:
            return cls.from_dict(data)
        except PlanError as err:
            raise PlanError(f"{path}: {err}") from None


def _with_peak(data: Any) -> Any:
    """Plans written before the memory section stored its peak phase and terms: add them, derived from
    the stored terms (xmcfit.plan.phases), so existing plan.json files and run directories still load.
    Anything malformed is left as it is, for dataclass_from_dict to name."""
    try:
        memory, grad_accum = data["memory"], data["training"]["grad_accum"]
        if "peak_phase" in memory or "peak_terms" in memory:
            return data
        phase = phases.peak_phase(memory["terms_bytes"], grad_accum)
        peak = {"peak_phase": phase, "peak_terms": list(phases.peak_terms(phase, grad_accum, memory["terms_bytes"]))}
        return {**data, "memory": {**memory, **peak}}
    except (KeyError, TypeError, ValueError):
        return data


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def dataclass_from_dict(cls: type, data: Any, prefix: str = "") -> Any:
    """Construct dataclass `cls` from parsed JSON, checking names and types field by field (PlanError
    naming the field); plan.json and the run directory's memory.json are read through it."""
    where = prefix.rstrip(".") or cls.__name__
    if not isinstance(data, dict):
        raise PlanError(f"{where}: expected an object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise PlanError(f"{prefix}{unknown[0]}: unknown field")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            if f.default is not dataclasses.MISSING:
                continue
            raise PlanError(f"{prefix}{f.name}: missing field")
        kwargs[f.name] = _convert(hints[f.name], data[f.name], f"{prefix}{f.name}")
    return cls(**kwargs)


def check_value(tp: Any, value: Any, name: str) -> None:
    """PlanError (`name=value: rule`) unless `value` has type `tp` as plan.json would hold it: the check the
    Python API's arguments share with plan.json's fields (Literal choices, int vs float, bool, str)."""
    _convert(tp, value, name)


def _convert(tp: Any, value: Any, name: str) -> Any:
    """Check `value` against type hint `tp`; return it converted (lists to tuples, objects to dataclasses)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return dataclass_from_dict(tp, value, name + ".")
    if origin is Literal:
        if value not in args:
            raise PlanError(f"{name}={value!r}: must be one of {', '.join(map(repr, args))}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, name)
    if origin is tuple:
        if not isinstance(value, list):
            raise PlanError(f"{name}={value!r}: must be a list")
        return tuple(_convert(args[0], v, f"{name}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise PlanError(f"{name}={value!r}: must be an object")
        return {str(k): _convert(args[1], v, f"{name}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise PlanError(f"{name}={value!r}: must be true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise PlanError(f"{name}={value!r}: must be an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise PlanError(f"{name}={value!r}: must be a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise PlanError(f"{name}={value!r}: must be a string")
        return value
    raise TypeError(f"plan schema: unsupported type {tp!r} for {name}")
