"""The run directory: what a training run writes, and the training data it reads (with caches).

Layout: plan.json (the plan trained), run.json (data options, status, version), labels.json (label
vocabulary), label_counts.npy (training frequency per label, for propensities), encoder/ (config and
tokenizer, so the run loads without the original encoder), clusters.npy (aux-objective label clusters),
train_log.jsonl, checkpoint/, and at the end model.safetensors and memory.json.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from safetensors.torch import save_file

from xmcfit import __version__
from xmcfit.data import XMCDataset, load_split
from xmcfit.errors import XmcfitError
from xmcfit.model import resolve_encoder_source
from xmcfit.plan.schema import Plan
from xmcfit.atomic import atomic_write_text

log = logging.getLogger(__name__)

RUN_FORMAT_VERSION = 1


@dataclass(frozen=True)
class RunFiles:
    """Paths inside one run directory."""

    root: Path

    @property
    def plan(self) -> Path:
        return self.root / "plan.json"

    @property
    def run(self) -> Path:
        return self.root / "run.json"

    @property
    def labels(self) -> Path:
        return self.root / "labels.json"

    @property
    def label_counts(self) -> Path:
        return self.root / "label_counts.npy"

    @property
    def encoder(self) -> Path:
        return self.root / "encoder"

    @property
    def clusters(self) -> Path:
        return self.root / "clusters.npy"

    @property
    def log(self) -> Path:
        return self.root / "train_log.jsonl"

    @property
    def weights(self) -> Path:
        return self.root / "model.safetensors"

    @property
    def memory(self) -> Path:
        return self.root / "memory.json"


@dataclass(frozen=True)
class DataOptions:
    """How to read the training data; recorded in run.json so eval and resume read it the same way."""

    path: str
    text_fields: tuple[str, ...] | None = None
    label_field: str | None = None
    limit: int | None = None
    """Read only the first `limit` training points (quick runs, CPU benchmarks)."""


@dataclass(frozen=True)
class TrainData:
    """The training split and what turns row ids into model inputs."""

    dataset: XMCDataset
    collate: Callable[[np.ndarray], dict[str, torch.Tensor]]
    encoder_source: str | None
    """Directory or hub id the text encoder loads from (None for bag-of-words)."""
    clusters: torch.Tensor | None
    """Cluster id per label (n_labels,) for the auxiliary objective, or None."""


def read_run_info(root: Path) -> dict[str, Any]:
    files = RunFiles(root)
    try:
        return json.loads(files.run.read_text())
    except OSError:
        raise XmcfitError(f"{root}: not a run directory (no run.json)") from None
    except json.JSONDecodeError as err:
        raise XmcfitError(f"{files.run}: not valid JSON ({err.msg})") from None


def write_run_info(root: Path, info: dict[str, Any]) -> None:
    atomic_write_text(RunFiles(root).run, json.dumps(info, indent=2) + "\n")


def prepare_run_dir(plan: Plan, root: Path, options: DataOptions) -> None:
    """Create a fresh run directory holding the plan and run.json; never overwrite an existing run."""
    files = RunFiles(root)
    if files.run.exists():
        raise XmcfitError(f"{root} already holds a run: continue it with `xmcfit train --resume {root}` "
                          "or choose another --out")
    root.mkdir(parents=True, exist_ok=True)
    plan.save(files.plan)
    write_run_info(root, {
        "run_format_version": RUN_FORMAT_VERSION,
        "xmcfit_version": __version__,
        "status": "training",
        "seed": plan.seed,
        "data": {**asdict(options), "path": str(Path(options.path).resolve())},
        "data_kind": plan.model.encoder.kind,
        "encoder": plan.model.encoder.name,
    })


def data_options_of(info: dict[str, Any]) -> DataOptions:
    d = info["data"]
    return DataOptions(d["path"], tuple(d["text_fields"]) if d.get("text_fields") else None,
                       d.get("label_field"), d.get("limit"))


def _check_against_plan(plan: Plan, ds: XMCDataset) -> None:
    enc = plan.model.encoder
    if ds.kind != enc.kind:
        raise XmcfitError(f"{ds.source}: {ds.kind} data but the plan's encoder expects {enc.kind} input; "
                          "re-run `xmcfit plan --data` on this data")
    if ds.n_labels != plan.classifier.n_labels:
        raise XmcfitError(f"{ds.source}: {ds.n_labels} labels but the plan has n_labels={plan.classifier.n_labels}; "
                          "re-run `xmcfit plan --data` on this data")
    if ds.kind == "bow" and ds.n_features != enc.vocab_size:
        raise XmcfitError(f"{ds.source}: {ds.n_features} features but the plan's input has {enc.vocab_size}")


def _label_counts(ds: XMCDataset) -> np.ndarray:
    return np.bincount(ds.labels.indices, minlength=ds.n_labels).astype(np.int64)


def _clusters(plan: Plan, ds: XMCDataset, files: RunFiles) -> torch.Tensor | None:
    """Label clusters for the aux objective: cached in the run dir, else balanced k-means on label features."""
    if not plan.aux.enabled:
        return None
    n_clusters = plan.aux.n_clusters
    if n_clusters > ds.n_labels:
        raise XmcfitError(f"aux.n_clusters={n_clusters}: must be <= the {ds.n_labels} labels of the data")
    if files.clusters.exists():
        cached = np.load(files.clusters)
        if cached.shape == (ds.n_labels,) and int(cached.max()) < n_clusters:
            return torch.from_numpy(cached.astype(np.int64))
    from xmcfit.data.clusters import balanced_kmeans, label_representations
    from xmcfit.data.features import text_features

    points = ds.features if ds.features is not None else text_features(ds.texts)
    clusters = balanced_kmeans(label_representations(points, ds.labels), n_clusters, seed=plan.seed)
    tmp = files.clusters.with_name("clusters.tmp.npy")
    np.save(tmp, clusters)
    os.replace(tmp, files.clusters)
    return torch.from_numpy(np.asarray(clusters, dtype=np.int64))


def load_train_data(plan: Plan, root: Path, options: DataOptions, resume: bool) -> TrainData:
    """Read the training split, check it against the plan, write/refresh the run's data records."""
    from xmcfit.data.torch_data import BowCollator, TextCollator, XMCTorchDataset

    files = RunFiles(root)
    vocab = None
    if resume and files.labels.exists():
        from xmcfit.data import LabelVocab

        vocab = LabelVocab.load(files.labels)
    ds = load_split(options.path, "train", text_fields=options.text_fields, label_field=options.label_field,
                    label_vocab=vocab, limit=options.limit)
    _check_against_plan(plan, ds)
    if ds.label_vocab is not None and not files.labels.exists():
        ds.label_vocab.save(files.labels)
    if not files.label_counts.exists():
        np.save(files.label_counts, _label_counts(ds))
    torch_ds = XMCTorchDataset(ds)
    source = None
    if ds.kind == "text":
        from transformers import AutoConfig, AutoTokenizer

        source = str(files.encoder) if resume else resolve_encoder_source(plan.model.encoder.name)
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
        except (OSError, ValueError) as err:
            raise XmcfitError(f"tokenizer of encoder {source!r} is not available offline ({type(err).__name__})") from None
        if not resume:
            files.encoder.mkdir(exist_ok=True)
            tokenizer.save_pretrained(files.encoder)
            AutoConfig.from_pretrained(source, local_files_only=True).save_pretrained(files.encoder)
        collator: Callable = TextCollator(tokenizer, plan.model.seq_len)
    else:
        collator = BowCollator()

    def collate(rows: np.ndarray) -> dict[str, torch.Tensor]:
        return collator([torch_ds[int(r)] for r in rows])

    return TrainData(ds, collate, source, _clusters(plan, ds, files))


def write_final_weights(files: RunFiles, model: torch.nn.Module, memory: dict[str, Any], *,
                        epochs_done: int, steps: int) -> None:
    """model.safetensors and memory.json (both atomic), then mark the run done in run.json."""
    tmp = files.weights.with_name("model.tmp.safetensors")
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    os.replace(tmp, files.weights)
    atomic_write_text(files.memory, json.dumps(memory, indent=2) + "\n")
    info = read_run_info(files.root)
    info.update(status="done", epochs_done=epochs_done, steps=steps)
    write_run_info(files.root, info)
