"""The data side of a training run: read the training split, check it against the plan, prepare the
tokenizer and the aux-objective label clusters, and record what eval needs in the run directory
(label vocabulary, label counts, encoder config and tokenizer, clusters)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from xmcfit.data import XMCDataset, load_split
from xmcfit.errors import XmcfitError
from xmcfit.model import resolve_encoder_source
from xmcfit.plan.schema import Plan
from xmcfit.rundir import DataOptions, RunFiles

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainData:
    """The training split and what turns row ids into model inputs."""

    dataset: XMCDataset
    collate: Callable[[np.ndarray], dict[str, torch.Tensor]]
    encoder_source: str | None
    """Directory or hub id the text encoder loads from (None for bag-of-words)."""
    clusters: torch.Tensor | None
    """Cluster id per label (n_labels,) for the auxiliary objective, or None."""


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
    plan.check_data(ds, fix="re-run `xmcfit plan --data` on this data")
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
