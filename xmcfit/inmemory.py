"""Training data held in memory (texts or a sparse feature matrix, label lists or an indicator matrix),
checked and written as a dataset directory the trainer, eval and resume read like any other.

Texts go to `train.jsonl` (LF-* style fields "title" and "target_ind", which every reader guesses, and
JSON, so any character survives) with `labels.tsv` fixing
label id i to key "i" and its name; a feature matrix goes to `fit_train.txt` (XMC text format, with its
`N F L` header) and the names to `label_names.txt`. Label ids are the caller's: integer labels keep
theirs, string labels are numbered in sorted order. Pure NumPy/SciPy: no torch.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from xmcfit.atomic import atomic_write_text
from xmcfit.errors import XmcfitError

TEXT_FIELD = "title"
LABEL_FIELD = "target_ind"
DATA_MARKER = "xmcfit_data.json"
"""The first file of a data directory xmcfit.fit wrote (what it holds, where from)."""
LINE_BREAKS = ("\n", "\r", "\t")


@dataclass(frozen=True)
class InMemoryData:
    """Checked training data: exactly one of `texts` / `features`; labels as id lists into `names`."""

    texts: list[str] | None
    features: sp.csr_matrix | None
    """(n_points, n_features) float32, finite."""
    label_ids: list[list[int]]
    names: list[str]
    """Display name of each label id (n_labels entries)."""

    @property
    def n_points(self) -> int:
        return len(self.label_ids)

    @property
    def text_fields(self) -> tuple[str, ...] | None:
        """The JSON-lines fields to read (None for a feature matrix)."""
        return (TEXT_FIELD,) if self.texts is not None else None

    @property
    def label_field(self) -> str | None:
        return LABEL_FIELD if self.texts is not None else None


def check_data(inputs: Any, labels: Any, label_names: Sequence[str] | None = None) -> InMemoryData:
    """`inputs` (a list of texts, or a scipy.sparse / 2-D NumPy feature matrix) and `labels` (a list of label
    lists, ints or strings, or a scipy.sparse (n_points, n_labels) indicator matrix), checked; one
    XmcfitError line naming the argument otherwise."""
    texts, features = _inputs(inputs)
    n_points = len(texts) if texts is not None else features.shape[0]
    if n_points == 0:
        raise XmcfitError("inputs: no points to train on")
    label_ids, names = _labels(labels, label_names)
    if len(label_ids) != n_points:
        raise XmcfitError(f"labels: {len(label_ids)} label rows for {n_points} inputs; give one row per input")
    top = max((label for row in label_ids for label in row), default=-1)
    if top >= len(names):
        raise XmcfitError(f"labels: label id {top} but only {len(names)} label_names")
    bad = next((n for n in names if not isinstance(n, str) or not n or any(c in n for c in LINE_BREAKS)), None)
    if bad is not None:
        raise XmcfitError(f"label_names: {bad!r}: a label name must be a non-empty string without line breaks or tabs")
    return InMemoryData(texts, features, label_ids, names)


def _inputs(inputs: Any) -> tuple[list[str] | None, sp.csr_matrix | None]:
    if isinstance(inputs, np.ndarray) and inputs.ndim == 2 and inputs.dtype.kind in "iuf":
        inputs = sp.csr_matrix(inputs)
    if sp.issparse(inputs):
        features = sp.csr_matrix(inputs, dtype=np.float32)
        if features.ndim != 2 or features.shape[1] == 0 or not np.all(np.isfinite(features.data)):
            raise XmcfitError(f"inputs: a feature matrix of shape {features.shape} with finite values is needed")
        features.sum_duplicates()
        return None, features
    if isinstance(inputs, (str, bytes)) or not isinstance(inputs, Sequence):
        raise XmcfitError(f"inputs: {type(inputs).__name__}: give a list of texts or a scipy.sparse feature matrix")
    bad = next((t for t in inputs if not isinstance(t, str)), None)
    if bad is not None:
        raise XmcfitError(f"inputs: {bad!r} is not a string; give a list of texts (str)")
    return list(inputs), None


def _labels(labels: Any, label_names: Sequence[str] | None) -> tuple[list[list[int]], list[str]]:
    if sp.issparse(labels):
        matrix = sp.csr_matrix(labels)
        matrix.eliminate_zeros()
        rows = [matrix.indices[matrix.indptr[i]: matrix.indptr[i + 1]].tolist() for i in range(matrix.shape[0])]
        return rows, _names(label_names, matrix.shape[1])
    if isinstance(labels, (str, bytes)) or not isinstance(labels, Sequence):
        raise XmcfitError(f"labels: {type(labels).__name__}: give a list of label lists or a scipy.sparse "
                          "indicator matrix (n_points, n_labels)")
    rows = [_label_row(row, i) for i, row in enumerate(labels)]
    flat = {label for row in rows for label in row}
    if flat and all(isinstance(label, str) for label in flat):
        if label_names is not None:
            raise XmcfitError("label_names: string labels are their own names; drop label_names")
        keys = sorted(flat)
        id_of = {key: i for i, key in enumerate(keys)}
        return [[id_of[label] for label in row] for row in rows], keys
    if any(isinstance(label, str) for label in flat):
        raise XmcfitError("labels: mixes strings and integers; give all labels as one or the other")
    n_labels = len(label_names) if label_names is not None else max(flat, default=-1) + 1
    return [list(row) for row in rows], _names(label_names, n_labels)


def _label_row(row: Any, i: int) -> list[Any]:
    if isinstance(row, (str, bytes)) or not isinstance(row, (Sequence, np.ndarray)):
        raise XmcfitError(f"labels[{i}]: {row!r}: each point's labels must be a list (of ints or strings)")
    for label in row:
        if isinstance(label, (bool, np.bool_)) or not isinstance(label, (int, np.integer, str)):
            raise XmcfitError(f"labels[{i}]: {label!r}: a label is an int id or a string")
        if not isinstance(label, str) and label < 0:
            raise XmcfitError(f"labels[{i}]: label id {label}: must be >= 0")
    return [label if isinstance(label, str) else int(label) for label in row]


def _names(label_names: Sequence[str] | None, n_labels: int) -> list[str]:
    if n_labels == 0:
        raise XmcfitError("labels: no label at all; give each point the labels it has")
    if label_names is None:
        return [str(i) for i in range(n_labels)]
    if isinstance(label_names, str) or len(label_names) != n_labels:
        raise XmcfitError(f"label_names: needs one name per label ({n_labels}), got "
                          f"{1 if isinstance(label_names, str) else len(label_names)}")
    return list(label_names)


def write_data(data: InMemoryData, directory: Path) -> Path:
    """Write `data` as a dataset directory (a new or empty one) and return it."""
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise XmcfitError(f"data_dir {directory}: exists; xmcfit.fit writes its training data into a new "
                          "directory: choose another data_dir (or out)")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write_text(directory / DATA_MARKER, json.dumps({"written_by": "xmcfit.fit",
                                                                "n_points": data.n_points}) + "\n")
        if data.texts is not None:
            _write_texts(data, directory)
        else:
            _write_features(data, directory)
    except OSError as err:
        raise XmcfitError(f"data_dir {directory}: cannot write the training data ({err.strerror or err})") from None
    return directory


def _write_texts(data: InMemoryData, directory: Path) -> None:
    lines = (json.dumps({TEXT_FIELD: text, LABEL_FIELD: [str(i) for i in ids]}, ensure_ascii=False)
             for text, ids in zip(data.texts or (), data.label_ids))
    atomic_write_text(directory / "train.jsonl", "\n".join(lines) + "\n")
    with open(directory / "labels.tsv", "w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream, delimiter="\t", lineterminator="\n")
        writer.writerow(("label_index", "concept_id", "label"))
        writer.writerows((i, str(i), name) for i, name in enumerate(data.names))


def _write_features(data: InMemoryData, directory: Path) -> None:
    x = data.features
    assert x is not None
    header = f"{x.shape[0]} {x.shape[1]} {len(data.names)}"
    lines = [header] + [
        ",".join(map(str, ids)) + " " + " ".join(f"{f}:{v:.9g}" for f, v in zip(
            x.indices[x.indptr[i]: x.indptr[i + 1]], x.data[x.indptr[i]: x.indptr[i + 1]]))
        for i, ids in enumerate(data.label_ids)]
    atomic_write_text(directory / "fit_train.txt", "\n".join(lines) + "\n")
    atomic_write_text(directory / "label_names.txt", "\n".join(data.names) + "\n")


def default_data_dir(out: Path) -> Path:
    """Where xmcfit.fit writes the training data of run `out` unless told: beside it, `<out>-data`."""
    return out.with_name(out.name + "-data")
