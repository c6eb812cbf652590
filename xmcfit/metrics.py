"""Ranking metrics for XMC: P@k, nDCG@k, PSP@k, PSnDCG@k, coverage@k, and Jain et al. propensities.

Definitions follow the community ones as implemented by napkinxc 0.7.2 (`napkinxc.metrics`), which the
tests use as an oracle. Everything is vectorised over points: a (n_points, k) hit matrix is built
once by a sorted-key lookup, then each metric is a cumulative sum along the rank axis.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

LabelsLike = Sequence[Sequence[int]] | Sequence[np.ndarray] | sp.csr_matrix

DEFAULT_PROPENSITY_A = 0.55
DEFAULT_PROPENSITY_B = 1.5
"""Jain et al.'s A/B for a dataset without its own (Amazon sets 0.6/2.6, Wikipedia 0.5/0.4)."""


def _labels_to_csr(labels: LabelsLike, n_labels_min: int = 0) -> sp.csr_matrix:
    """Binary CSR (n_points, n_labels) with sorted, de-duplicated indices from label lists or CSR."""
    if sp.issparse(labels):
        y = sp.csr_matrix(labels, copy=True)
        y.data = np.ones_like(y.data, dtype=np.float32)
        y.eliminate_zeros()
        y.sum_duplicates()
        y.sort_indices()
        return y
    lengths = np.fromiter((len(row) for row in labels), dtype=np.int64, count=len(labels))
    indptr = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    if indptr[-1] > 0:
        indices = np.concatenate([np.asarray(row, dtype=np.int64).ravel() for row in labels])
    else:
        indices = np.zeros(0, dtype=np.int64)
    if indices.size and indices.min() < 0:
        raise ValueError("labels: label ids must be >= 0")
    n_labels = max(int(indices.max()) + 1 if indices.size else 0, n_labels_min)
    y = sp.csr_matrix((np.ones(indices.size, dtype=np.float32), indices, indptr), shape=(len(lengths), n_labels))
    y.sum_duplicates()  # duplicates collapse to one positive (a set of labels)
    y.data[:] = 1.0
    y.sort_indices()
    return y


def _hits(y: sp.csr_matrix, top_k: np.ndarray) -> np.ndarray:
    """Boolean (n_points, k): whether top_k[i, j] is a true label of point i (ids outside y are misses)."""
    n_points, n_labels = y.shape
    rows = np.repeat(np.arange(n_points, dtype=np.int64), np.diff(y.indptr))
    true_keys = rows * n_labels + y.indices.astype(np.int64)  # sorted: rows ascending, indices sorted
    valid = (top_k >= 0) & (top_k < n_labels)  # (n_points, k)
    query = np.arange(n_points, dtype=np.int64)[:, None] * n_labels + np.where(valid, top_k, 0)
    pos = np.searchsorted(true_keys, query)
    pos_clipped = np.minimum(pos, max(true_keys.size - 1, 0))
    found = (pos < true_keys.size) & (true_keys[pos_clipped] == query) if true_keys.size else np.zeros_like(valid)
    return found & valid


def _best_inv_propensity(y: sp.csr_matrix, inv_propensity: np.ndarray, k: int) -> np.ndarray:
    """(n_points, k) inverse propensities of each point's true labels, sorted descending, zero-padded.

    Labels beyond len(inv_propensity) are ignored, as napkinxc does.
    """
    n_points = y.shape[0]
    rows = np.repeat(np.arange(n_points, dtype=np.int64), np.diff(y.indptr))
    cols = y.indices.astype(np.int64)
    keep = cols < inv_propensity.shape[0]
    rows, values = rows[keep], inv_propensity[cols[keep]]
    order = np.lexsort((-values, rows))  # by row, then value descending
    rows, values = rows[order], values[order]
    row_start = np.searchsorted(rows, np.arange(n_points), side="left")
    rank = np.arange(rows.size) - row_start[rows]
    best = np.zeros((n_points, k), dtype=np.float64)
    sel = rank < k
    best[rows[sel], rank[sel]] = values[sel]
    return best


def ranking_metrics(
    labels: LabelsLike,
    top_k: np.ndarray,
    inv_propensity: np.ndarray | None = None,
    ks: Sequence[int] = (1, 3, 5),
) -> dict[str, float]:
    """P@k, nDCG@k, coverage@k (and PSP@k, PSnDCG@k with propensities) as fractions in [0, 1].

    labels: true label ids per point (list of id lists, or a CSR (n_points, n_labels) matrix).
    top_k: int array (n_points, >= max(ks)) of predicted label ids, best first; ids < 0 count as misses.
    inv_propensity: float (n_labels,) inverse propensities 1/p_l (see `inverse_propensity`).
    A point with no true labels contributes 0 to every per-point sum (and to the PS normalisers).
    PSP@k and PSnDCG@k are divided by the best achievable value summed over the same points.
    coverage@k = |distinct true labels ranked in some top-k| / |distinct labels in the ground truth|.
    """
    ks = tuple(int(k) for k in ks)
    if not ks or min(ks) < 1:
        raise ValueError(f"ks={ks}: must be non-empty and every k >= 1")
    k_max = max(ks)
    y, top_k = _checked_inputs(labels, top_k, k_max)
    hits = _hits(y, top_k)  # (n_points, k_max)
    n_true = np.diff(y.indptr)  # (n_points,)
    discount = 1.0 / np.log2(np.arange(2, k_max + 2))  # (k_max,) 1/log2(rank+1), rank 1-based
    ranks = np.arange(1, k_max + 1)  # (k_max,)
    # IDCG@i over min(i, |y|) positions; zero for points without labels (their terms are skipped).
    idcg = np.cumsum(discount)[np.minimum(ranks[None, :], n_true[:, None]) - 1]  # (n_points, k_max)
    has_labels = n_true > 0
    idcg_safe = np.where(has_labels[:, None], idcg, 1.0)

    precision = np.cumsum(hits, axis=1) / ranks  # (n_points, k_max)
    dcg = np.cumsum(hits * discount, axis=1)
    ndcg = np.where(has_labels[:, None], dcg / idcg_safe, 0.0)

    gt_labels = np.unique(y.indices)
    ps = ({} if inv_propensity is None else
          _propensity_scored(y, top_k, hits, np.asarray(inv_propensity, dtype=np.float64), discount, idcg_safe,
                             has_labels, ks))
    out: dict[str, float] = {}
    for k in ks:
        i = k - 1
        out[f"P@{k}"] = float(precision[:, i].mean())
        out[f"nDCG@{k}"] = float(ndcg[:, i].mean())
        out.update({name: ps[name] for name in (f"PSP@{k}", f"PSnDCG@{k}") if name in ps})
        covered = np.unique(top_k[:, :k][hits[:, :k]])
        out[f"coverage@{k}"] = float(covered.size / gt_labels.size) if gt_labels.size else 0.0
    return out


def _checked_inputs(labels: LabelsLike, top_k: np.ndarray, k_max: int) -> tuple[sp.csr_matrix, np.ndarray]:
    """The labels as CSR and top_k cut to (n_points, k_max) int64; ValueError on shapes that do not fit."""
    top_k = np.asarray(top_k)
    y = _labels_to_csr(labels)
    if top_k.ndim != 2 or top_k.shape[0] != y.shape[0] or top_k.shape[1] < k_max:
        raise ValueError(f"top_k shape {top_k.shape}: must be ({y.shape[0]}, >= {k_max})")
    if y.shape[0] == 0:
        raise ValueError("labels: no points to evaluate")
    return y, top_k[:, :k_max].astype(np.int64)


def _propensity_scored(y: sp.csr_matrix, top_k: np.ndarray, hits: np.ndarray, inv_propensity: np.ndarray,
                       discount: np.ndarray, idcg_safe: np.ndarray, has_labels: np.ndarray,
                       ks: Sequence[int]) -> dict[str, float]:
    """PSP@k and PSnDCG@k, each normalised by the best achievable value over the same points."""
    safe_ids = np.clip(top_k, 0, inv_propensity.shape[0] - 1)
    ps_gain = np.where(hits & (top_k < inv_propensity.shape[0]), inv_propensity[safe_ids], 0.0)
    ps_best = _best_inv_propensity(y, inv_propensity, top_k.shape[1])
    out: dict[str, float] = {}
    for k in ks:
        i = k - 1
        psp_sum = ps_gain[:, :k].sum() / k
        psp_best = ps_best[:, :k].sum() / k
        out[f"PSP@{k}"] = float(psp_sum / psp_best) if psp_best > 0 else 0.0
        psdcg = (ps_gain[:, :k] @ discount[:k]) / idcg_safe[:, i]
        psdcg_best = (ps_best[:, :k] @ discount[:k]) / idcg_safe[:, i]
        num, den = psdcg[has_labels].sum(), psdcg_best[has_labels].sum()
        out[f"PSnDCG@{k}"] = float(num / den) if den > 0 else 0.0
    return out


def inverse_propensity(labels: LabelsLike, num_labels: int, a: float = DEFAULT_PROPENSITY_A,
                       b: float = DEFAULT_PROPENSITY_B) -> np.ndarray:
    """Inverse propensities 1/p_l (n_labels,) float64, from training labels (Jain et al. 2016).

    p_l = 1 / (1 + C (N_l + B)^-A), C = (ln N - 1)(B + 1)^A, N = training points (including points
    without labels), N_l = training frequency of label l. Typical A/B: 0.55/1.5 default, 0.6/2.6
    Amazon, 0.5/0.4 Wikipedia.
    """
    y = _labels_to_csr(labels, n_labels_min=num_labels)
    if y.shape[1] > num_labels:
        raise ValueError(f"num_labels={num_labels}: labels contain id {y.shape[1] - 1}")
    n_points = y.shape[0]
    if n_points < 1:
        raise ValueError("labels: need at least one training point")
    counts = np.bincount(y.indices, minlength=num_labels).astype(np.float64)  # (n_labels,) N_l
    return inverse_propensity_from_counts(counts, n_points, a, b)


def inverse_propensity_from_counts(label_counts: np.ndarray, n_train: int, a: float, b: float) -> np.ndarray:
    """1/p_l (n_labels,) float64 from training label frequencies N_l and the training size N (the formula
    above), for runs that keep counts, not labels."""
    if n_train < 1:
        raise ValueError(f"n_train={n_train}: must be >= 1")
    c = (np.log(n_train) - 1.0) * (b + 1.0) ** a
    return 1.0 + c * (np.asarray(label_counts, dtype=np.float64) + b) ** -a
