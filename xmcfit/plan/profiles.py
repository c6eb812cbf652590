"""Named presets read from xmcfit/plan/profiles_data/{gpus,encoders,datasets}/*.toml, by name or by path.

The TOML files ship inside the package (importlib.resources finds them in a wheel as in a checkout).
Also derives an encoder profile from a transformers `config.json` in a local directory or in the local
Hugging Face cache: by arithmetic for BERT, RoBERTa/XLM-R, DistilBERT, MPNet and DeBERTa-v2 (plain JSON,
no torch), and for any other model type by building the model on the meta device, as accelerate's
estimate-memory does (that path imports transformers).
"""

from __future__ import annotations

import logging
import os
import tomllib
from dataclasses import dataclass, fields
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from xmcfit.errors import XmcfitError
from xmcfit.jsonfile import read_json_object
from xmcfit.plan.schema import EncoderSpec, PlanError, dataclass_from_dict

if TYPE_CHECKING:
    from xmcfit.plan.time_model import DeviceRates

log = logging.getLogger(__name__)

PROFILES_PACKAGE_DIR = "profiles_data"
"""The folder of the xmcfit package holding one TOML file per preset (package data, so wheels carry it)."""

ProfileKind = Literal["gpus", "encoders", "datasets"]
Architecture = Literal["bert", "roberta", "distilbert", "mpnet", "deberta-v2", "other"]
EAGER_ATTENTION = ("mpnet", "deberta-v2")
"""Architectures transformers runs with eager attention only (no SDPA path); "other" is assumed to have one."""
"""How n_params was derived: arithmetic per family, or "other" (counted on the meta device, pooler excluded)."""


def _need(ok: bool, where: str, name: str, value: object, rule: str) -> None:
    if not ok:
        raise XmcfitError(f"{where}: {name}={value!r}: {rule}")


def _need_counts(profile: object, where: str, names: tuple[str, ...]) -> None:
    """One XmcfitError line for the first of the fields `names` of `profile` below 1."""
    for name in names:
        _need(getattr(profile, name) >= 1, where, name, getattr(profile, name), "must be >= 1")


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
    peak_fp32_tflops: float = 0.0
    """Dense fp32 peak without TF32 (TFLOP/s; torch's default for matmul); 0 = unknown."""
    interconnect_bytes_per_s: int = 0
    """Device-to-device bandwidth, both directions together (NVLink, else the PCIe link); 0 = unknown."""

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
        _need_counts(self, where, tuple(f.name for f in fields(self)
                                        if isinstance(getattr(self, f.name), int) and f.name != "type_vocab_size"))
        _need(self.hidden_size % self.n_heads == 0, where, "n_heads", self.n_heads,
              f"must divide hidden_size={self.hidden_size}")

    @property
    def pooler_params(self) -> int:
        """Parameters of the BERT/RoBERTa/MPNet pooler head (h x h + h; DistilBERT and DeBERTa have none, and
        "other" profiles are counted without it). Counted in n_params, which is the transformers model's
        size, but dropped by xmcfit, which pools the hidden states itself."""
        if self.architecture in ("distilbert", "deberta-v2", "other"):
            return 0
        return self.hidden_size * self.hidden_size + self.hidden_size

    def to_spec(self) -> EncoderSpec:
        """The plan's view of this encoder: the parameters xmcfit trains (the model without its pooler)."""
        return EncoderSpec(name=self.name, kind="text", n_params=self.n_params - self.pooler_params,
                           hidden_size=self.hidden_size,
                           n_layers=self.n_layers, n_heads=self.n_heads, intermediate_size=self.intermediate_size,
                           vocab_size=self.vocab_size, max_seq_len=self.max_seq_len,
                           attention="eager" if self.architecture in EAGER_ATTENTION else "sdpa")


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
        _need_counts(self, where, ("n_labels", "n_train", "n_test", "typical_seq_len"))
        _need(self.avg_labels_per_point > 0, where, "avg_labels_per_point", self.avg_labels_per_point, "must be > 0")


GPU_OP_OVERHEAD_S = 8e-6
"""Seconds per launched operation on a GPU (PyTorch's dispatch plus the kernel launch, a few microseconds
each); a round figure, NOT YET MEASURED by this project (bench/gpu_check.py's time_model part measures it)."""
GPU_GATHER_PER_MEMORY_BANDWIDTH = 3.0
"""The sparse products gather short rows of the (d, batch) input tile, which stays in L2 and shared memory,
whose bandwidth is a few times HBM's (A100: about 7 TB/s L2 against 2 TB/s HBM); 3x is that ratio, NOT YET
MEASURED for xmcfit's Triton kernels."""


def gpu_rates(profile: GpuProfile) -> "DeviceRates | None":
    """The time model's rates for `profile` from its datasheet figures; None when one of them is unknown."""
    from xmcfit.plan.time_model import DeviceRates

    if not (profile.peak_16bit_tflops and profile.peak_fp32_tflops and profile.memory_bandwidth_bytes_per_s):
        return None
    return DeviceRates(name=f"{profile.name} (datasheet peaks)", kind="cuda",
                       matmul_16bit_flops_per_s=profile.peak_16bit_tflops * 1e12,
                       matmul_fp32_flops_per_s=profile.peak_fp32_tflops * 1e12,
                       memory_bytes_per_s=float(profile.memory_bandwidth_bytes_per_s),
                       gather_bytes_per_s=GPU_GATHER_PER_MEMORY_BANDWIDTH * profile.memory_bandwidth_bytes_per_s,
                       op_overhead_s=GPU_OP_OVERHEAD_S, interconnect_bytes_per_s=float(profile.interconnect_bytes_per_s))


def profile_for_device_name(device_name: str) -> str | None:
    """The shipped GPU profile of a CUDA device by its name ("NVIDIA H100 80GB HBM3" -> "H100-80G"): the
    profile whose model appears in the name (the longest such model), preferring the one whose memory size
    does too; None if none. A PCIe card gets its SXM sibling's figures (the only profiles shipped)."""
    compact = device_name.upper().replace(" ", "").replace("-", "")
    matches = sorted((p for p in profile_names("gpus") if p.split("-")[0].upper() in compact),
                     key=lambda p: -len(p.split("-")[0]))  # A100 before A10
    sized = [p for p in matches if p.split("-")[-1].upper().rstrip("G") + "GB" in compact]
    return (sized or matches or [None])[0]


_CLASSES: dict[str, type] = {"gpus": GpuProfile, "encoders": EncoderProfile, "datasets": DatasetProfile}


def _profiles_dir(kind: ProfileKind) -> Traversable:
    return files("xmcfit.plan") / PROFILES_PACKAGE_DIR / kind


def profile_names(kind: ProfileKind) -> list[str]:
    """Names of the shipped profiles of one kind, sorted case-insensitively."""
    names = [p.name[: -len(".toml")] for p in _profiles_dir(kind).iterdir() if p.name.endswith(".toml")]
    return sorted(names, key=str.lower)


def _load(kind: ProfileKind, name_or_path: str) -> Any:
    cls = _CLASSES[kind]
    path = Path(name_or_path)
    source: Path | Traversable = path
    if not (path.suffix == ".toml" and path.is_file()):
        by_name = {n.lower(): n for n in profile_names(kind)}
        match = by_name.get(name_or_path.lower())
        if match is None:
            singular = kind.rstrip("s")
            raise XmcfitError(f"unknown {singular} profile {name_or_path!r}; known: {', '.join(profile_names(kind))}")
        source = _profiles_dir(kind) / f"{match}.toml"
    where = path if source is path else f"{kind} profile {name_or_path}"
    try:
        data = tomllib.loads(source.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise XmcfitError(f"{where}: cannot read profile ({err})") from None
    try:  # names the field, its value and the rule: `memory_bytes='16G': must be an integer`
        return dataclass_from_dict(cls, data)
    except PlanError as err:
        raise XmcfitError(f"{where}: {err}") from None


def load_gpu(name_or_path: str) -> GpuProfile:
    """A GPU profile by name (case-insensitive) or by path to a .toml file."""
    return _load("gpus", name_or_path)


def load_dataset(name_or_path: str) -> DatasetProfile:
    """A dataset profile by name (case-insensitive) or by path to a .toml file."""
    return _load("datasets", name_or_path)


def load_encoder(name_or_path: str) -> EncoderProfile:
    """An encoder profile by name, path to a .toml file, local directory holding a config.json, or a hub
    id found in the local Hugging Face cache (never downloaded)."""
    path = Path(name_or_path)
    if path.is_dir():
        return encoder_profile_from_config(path)
    known = {n.lower() for n in profile_names("encoders")}
    if (path.suffix == ".toml" and path.is_file()) or name_or_path.lower() in known:
        return _load("encoders", name_or_path)
    snapshot = hub_cache_snapshot(name_or_path)
    if snapshot is not None:
        return encoder_profile_from_config(snapshot, name=name_or_path, source=f"hub:{name_or_path}")
    hint = (f", a local directory, or a Hugging Face id in the local Hugging Face cache ({hub_cache_dir()}; get it with "
            f"`hf download {name_or_path}`)") if "/" in name_or_path else ", or a local model directory"
    raise XmcfitError(f"unknown encoder profile {name_or_path!r}; known: {', '.join(profile_names('encoders'))}"
                      + hint)


def hub_cache_dir() -> Path:
    """The local Hugging Face hub cache: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def hub_cache_snapshot(repo_id: str) -> Path | None:
    """The cached snapshot folder of model `repo_id` holding a config.json (the `main` ref's, else the
    newest), or None. Reads the cache layout (models--org--name/snapshots/<rev>/) without huggingface_hub."""
    if repo_id.count("/") > 1 or not repo_id.strip("/"):
        return None
    repo = hub_cache_dir() / ("models--" + repo_id.replace("/", "--"))
    ref = repo / "refs" / "main"
    if ref.is_file():
        pinned = repo / "snapshots" / ref.read_text().strip()
        if (pinned / "config.json").is_file():
            return pinned
    found = [p for p in (repo / "snapshots").glob("*") if (p / "config.json").is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


WEIGHT_PATTERNS = ("*.safetensors", "*.bin")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spm.model", "sentencepiece.bpe.model",
                   "tokenizer.model")


def encoder_files_missing(directory: Path) -> list[str]:
    """What a training run will miss in an encoder directory: "weights" and/or "tokenizer" (empty: complete)."""
    missing = []
    if not any(any(directory.glob(pattern)) for pattern in WEIGHT_PATTERNS):
        missing.append("weights")
    if not any((directory / name).is_file() for name in TOKENIZER_FILES):
        missing.append("tokenizer")
    return missing


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


def mpnet_n_params(cfg: dict[str, Any]) -> int:
    """MPNetModel (transformers): BERT's layers without token types, one relative-position bias table
    (buckets x heads) shared by all layers, and a pooler (h x h + h)."""
    h = int(cfg["hidden_size"])
    base = bert_like_n_params("bert", hidden_size=h, n_layers=int(cfg["num_hidden_layers"]),
                              intermediate_size=int(cfg["intermediate_size"]), vocab_size=int(cfg["vocab_size"]),
                              max_position_embeddings=int(cfg["max_position_embeddings"]), type_vocab_size=0)
    return base + int(cfg.get("relative_attention_num_buckets", 32)) * int(cfg["num_attention_heads"])


def deberta_v2_n_params(cfg: dict[str, Any]) -> int:
    """DebertaV2Model (transformers; DeBERTa-v2 and -v3), no pooler, following its constructors:

    embeddings: word (V x e), positions (P x e) when position_biased_input, token types when
    type_vocab_size > 0, a projection e -> h (no bias) when embedding_size != h, LayerNorm (2h);
    per layer: Q, K, V, O (h x h + h), FFN, two LayerNorms, and with relative attention and unshared keys
    a position key (c2p) and query (p2c) projection; encoder: relative position table (2 x buckets or
    2 x max_relative_positions, x h) with relative attention, its LayerNorm when norm_rel_ebd says
    layer_norm, and a convolution (h x h/groups x kernel + h, LayerNorm) when conv_kernel_size > 0.
    """
    h, i, n = int(cfg["hidden_size"]), int(cfg["intermediate_size"]), int(cfg["num_hidden_layers"])
    e = int(cfg.get("embedding_size") or h)
    max_pos = int(cfg.get("max_position_embeddings", 512))
    embeddings = int(cfg["vocab_size"]) * e + 2 * h
    if cfg.get("position_biased_input", True):
        embeddings += max_pos * e
    embeddings += max(0, int(cfg.get("type_vocab_size", 0))) * e
    if e != h:
        embeddings += e * h
    per_layer = 4 * (h * h + h) + (h * i + i) + (i * h + h) + 2 * 2 * h
    encoder = 0
    if cfg.get("relative_attention", False):
        pos_att = cfg.get("pos_att_type") or []
        if isinstance(pos_att, str):
            pos_att = [x.strip() for x in pos_att.lower().split("|")]
        if not cfg.get("share_att_key", False):
            per_layer += (h * h + h) * (("c2p" in pos_att) + ("p2c" in pos_att))
        max_rel = int(cfg.get("max_relative_positions", -1))
        max_rel = max_pos if max_rel < 1 else max_rel
        buckets = int(cfg.get("position_buckets", -1))
        encoder += 2 * (buckets if buckets > 0 else max_rel) * h
    if "layer_norm" in [x.strip() for x in str(cfg.get("norm_rel_ebd", "none")).lower().split("|")]:
        encoder += 2 * h
    kernel = int(cfg.get("conv_kernel_size", 0))
    if kernel > 0:
        encoder += h * (h // int(cfg.get("conv_groups", 1))) * kernel + h + 2 * h
    return embeddings + n * per_layer + encoder


def meta_n_params(config_dir: Path) -> int:
    """Parameters of transformers' AutoModel for `config_dir`'s config.json, built on the meta device (no
    memory, no weights read), without a pooler head. Imports torch and transformers: a few seconds."""
    try:
        import torch
        from transformers import AutoConfig, AutoModel
    except ImportError as err:
        raise XmcfitError(f"pricing {config_dir} needs transformers and torch ({err.name} is not installed)") from None
    try:
        check_no_custom_code(config_dir)
        config = AutoConfig.from_pretrained(str(config_dir), local_files_only=True, trust_remote_code=False)
        if getattr(config, "is_encoder_decoder", False):
            raise XmcfitError(f"{config_dir / 'config.json'}: model_type={config.model_type!r} is an "
                              "encoder-decoder model; xmcfit trains text encoders")
        with torch.device("meta"):
            model = AutoModel.from_config(config, trust_remote_code=False)
    except (OSError, ValueError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise XmcfitError(f"{config_dir / 'config.json'}: transformers cannot build this model ({first})") from None
    pooler = getattr(model, "pooler", None)
    skip = {id(p) for p in pooler.parameters()} if isinstance(pooler, torch.nn.Module) else set()
    return sum(p.numel() for p in model.parameters() if id(p) not in skip)


# Field names per family: (hidden, layers, heads, feed-forward); the first present wins.
_SHAPE_KEYS = {"hidden_size": ("hidden_size", "dim", "d_model", "n_embd"),
               "n_layers": ("num_hidden_layers", "n_layers", "num_layers", "n_layer"),
               "n_heads": ("num_attention_heads", "n_heads", "num_heads", "n_head"),
               "intermediate_size": ("intermediate_size", "hidden_dim", "d_ff", "ffn_dim", "n_inner")}
# RoBERTa-style position tables reserve padding_idx + 1 rows: 2 fewer tokens than rows.
_PADDED_POSITIONS = ("roberta", "xlm-roberta", "camembert", "mpnet", "xlm-roberta-xl")


def _config_int(cfg: dict[str, Any], config_path: Path, names: tuple[str, ...]) -> int:
    for name in names:
        if name in cfg and cfg[name] is not None:
            try:
                return int(cfg[name])
            except (TypeError, ValueError):
                raise XmcfitError(f"{config_path}: {name}={cfg[name]!r}: must be an integer") from None
    raise XmcfitError(f"{config_path}: missing field {names[0]!r}")


FORMULA_MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "camembert", "distilbert", "mpnet", "deberta-v2")
"""Model types priced by formula here, all of them shipped by transformers."""


def _shipped_model_type(model_type: str) -> bool:
    """True when transformers has its own classes for `model_type` (no code from the model's folder needed)."""
    if model_type in FORMULA_MODEL_TYPES:
        return True
    try:
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
    except ImportError:
        return True  # no transformers: nothing can be loaded, and whatever loads it says so
    return model_type in CONFIG_MAPPING_NAMES


def check_no_custom_code(directory: Path) -> None:
    """One XmcfitError line naming the field when the model in `directory` would need Python code shipped with
    it (transformers' trust_remote_code): an `auto_map` in config.json or tokenizer_config.json, or a
    model_type transformers does not ship. xmcfit loads every model with trust_remote_code=False, so such
    code never runs and no command ever asks; this says why before transformers is called."""
    config = read_json_object(directory / "config.json")
    for path in (directory / "config.json", directory / "tokenizer_config.json"):
        cfg = config if path.name == "config.json" else (read_json_object(path) if path.is_file() else {})
        if "auto_map" in cfg:
            names = ", ".join(map(str, cfg["auto_map"])) if isinstance(cfg["auto_map"], dict) else "..."
            raise XmcfitError(f"{path}: auto_map ({names}) names Python code shipped with the model, which xmcfit "
                              "never runs (trust_remote_code=False); use an encoder transformers supports itself")
    model_type = config.get("model_type")
    if model_type is not None and (not isinstance(model_type, str) or not _shipped_model_type(model_type)):
        raise XmcfitError(f"{directory / 'config.json'}: model_type={model_type!r} is not a model type transformers "
                          "ships (it would need custom code, which xmcfit never runs); use a supported encoder")


def check_encoder_source(source: str) -> None:
    """check_no_custom_code for an encoder named by directory or by hub id (its cached snapshot, if any)."""
    directory = Path(source) if Path(source).is_dir() else hub_cache_snapshot(source)
    if directory is not None:
        check_no_custom_code(directory)


DECODER_ONLY_TYPES = frozenset({
    "gpt2", "gpt_neo", "gptj", "gpt_neox", "gpt_bigcode", "codegen", "llama", "mistral", "mixtral", "qwen2",
    "qwen2_moe", "qwen3", "qwen3_moe", "phi", "phi3", "gemma", "gemma2", "gemma3_text", "falcon", "opt", "bloom",
    "mpt", "starcoder2", "olmo", "olmo2", "stablelm", "cohere", "granite", "smollm3"})
"""Causal language models (transformers model_type): accepted as encoders, with a warning."""
T5_TYPES = ("t5", "mt5", "umt5", "longt5")


def decoder_only_reason(cfg: dict[str, Any]) -> str | None:
    """Why a config describes a decoder-only (causal) model, or None: is_decoder, an architecture ending in
    ForCausalLM / LMHeadModel, or a model_type in DECODER_ONLY_TYPES."""
    architectures = [str(a) for a in cfg.get("architectures") or []]
    if cfg.get("is_decoder"):
        return "is_decoder is true"
    causal = [a for a in architectures if a.endswith(("ForCausalLM", "LMHeadModel"))]
    if causal:
        return f"architectures {causal[0]!r}"
    if cfg.get("model_type") in DECODER_ONLY_TYPES:
        return f"model_type {cfg['model_type']!r}"
    return None


def _check_model_kind(cfg: dict[str, Any], config_path: Path) -> None:
    """Refuse in words what xmcfit cannot train (T5 encoders, encoder-decoders); warn on a decoder-only model."""
    model_type = str(cfg.get("model_type", "bert"))
    if model_type in T5_TYPES:
        raise XmcfitError(
            f"{config_path}: model_type={model_type!r} (T5, including T5EncoderModel) is not supported: its encoder "
            "has relative position buckets instead of max_position_embeddings, so no sequence limit or position "
            "table to price, and xmcfit loads encoders with AutoModel, which builds T5's whole encoder-decoder; "
            "use a BERT-family encoder (BERT, RoBERTa, XLM-R, MPNet, DeBERTa, ...)")
    if cfg.get("is_encoder_decoder"):
        raise XmcfitError(f"{config_path}: model_type={model_type!r} is an encoder-decoder model; xmcfit trains "
                          "text encoders (BERT, RoBERTa, XLM-R, MPNet, DeBERTa, ...)")
    why = decoder_only_reason(cfg)
    if why is not None:
        log.warning("%s: a decoder-only (causal) model (%s): each token sees only the tokens before it, so mean "
                    "pooling averages states that saw little of the text and the first token's state ([CLS] pooling) "
                    "sees nothing else; xmcfit is built for bidirectional encoders (BERT, RoBERTa, MPNet, DeBERTa): "
                    "expect lower accuracy", config_path, why)


def encoder_profile_from_config(directory: Path, name: str | None = None, source: str | None = None) -> EncoderProfile:
    """Derive an encoder profile from `<directory>/config.json`: arithmetic for the BERT family, MPNet and
    DeBERTa-v2 (pure Python), the meta-device count for any other transformers model type."""
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise XmcfitError(f"--encoder {directory}: no readable config.json in that directory")
    cfg = read_json_object(config_path)
    check_no_custom_code(directory)
    model_type = str(cfg.get("model_type", "bert"))
    _check_model_kind(cfg, config_path)
    shape = {ours: _config_int(cfg, config_path, theirs) for ours, theirs in _SHAPE_KEYS.items()}
    vocab = _config_int(cfg, config_path, ("vocab_size",))
    max_pos = _config_int(cfg, config_path, ("max_position_embeddings", "n_positions", "max_seq_length"))
    type_vocab = int(cfg.get("type_vocab_size", 0 if model_type in ("distilbert", "mpnet") else 2) or 0)
    architecture: Architecture
    try:
        if model_type in ("bert", "roberta", "xlm-roberta", "camembert"):
            architecture = "bert" if model_type == "bert" else "roberta"
            n_params = bert_like_n_params(architecture, vocab_size=vocab, max_position_embeddings=max_pos,
                                          type_vocab_size=type_vocab, hidden_size=shape["hidden_size"],
                                          n_layers=shape["n_layers"], intermediate_size=shape["intermediate_size"])
        elif model_type == "distilbert":
            architecture, type_vocab = "distilbert", 0
            n_params = bert_like_n_params(architecture, vocab_size=vocab, max_position_embeddings=max_pos,
                                          type_vocab_size=0, hidden_size=shape["hidden_size"],
                                          n_layers=shape["n_layers"], intermediate_size=shape["intermediate_size"])
        elif model_type == "mpnet":
            architecture, n_params = "mpnet", mpnet_n_params(cfg)
        elif model_type == "deberta-v2":
            architecture, n_params = "deberta-v2", deberta_v2_n_params(cfg)
        else:
            log.info("%s: model_type %r has no parameter formula; counting it on the meta device", config_path,
                     model_type)
            architecture, n_params = "other", meta_n_params(directory)
    except (TypeError, ValueError) as err:
        raise XmcfitError(f"{config_path}: a field has the wrong type ({err})") from None
    max_seq_len = max_pos - 2 if model_type in _PADDED_POSITIONS else max_pos
    return EncoderProfile(name=name or str(directory), architecture=architecture, source=source or f"dir:{directory}",
                          n_params=n_params, vocab_size=vocab, max_position_embeddings=max_pos,
                          type_vocab_size=type_vocab, max_seq_len=max_seq_len, **shape)


def encoder_availability(profile: EncoderProfile) -> str | None:
    """None when a training run can load `profile`'s weights and tokenizer offline; else one line saying
    what is missing and how to get it (planning works either way: it needs only the shape)."""
    kind, _, where = profile.source.partition(":")
    if kind == "package":
        import importlib.util

        package = where.split("/")[0]
        if importlib.util.find_spec(package) is None:
            return (f"encoder {profile.name}: its weights ship in the package {package.replace('_', '-')}, which is "
                    f"not installed; training needs `pip install {package.replace('_', '-')}`")
        return None
    if kind == "hub":
        snapshot = hub_cache_snapshot(where)
        if snapshot is None:
            return (f"encoder {profile.name}: not in the local Hugging Face cache ({hub_cache_dir()}); training "
                    f"needs it: `hf download {where}`, or pass a local directory")
        directory = snapshot
    else:
        directory = Path(where)
    missing = encoder_files_missing(directory)
    if not missing:
        return None
    get = (f"`hf download {where}`" if kind == "hub"
           else "`hf download <model id> --local-dir DIR` (or save_pretrained the model and tokenizer there)")
    consequence = "training cannot tokenize" if "tokenizer" in missing else "training would start from random weights"
    return f"encoder {profile.name}: no {' and no '.join(missing)} in {directory}; {consequence}; get them with {get}"
