"""XMCDataset: one split of an XMC dataset in memory (raw texts or bag-of-words, plus a binary label CSR)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp

from xmcfit.data.vocab import LabelVocab


def labels_csr(label_ids: Sequence[Sequence[int]] | Sequence[np.ndarray], n_labels: int) -> sp.csr_matrix:
    """Binary float32 CSR (n_points, n_labels) from per-point label id lists (duplicates collapse)."""
    lengths = np.fromiter((len(r) for r in label_ids), dtype=np.int64, count=len(label_ids))
    indptr = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    indices = (np.concatenate([np.asarray(r, dtype=np.int64) for r in label_ids])
               if indptr[-1] else np.zeros(0, dtype=np.int64))
    y = sp.csr_matrix((np.ones(indices.size, dtype=np.float32), indices, indptr), shape=(len(lengths), n_labels))
    y.sum_duplicates()
    y.data[:] = 1.0
    return y


@dataclass(frozen=True, eq=False)
class XMCDataset:
    """One split: exactly one of `texts` / `features` is set; `labels` is binary (n_points, n_labels)."""

    texts: list[str] | None
    """Raw input texts (text datasets), one per point."""
    features: sp.csr_matrix | None
    """Bag-of-words float32 (n_points, n_features) (bow datasets)."""
    labels: sp.csr_matrix
    """Binary float32 (n_points, n_labels), sorted indices."""
    n_labels: int
    n_features: int
    """Input dimension for bow; 0 for text."""
    label_names: list[str] | None
    """Display names by label id, when known."""
    source: str
    """Where the split came from (file path), for messages and run records."""
    label_vocab: LabelVocab | None = None
    """Key <-> id mapping used to read string labels (None for integer-id formats); save it with the model."""
    n_dropped_labels: int = 0
    """Label occurrences dropped because their key is not in the vocabulary (dev/test labels unseen in training)."""

    def __post_init__(self) -> None:
        if (self.texts is None) == (self.features is None):
            raise ValueError("exactly one of texts / features must be set")
        if self.labels.shape[1] != self.n_labels:
            raise ValueError(f"labels has {self.labels.shape[1]} columns: must equal n_labels={self.n_labels}")
        n_inputs = len(self.texts) if self.texts is not None else self.features.shape[0]  # type: ignore[union-attr]
        if n_inputs != self.labels.shape[0]:
            raise ValueError(f"{n_inputs} inputs but {self.labels.shape[0]} label rows")
        if self.features is not None and self.features.shape[1] != self.n_features:
            raise ValueError(f"features has {self.features.shape[1]} columns: must equal n_features={self.n_features}")
        if self.label_names is not None and len(self.label_names) != self.n_labels:
            raise ValueError(f"label_names has {len(self.label_names)} entries: must equal n_labels={self.n_labels}")
        if not self.labels.has_sorted_indices:
            self.labels.sort_indices()

    @property
    def n_points(self) -> int:
        return int(self.labels.shape[0])

    @property
    def kind(self) -> Literal["text", "bow"]:
        return "text" if self.texts is not None else "bow"

    def label_lists(self) -> list[np.ndarray]:
        """True label ids per point (int32 views into the CSR, sorted)."""
        y = self.labels
        return [y.indices[y.indptr[i]: y.indptr[i + 1]] for i in range(y.shape[0])]
