"""Hashed TF-IDF bag-of-words point features for text datasets (used to build label representations).

Tokens are lower-cased `\\w+` runs hashed with CRC32 (stable across processes, unlike hash()) into
n_features buckets; tf is sublinear (1 + ln count), idf smooth (ln((1 + n) / (1 + df)) + 1), rows L2-normalised.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

_TOKEN = re.compile(r"\w+")


def hashed_term_counts(texts: Sequence[str], n_features: int = 2**18) -> sp.csr_matrix:
    """(n_points, n_features) float32 CSR of sublinear term frequencies 1 + ln(count) of the hashed tokens."""
    if n_features < 1:
        raise ValueError(f"n_features={n_features}: must be >= 1")
    bucket_of: dict[str, int] = {}
    indices: list[int] = []
    indptr = [0]
    for text in texts:
        for token in _TOKEN.findall(text.lower()):
            bucket = bucket_of.get(token)
            if bucket is None:
                bucket = zlib.crc32(token.encode("utf-8")) % n_features
                bucket_of[token] = bucket
            indices.append(bucket)
        indptr.append(len(indices))
    x = sp.csr_matrix(
        (np.ones(len(indices), dtype=np.float32), np.asarray(indices, dtype=np.int32), np.asarray(indptr, dtype=np.int64)),
        shape=(len(texts), n_features),
    )
    x.sum_duplicates()  # data = term counts
    x.data = 1.0 + np.log(x.data)  # sublinear tf
    return x


def text_features(texts: Sequence[str], n_features: int = 2**18) -> sp.csr_matrix:
    """(n_points, n_features) float32 CSR of L2-normalised hashed TF-IDF vectors."""
    x = hashed_term_counts(texts, n_features)
    df = np.bincount(x.indices, minlength=n_features)  # (n_features,) documents per bucket
    idf = (np.log((1.0 + x.shape[0]) / (1.0 + df)) + 1.0).astype(np.float32)
    x.data *= idf[x.indices]
    return normalize_rows(x)


def normalize_rows(x: sp.csr_matrix | np.ndarray) -> sp.csr_matrix | np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero); same kind (CSR or dense) as the input."""
    if sp.issparse(x):
        x = sp.csr_matrix(x, dtype=np.float32, copy=True)
        norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())  # (n_rows,)
        scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
        x.data *= np.repeat(scale, np.diff(x.indptr)).astype(np.float32)
        return x
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
