"""Torch side of the data: a map-style Dataset of rows and the collators that build training batches.

`positives` in every batch is a LongTensor (n_pos, 2) of [row_in_batch, label_id] pairs, the sparse
target format that xmcfit.sparse.chunked_loss consumes. Text is tokenised per batch (lazily).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from xmcfit.data.dataset import XMCDataset


class Example(NamedTuple):
    """One row: its dataset index, its input (text, or bow ids + weights) and its label ids."""

    index: int
    text: str | None
    feat_indices: np.ndarray | None  # (nnz,) int32
    feat_weights: np.ndarray | None  # (nnz,) float32
    labels: np.ndarray  # (n_pos,) int32


class XMCTorchDataset(Dataset):
    """Map-style dataset over the rows of an XMCDataset; items are `Example`s (no tokenisation here)."""

    def __init__(self, ds: XMCDataset) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return self.ds.n_points

    def __getitem__(self, i: int) -> Example:
        y = self.ds.labels
        labels = y.indices[y.indptr[i]: y.indptr[i + 1]]
        if self.ds.texts is not None:
            return Example(int(i), self.ds.texts[i], None, None, labels)
        x = self.ds.features
        lo, hi = x.indptr[i], x.indptr[i + 1]  # type: ignore[union-attr]
        return Example(int(i), None, x.indices[lo:hi], x.data[lo:hi], labels)  # type: ignore[union-attr]


def positives_tensor(label_lists: Sequence[np.ndarray]) -> torch.Tensor:
    """(n_pos, 2) int64 [row_in_batch, label_id] pairs, rows ascending, labels in stored order."""
    counts = np.fromiter((len(l) for l in label_lists), dtype=np.int64, count=len(label_lists))
    rows = np.repeat(np.arange(len(label_lists), dtype=np.int64), counts)  # (n_pos,)
    labels = (np.concatenate(label_lists).astype(np.int64) if counts.sum() else np.zeros(0, dtype=np.int64))
    return torch.from_numpy(np.stack([rows, labels], axis=1))  # (n_pos, 2)


class TextCollator:
    """Tokenises a batch of text Examples: input_ids, attention_mask (batch, seq), positives, index."""

    def __init__(self, tokenizer: Any, seq_len: int) -> None:
        if seq_len < 1:
            raise ValueError(f"seq_len={seq_len}: must be >= 1")
        self.tokenizer = tokenizer
        self.seq_len = seq_len

    def __call__(self, batch: Sequence[Example]) -> dict[str, torch.Tensor]:
        enc = self.tokenizer([ex.text for ex in batch], max_length=self.seq_len, truncation=True,
                             padding="longest", return_tensors="pt")
        return {
            "input_ids": enc["input_ids"].long(),  # (batch, seq)
            "attention_mask": enc["attention_mask"].long(),  # (batch, seq)
            "positives": positives_tensor([ex.labels for ex in batch]),  # (n_pos, 2)
            "index": torch.tensor([ex.index for ex in batch], dtype=torch.long),  # (batch,)
        }


class BowCollator:
    """Packs bag-of-words Examples for nn.EmbeddingBag(mode='sum') with per_sample_weights."""

    def __call__(self, batch: Sequence[Example]) -> dict[str, torch.Tensor]:
        lengths = np.array([len(ex.feat_indices) for ex in batch], dtype=np.int64)  # type: ignore[arg-type]
        offsets = np.zeros(len(batch), dtype=np.int64)
        np.cumsum(lengths[:-1], out=offsets[1:])
        nnz = int(lengths.sum())
        indices = np.concatenate([ex.feat_indices for ex in batch]) if nnz else np.zeros(0, dtype=np.int64)  # type: ignore[misc]
        weights = np.concatenate([ex.feat_weights for ex in batch]) if nnz else np.zeros(0, dtype=np.float32)  # type: ignore[misc]
        return {
            "feat_indices": torch.from_numpy(indices.astype(np.int64)),  # (nnz,)
            "feat_offsets": torch.from_numpy(offsets),  # (batch,)
            "feat_weights": torch.from_numpy(weights.astype(np.float32)),  # (nnz,)
            "positives": positives_tensor([ex.labels for ex in batch]),  # (n_pos, 2)
            "index": torch.tensor([ex.index for ex in batch], dtype=torch.long),  # (batch,)
        }


def csr_rows_batch(x, rows: Sequence[int], prefix: str) -> dict[str, torch.Tensor]:
    """Rows of a CSR matrix packed like BowCollator's features: {prefix}_indices (nnz,) int64,
    {prefix}_offsets (batch,) int64, {prefix}_weights (nnz,) float32 (the TF-IDF side's term counts)."""
    sub = x[np.asarray(rows, dtype=np.int64)]
    return {
        f"{prefix}_indices": torch.from_numpy(sub.indices.astype(np.int64)),  # (nnz,)
        f"{prefix}_offsets": torch.from_numpy(sub.indptr[:-1].astype(np.int64)),  # (batch,)
        f"{prefix}_weights": torch.from_numpy(sub.data.astype(np.float32)),  # (nnz,)
    }
