"""DatasetStats: the summary numbers of one split (sizes, label frequency shape, input length)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from xmcfit.data.dataset import XMCDataset

FREQ_QUANTILES = (0.0, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0)


@dataclass(frozen=True)
class DatasetStats:
    """Counts and averages for one split; label frequencies are points per label over used labels."""

    source: str
    kind: str
    n_points: int
    n_labels: int
    n_labels_used: int
    """Labels with at least one positive point in this split."""
    n_features: int
    avg_labels_per_point: float
    avg_points_per_label: float
    """Mean over used labels."""
    label_freq_quantiles: dict[str, float]
    """Quantile (as 'q50') -> points per label, over used labels."""
    avg_input_length: float
    """Mean words per text (whitespace split) for text datasets; mean nnz features for bow."""
    n_points_without_labels: int
    n_dropped_labels: int

    def to_dict(self) -> dict:
        return asdict(self)


def compute_stats(ds: XMCDataset) -> DatasetStats:
    freq = np.bincount(ds.labels.indices, minlength=ds.n_labels)  # (n_labels,) points per label
    used = freq[freq > 0]
    per_point = np.diff(ds.labels.indptr)
    if ds.texts is not None:
        avg_len = float(np.mean([len(t.split()) for t in ds.texts])) if ds.texts else 0.0
    else:
        avg_len = float(np.diff(ds.features.indptr).mean()) if ds.n_points else 0.0  # type: ignore[union-attr]
    quantiles = {f"q{round(q * 100)}": float(np.quantile(used, q)) if used.size else 0.0 for q in FREQ_QUANTILES}
    return DatasetStats(
        source=ds.source,
        kind=ds.kind,
        n_points=ds.n_points,
        n_labels=ds.n_labels,
        n_labels_used=int(used.size),
        n_features=ds.n_features,
        avg_labels_per_point=float(per_point.mean()) if ds.n_points else 0.0,
        avg_points_per_label=float(used.mean()) if used.size else 0.0,
        label_freq_quantiles=quantiles,
        avg_input_length=avg_len,
        n_points_without_labels=int((per_point == 0).sum()),
        n_dropped_labels=ds.n_dropped_labels,
    )
