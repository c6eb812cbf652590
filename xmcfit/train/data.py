"""The data side of a training run: read the training split, check it against the plan, prepare the
tokenizer and the aux-objective label clusters, and record what eval needs in the run directory
(label vocabulary, label counts, encoder config and tokenizer, clusters)."""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

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
    words: Any = None
    """The TF-IDF side's term counts of every training point (n_points, n_words) CSR: the features of a
    bag-of-words split, the run's word vocabulary over a text split; None without a TF-IDF side."""


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
    try:
        np.save(tmp, clusters)
        os.replace(tmp, files.clusters)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise XmcfitError(f"{files.clusters}: cannot write ({err.strerror or err})") from None
    return torch.from_numpy(np.asarray(clusters, dtype=np.int64))


def data_fingerprint(ds: XMCDataset) -> str:
    """SHA-256 (first 16 hex digits) of a split's labels and inputs: a resume checks that the data it
    reads (perhaps from a new --data path) is the data the run started with."""
    digest = hashlib.sha256(f"{ds.n_points} {ds.n_labels} {ds.n_features}".encode())
    for array in (ds.labels.indptr, ds.labels.indices):
        digest.update(np.ascontiguousarray(array, dtype=np.int64).tobytes())
    if ds.features is not None:
        for array in (ds.features.indptr, ds.features.indices, ds.features.data):
            digest.update(np.ascontiguousarray(array).tobytes())
    for text in ds.texts or ():
        digest.update(text.encode("utf-8", errors="surrogatepass") + b"\0")
    return digest.hexdigest()[:16]


def read_train_split(plan: Plan, options: DataOptions, vocab=None) -> XMCDataset:
    """The training split, checked against the plan before anything is written: labels and input match,
    at least one point, auxiliary clusters no more than labels. One XmcfitError line otherwise."""
    ds = load_split(options.path, "train", text_fields=options.text_fields, label_field=options.label_field,
                    label_vocab=vocab, limit=options.limit)
    if ds.n_points == 0:
        raise XmcfitError(f"{ds.source}: the training split has no points")
    plan.check_data(ds, fix="re-run `xmcfit plan --data` on this data")
    warn_if_sized_for_other_points(plan, ds.n_points)
    if plan.aux.enabled and plan.aux.n_clusters > ds.n_labels:
        raise XmcfitError(f"aux.n_clusters={plan.aux.n_clusters}: must be <= the {ds.n_labels} labels of the data")
    return ds


def warn_if_sized_for_other_points(plan: Plan, n_points: int) -> None:
    """A warning when the plan's batch and TF-IDF side's rate were sized for a training set of another size
    (more than 1.5 times off either way, as `--limit` makes): the run still trains as planned."""
    planned = plan.inputs.train_points
    if planned and not planned / 1.5 <= n_points <= planned * 1.5:
        log.warning("the plan was sized for %s training points (its batch and the TF-IDF side's rate); this run "
                    "trains on %s: `xmcfit plan --train-points %d` sizes it for them", f"{planned:,}",
                    f"{n_points:,}", n_points)


def load_text_tokenizer(source: str):
    """The encoder's tokenizer, offline; one XmcfitError line saying how to get it when it is missing."""
    from transformers import AutoTokenizer

    from xmcfit.plan.profiles import check_encoder_source

    check_encoder_source(source)
    try:
        return AutoTokenizer.from_pretrained(source, local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, KeyError) as err:
        raise XmcfitError(f"tokenizer of encoder {source!r} is not available offline ({type(err).__name__}); "
                          "put the tokenizer files beside its config.json (`hf download <id> --local-dir DIR`)") from None


def load_train_data(plan: Plan, root: Path, options: DataOptions, resume: bool,
                    dataset: XMCDataset | None = None) -> TrainData:
    """Read the training split (or take `dataset`, already read by read_train_split), check it against the
    plan, write/refresh the run's data records."""
    from xmcfit.data.torch_data import BowCollator, TextCollator, XMCTorchDataset, csr_rows_batch

    files = RunFiles(root)
    vocab = None
    if resume and files.labels.exists():
        from xmcfit.data import LabelVocab

        vocab = LabelVocab.load(files.labels)
    ds = dataset if dataset is not None else read_train_split(plan, options, vocab)
    try:  # a full disk or a read-only folder here is one line; the run has no checkpoint yet and restarts
        if ds.label_vocab is not None and not files.labels.exists():
            ds.label_vocab.save(files.labels)
        if not files.label_counts.exists():
            np.save(files.label_counts, _label_counts(ds))
    except OSError as err:
        raise XmcfitError(f"{root}: cannot write the run's label records ({err.strerror or err})") from None
    torch_ds = XMCTorchDataset(ds)
    source = None
    if ds.kind == "text":
        from transformers import AutoConfig

        source = str(files.encoder) if resume else resolve_encoder_source(plan.model.encoder.name)
        tokenizer = load_text_tokenizer(source)
        if not resume:
            files.encoder.mkdir(exist_ok=True)
            try:
                tokenizer.save_pretrained(files.encoder)
                AutoConfig.from_pretrained(source, local_files_only=True, trust_remote_code=False).save_pretrained(files.encoder)
            except OSError as err:
                raise XmcfitError(f"{files.encoder}: cannot write the encoder's config and tokenizer "
                                  f"({err.strerror or err})") from None
        collator: Callable = TextCollator(tokenizer, plan.model.seq_len)
    else:
        collator = BowCollator()

    words = _training_words(plan, ds, files, resume)
    text_words = words if ds.kind == "text" else None

    def collate(rows: np.ndarray) -> dict[str, torch.Tensor]:
        batch = collator([torch_ds[int(r)] for r in rows])
        return batch | csr_rows_batch(text_words, rows, "words") if text_words is not None else batch

    return TrainData(ds, collate, source, _clusters(plan, ds, files), words)


def _training_words(plan: Plan, ds: XMCDataset, files: RunFiles, resume: bool):
    """The TF-IDF side's term counts of the training split (None without one): a bag-of-words split's
    features; for text, counts over the word vocabulary fitted on the training texts and saved in the run
    directory (a resumed run reads it back, so its columns stay the checkpoint's)."""
    tf = plan.tfidf
    if not tf.enabled:
        return None
    if ds.kind == "bow":
        return ds.features
    from xmcfit.data.words import WordVocab

    if resume and files.tfidf_vocab.exists():
        vocab = WordVocab.load(files.tfidf_vocab)
    else:
        vocab = WordVocab.fit(ds.texts, max_words=tf.n_words, min_df=tf.min_df)
        try:
            vocab.save(files.tfidf_vocab)
        except OSError as err:
            raise XmcfitError(f"{files.tfidf_vocab}: cannot write ({err.strerror or err})") from None
    if len(vocab) > tf.n_words:
        raise XmcfitError(f"{files.tfidf_vocab}: {len(vocab)} words, more than the plan's tfidf.n_words={tf.n_words}")
    return _padded_columns(vocab.counts(ds.texts), tf.n_words)


def _padded_columns(counts, n_words: int):
    """`counts` (n, v <= n_words) as (n, n_words): a vocabulary smaller than the plan's width leaves the
    last columns empty (the scorer is built for the plan's width, which the memory model priced)."""
    import scipy.sparse as sp

    return sp.csr_matrix((counts.data, counts.indices, counts.indptr), shape=(counts.shape[0], n_words))
