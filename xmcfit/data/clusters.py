"""Label clusters for the auxiliary objective: label representations and balanced hierarchical 2-means.

A label is represented by the L2-normalised sum of the features of its training points (PECOS/
LightXML-style "PIFA"); labels are split recursively into two halves of prescribed sizes by spherical
2-means, which gives exactly n_clusters clusters whose sizes differ by at most 1.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from xmcfit.data.features import normalize_rows, text_features

__all__ = ["balanced_kmeans", "cluster_sizes", "label_representations", "text_features"]


def label_representations(point_features: sp.csr_matrix | np.ndarray, labels: sp.csr_matrix) -> sp.csr_matrix | np.ndarray:
    """(n_labels, dim) L2-normalised sums of each label's points' features; labels without points get 0.

    point_features: (n_points, dim) CSR or dense; labels: (n_points, n_labels) binary CSR.
    Returns CSR for sparse features, dense float32 otherwise.
    """
    if point_features.shape[0] != labels.shape[0]:
        raise ValueError(f"point_features has {point_features.shape[0]} rows but labels has {labels.shape[0]}")
    y_t = sp.csr_matrix(labels, dtype=np.float32).T.tocsr()  # (n_labels, n_points)
    summed = y_t @ point_features  # (n_labels, dim)
    return normalize_rows(sp.csr_matrix(summed) if sp.issparse(summed) else np.asarray(summed))


def cluster_sizes(n_items: int, n_clusters: int) -> np.ndarray:
    """Target sizes: n_items // n_clusters, plus one for the first n_items % n_clusters clusters."""
    sizes = np.full(n_clusters, n_items // n_clusters, dtype=np.int64)
    sizes[: n_items % n_clusters] += 1
    return sizes


def _two_means(x, n_left: int, rng: np.random.Generator, n_iter: int) -> np.ndarray:
    """Boolean mask (m,) of the n_left rows put on the left by balanced spherical 2-means.

    With sparse x the centroids stay sparse, so a node costs O(its nnz), not O(dim): this keeps
    deep levels (many small nodes) cheap for 10^5+ labels over 2^18 hashed features.
    """
    m = x.shape[0]
    sparse = sp.issparse(x)
    centroids = x[rng.choice(m, size=2, replace=False)]  # (2, dim)
    left = np.zeros(m, dtype=bool)
    for _ in range(n_iter):
        direction = centroids[0] - centroids[1]  # (dim,) or (1, dim) sparse
        diff = (x @ direction.T).toarray().ravel() if sparse else x @ direction  # (m,) cos(c0) - cos(c1)
        order = np.argsort(-diff, kind="stable")
        new_left = np.zeros(m, dtype=bool)
        new_left[order[:n_left]] = True
        if np.array_equal(new_left, left):
            break
        left = new_left
        members = np.stack([left, ~left]).astype(np.float32)  # (2, m)
        sums = (sp.csr_matrix(members) @ x) if sparse else members @ x  # (2, dim) sums of each side's rows
        centroids = normalize_rows(sums)
    return left


def balanced_kmeans(label_repr: sp.csr_matrix | np.ndarray, n_clusters: int, seed: int = 0, n_iter: int = 10) -> np.ndarray:
    """Cluster id per label (n_labels,) int64 in [0, n_clusters); sizes differ by at most 1.

    Recursive balanced 2-means on L2-normalised rows: a node owning clusters [a, b) splits into
    [a, mid) and [mid, b), the left side taking exactly the items those clusters should hold.
    """
    n_labels = label_repr.shape[0]
    if not 1 <= n_clusters <= max(n_labels, 1):
        raise ValueError(f"n_clusters={n_clusters}: must be in [1, n_labels={n_labels}]")
    x = normalize_rows(sp.csr_matrix(label_repr) if sp.issparse(label_repr) else label_repr)
    sizes = cluster_sizes(n_labels, n_clusters)
    starts = np.concatenate([[0], np.cumsum(sizes)])  # items before cluster j
    rng = np.random.default_rng(seed)
    assignment = np.zeros(n_labels, dtype=np.int64)
    stack = [(np.arange(n_labels), 0, n_clusters)]  # (item ids, first cluster, end cluster)
    while stack:
        items, a, b = stack.pop()
        if b - a == 1:
            assignment[items] = a
            continue
        mid = (a + b) // 2
        n_left = int(starts[mid] - starts[a])
        left = _two_means(x[items], n_left, rng, n_iter)
        stack.append((items[~left], mid, b))
        stack.append((items[left], a, mid))
    return assignment
