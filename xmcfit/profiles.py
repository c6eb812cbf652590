"""Named presets read from profiles/{gpus,encoders,datasets}/*.toml, by name or by path.

Also derives an encoder profile from a local transformers `config.json` (plain JSON, no transformers
import) with the parameter count computed by arithmetic for BERT-like configs. Pure Python.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from xmcfit.errors import XmcfitError
from xmcfit.plan.schema import EncoderSpec

PROFILES_DIR = Path(__file__).resolve().parent.parent / "profiles"
"""The profiles shipped with the source tree (one TOML file per preset)."""

ProfileKind = Literal["gpus", "encoders", "datasets"]
Architecture = Literal["bert", "roberta", "distilbert"]


def _need(ok: bool, where: str, name: str, value: object, rule: str) -> None:
    if not ok:
        raise XmcfitError(f"{where}: {name}={value!r}: {rule}")


@dataclass(frozen=True)
class GpuProfile:
    """One GPU model: how much memory it offers and which 16-bit/8-bit formats it computes in."""

    name: str
    memory_bytes: int
    """Total device memory as nvidia-smi reports it (bytes)."""
    compute_capability: str
    """CUDA compute capability, "major.minor"."""
    bf16: bool
    """bf16 tensor cores (compute capability >= 8.0): bf16 AMP without loss scaling."""
    fp8: bool
    """fp8 tensor cores (compute capability >= 8.9)."""
    peak_16bit_tflops: float = 0.0
    """Dense fp16/bf16 tensor-core peak (TFLOP/s), for speed estimates; 0 = unknown."""
    memory_bandwidth_bytes_per_s: int = 0
    """Peak memory bandwidth (bytes/s); 0 = unknown."""

    def __post_init__(self) -> None:
        where = f"gpu profile {self.name}"
        _need(self.memory_bytes >= 1, where, "memory_bytes", self.memory_bytes, "must be >= 1")
        major, _, minor = self.compute_capability.partition(".")
        _need(major.isdigit() and minor.isdigit(), where, "compute_capability", self.compute_capability,
              "must look like '8.0'")


@dataclass(frozen=True)
class EncoderProfile:
    """A transformer encoder: its shape (for the memory model) and where the trainer loads it from."""

    name: str
    architecture: Architecture
    source: str
    """"package:<module>/<folder>" (embedded in a PyPI package), "hub:<id>", or "dir:<path>"."""
    n_params: int
    hidden_size: int
    n_layers: int
    n_heads: int
    intermediate_size: int
    vocab_size: int
    max_position_embeddings: int
    type_vocab_size: int
    max_seq_len: int
    """Longest input in tokens (RoBERTa: max_position_embeddings - 2)."""

    def __post_init__(self) -> None:
        where = f"encoder profile {self.name}"
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, int) and f.name != "type_vocab_size":
                _need(value >= 1, where, f.name, value, "must be >= 1")
        _need(self.hidden_size % self.n_heads == 0, where, "n_heads", self.n_heads,
              f"must divide hidden_size={self.hidden_size}")

    @property
    def pooler_params(self) -> int:
        """Parameters of the BERT/RoBERTa pooler head (h x h + h; DistilBERT has none). Counted in n_params,
        which is the transformers model's size, but dropped by xmcfit, which pools the hidden states itself."""
        return 0 if self.architecture == "distilbert" else self.hidden_size * self.hidden_size + self.hidden_size

    def to_spec(self) -> EncoderSpec:
        """The plan's view of this encoder: the parameters xmcfit trains (the model without its pooler)."""
        return EncoderSpec(name=self.name, kind="text", n_params=self.n_params - self.pooler_params,
                           hidden_size=self.hidden_size,
                           n_layers=self.n_layers, n_heads=self.n_heads, intermediate_size=self.intermediate_size,
                           vocab_size=self.vocab_size, max_seq_len=self.max_seq_len)


@dataclass(frozen=True)
class DatasetProfile:
    """Published statistics of an XMC benchmark (Extreme Classification Repository)."""

    name: str
    input: Literal["text", "bow"]
    n_labels: int
    n_train: int
    n_test: int
    avg_labels_per_point: float
    n_features: int
    typical_seq_len: int
    propensity_a: float
    propensity_b: float

    def __post_init__(self) -> None:
        where = f"dataset profile {self.name}"
        for name in ("n_labels", "n_train", "n_test", "typical_seq_len"):
            _need(getattr(self, name) >= 1, where, name, getattr(self, name), "must be >= 1")
        _need(self.avg_labels_per_point > 0, where, "avg_labels_per_point", self.avg_labels_per_point, "must be > 0")


_CLASSES: dict[str, type] = {"gpus": GpuProfile, "encoders": EncoderProfile, "datasets": DatasetProfile}


def profile_names(kind: ProfileKind) -> list[str]:
    """Names of the shipped profiles of one kind, sorted case-insensitively."""
    return sorted((p.stem for p in (PROFILES_DIR / kind).glob("*.toml")), key=str.lower)


def _load(kind: ProfileKind, name_or_path: str) -> Any:
    cls = _CLASSES[kind]
    path = Path(name_or_path)
    if not (path.suffix == ".toml" and path.is_file()):
        by_name = {n.lower(): n for n in profile_names(kind)}
        match = by_name.get(name_or_path.lower())
        if match is None:
            singular = kind.rstrip("s")
            raise XmcfitError(f"unknown {singular} profile {name_or_path!r}; known: {', '.join(profile_names(kind))}")
        path = PROFILES_DIR / kind / f"{match}.toml"
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise XmcfitError(f"{path}: cannot read profile ({err})") from None
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise XmcfitError(f"{path}: unknown field {unknown[0]!r}")
    try:
        return cls(**data)
    except TypeError as err:
        raise XmcfitError(f"{path}: {err}") from None


def load_gpu(name_or_path: str) -> GpuProfile:
    """A GPU profile by name (case-insensitive) or by path to a .toml file."""
    return _load("gpus", name_or_path)


def load_dataset(name_or_path: str) -> DatasetProfile:
    """A dataset profile by name (case-insensitive) or by path to a .toml file."""
    return _load("datasets", name_or_path)


def load_encoder(name_or_path: str) -> EncoderProfile:
    """An encoder profile by name, path to a .toml file, or local directory holding a config.json."""
    path = Path(name_or_path)
    if path.is_dir():
        return encoder_profile_from_config(path)
    return _load("encoders", name_or_path)


def bert_like_n_params(architecture: Architecture, *, hidden_size: int, n_layers: int, intermediate_size: int,
                       vocab_size: int, max_position_embeddings: int, type_vocab_size: int) -> int:
    """Parameters of a BERT-like encoder (count), as transformers builds it.

    Embeddings: word, position and token-type tables + LayerNorm (DistilBERT: no token types).
    Per layer: Q, K, V, O (h x h + bias), FFN (h x i + i, i x h + h), two LayerNorms (2h each).
    BERT/RoBERTa AutoModel adds a pooler (h x h + h); DistilBERT has none.
    """
    h, i = hidden_size, intermediate_size
    embeddings = (vocab_size + max_position_embeddings + type_vocab_size) * h + 2 * h
    per_layer = 4 * (h * h + h) + (h * i + i) + (i * h + h) + 2 * 2 * h
    pooler = 0 if architecture == "distilbert" else h * h + h
    return embeddings + n_layers * per_layer + pooler


def encoder_profile_from_config(directory: Path) -> EncoderProfile:
    """Derive an encoder profile from `<directory>/config.json` (BERT, RoBERTa or DistilBERT)."""
    config_path = directory / "config.json"
    try:
        cfg = json.loads(config_path.read_text())
    except OSError:
        raise XmcfitError(f"--encoder {directory}: no readable config.json in that directory") from None
    except json.JSONDecodeError as err:
        raise XmcfitError(f"{config_path}: not valid JSON (line {err.lineno}: {err.msg})") from None
    model_type = cfg.get("model_type", "bert")
    if model_type in ("bert", "roberta", "xlm-roberta", "camembert"):
        architecture: Architecture = "bert" if model_type == "bert" else "roberta"
        keys = {"hidden_size": "hidden_size", "n_layers": "num_hidden_layers", "n_heads": "num_attention_heads",
                "intermediate_size": "intermediate_size"}
        type_vocab = int(cfg.get("type_vocab_size", 2))
    elif model_type == "distilbert":
        architecture = "distilbert"
        keys = {"hidden_size": "dim", "n_layers": "n_layers", "n_heads": "n_heads", "intermediate_size": "hidden_dim"}
        type_vocab = 0
    else:
        raise XmcfitError(f"{config_path}: model_type={model_type!r}: only BERT-like encoders "
                          "(bert, roberta, distilbert) can be priced")
    try:
        shape = {ours: int(cfg[theirs]) for ours, theirs in keys.items()}
        vocab = int(cfg["vocab_size"])
        max_pos = int(cfg["max_position_embeddings"])
    except (KeyError, TypeError, ValueError) as err:
        raise XmcfitError(f"{config_path}: missing or non-integer field {err}") from None
    # RoBERTa reserves padding_idx + 1 position rows, so it reads 2 fewer tokens than it has rows.
    max_seq_len = max_pos - 2 if architecture == "roberta" else max_pos
    n_params = bert_like_n_params(architecture, vocab_size=vocab, max_position_embeddings=max_pos,
                                  type_vocab_size=type_vocab, **{k: shape[k] for k in
                                                                 ("hidden_size", "n_layers", "intermediate_size")})
    return EncoderProfile(name=str(directory), architecture=architecture, source=f"dir:{directory}",
                          n_params=n_params, vocab_size=vocab, max_position_embeddings=max_pos,
                          type_vocab_size=type_vocab, max_seq_len=max_seq_len, **shape)
