"""Data: format readers, dataset container, label vocabularies, statistics, synthetic data, clustering.

Importing this package does not import torch; the torch Dataset and collators live in
xmcfit.data.torch_data.
"""

from xmcfit.data.dataset import XMCDataset, labels_csr
from xmcfit.data.loader import SPLIT_ALIASES, available_splits, eval_split, load_split
from xmcfit.data.stats import DatasetStats, compute_stats
from xmcfit.data.vocab import LabelVocab

__all__ = [
    "SPLIT_ALIASES",
    "DatasetStats",
    "LabelVocab",
    "XMCDataset",
    "available_splits",
    "compute_stats",
    "eval_split",
    "labels_csr",
    "load_split",
]
