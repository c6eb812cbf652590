"""The TF-IDF side of the input: a word vocabulary fitted on the training texts, term counts, and the
fixed fan-in pattern of the TF-IDF scorer chosen from the training labels.

Text runs tokenise with lower-cased `\\w\\w+` runs (the tokenizer of the TF-IDF peers in bench/peers.py),
keep the words of at least `min_df` training documents, the `max_words` most frequent by document
frequency; the vocabulary is saved in the run directory (tfidf_vocab.json) so eval and predict map words
exactly as training did. Bag-of-words runs use their feature columns as the words. Pure numpy/scipy.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from xmcfit.errors import XmcfitError

TOKEN = re.compile(r"\w\w+")
WORDS_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class WordVocab:
    """Words (column order) of the TF-IDF side of a text run."""

    words: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "_column", {w: i for i, w in enumerate(self.words)})

    def __len__(self) -> int:
        return len(self.words)

    @classmethod
    def fit(cls, texts: Sequence[str], max_words: int, min_df: int = 2) -> "WordVocab":
        """The words in >= min_df of `texts`, at most `max_words`, most frequent (by documents) first."""
        df: dict[str, int] = {}
        for text in texts:
            for token in set(TOKEN.findall(text.lower())):
                df[token] = df.get(token, 0) + 1
        kept = sorted((t for t, n in df.items() if n >= min_df), key=lambda t: (-df[t], t))[:max_words]
        if not kept:
            raise XmcfitError(f"no word occurs in {min_df} or more training texts: the TF-IDF side has no "
                              "vocabulary; plan with --no-tfidf")
        return cls(tuple(kept))

    def counts(self, texts: Sequence[str]) -> sp.csr_matrix:
        """(n_texts, n_words) float32 CSR of term counts; words outside the vocabulary are dropped."""
        column = self._column  # type: ignore[attr-defined]
        indices: list[int] = []
        indptr = [0]
        for text in texts:
            indices.extend(i for t in TOKEN.findall(text.lower()) if (i := column.get(t)) is not None)
            indptr.append(len(indices))
        x = sp.csr_matrix((np.ones(len(indices), dtype=np.float32), np.asarray(indices, dtype=np.int32),
                           np.asarray(indptr, dtype=np.int64)), shape=(len(texts), len(self.words)))
        x.sum_duplicates()
        return x

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"schema_version": WORDS_SCHEMA_VERSION, "words": list(self.words)}),
                              encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "WordVocab":
        path = Path(path)
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
            version, words = payload["schema_version"], payload["words"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise XmcfitError(f"{path}: not a TF-IDF vocabulary file ({type(exc).__name__})") from None
        if version != WORDS_SCHEMA_VERSION or not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise XmcfitError(f"{path}: not a TF-IDF vocabulary of schema {WORDS_SCHEMA_VERSION}")
        return cls(tuple(words))


def smooth_idf(counts: sp.csr_matrix) -> np.ndarray:
    """ln((1 + N) / (1 + df)) + 1 per column of (N, n_words) counts, float32 (n_words,)."""
    df = np.bincount(counts.indices, minlength=counts.shape[1])
    return (np.log((1.0 + counts.shape[0]) / (1.0 + df)) + 1.0).astype(np.float32)


def tfidf_rows(counts: sp.csr_matrix, idf: np.ndarray) -> sp.csr_matrix:
    """Sublinear tf (1 + ln c for counts >= 1, the value itself below 1) x idf, rows L2-normalised: the
    transform xmcfit.model.TfidfScorer applies to a batch, here for a whole split (float32 CSR)."""
    x = sp.csr_matrix(counts, dtype=np.float32, copy=True)
    x.data = np.where(x.data >= 1.0, 1.0 + np.log(np.maximum(x.data, 1.0)), x.data).astype(np.float32)
    x.data *= idf[x.indices]
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
    x.data /= np.repeat(np.maximum(norms, 1e-12), np.diff(x.indptr)).astype(np.float32)
    return x


def label_centroids(tfidf: sp.csr_matrix, labels: sp.csr_matrix) -> sp.csr_matrix:
    """(n_labels, n_words) float32 CSR: each label's sum of its training TF-IDF rows, from which the TF-IDF
    side's pattern (label_word_pattern) and starting values (label_word_values) are both read."""
    return sp.csr_matrix(labels.T.tocsr().astype(np.float32) @ tfidf)


def label_word_pattern(centroid: sp.csr_matrix, fan_in: int, seed: int) -> np.ndarray:
    """(n_labels, fan_in) int64 word columns per label, sorted and distinct within a row: the `fan_in`
    words of largest weight in the label's `centroid` row (label_centroids); a label with fewer words
    (or none) is filled with uniformly random other words (their weights start at 0 and learn like any).

    Random words over a vocabulary of 10^4-10^5 rarely meet a label's documents, which is why the
    TF-IDF scorer's pattern is chosen from the data and not by SET's random regrowth (bench/RESULTS.md).
    """
    n_labels, n_words = centroid.shape
    if not 1 <= fan_in <= n_words:
        raise ValueError(f"fan_in={fan_in}: must be in [1, {n_words}]")
    rng = np.random.default_rng(seed)
    out = np.empty((n_labels, fan_in), dtype=np.int64)
    for label in range(n_labels):
        lo, hi = centroid.indptr[label], centroid.indptr[label + 1]
        cols, weights = centroid.indices[lo:hi], centroid.data[lo:hi]
        if len(cols) >= fan_in:
            chosen = cols[np.argpartition(-weights, fan_in - 1)[:fan_in]]
        else:
            chosen = np.concatenate([cols, _other_columns(rng, n_words, cols, fan_in - len(cols))])
        out[label] = np.sort(chosen)
    return out


def label_word_values(centroid: sp.csr_matrix, pattern: np.ndarray, scale: float) -> np.ndarray:
    """(n_labels, fan_in) float32 starting values of the TF-IDF scorer at `pattern`: each label's `centroid`
    row (label_centroids), L2-normalised, times `scale` (0 where the pattern holds a random filler word).

    A label then starts as the cosine of the input with its centroid, scaled: a nearest-centroid ranker the
    scorer refines, which the planner's few epochs at a small batch reach far sooner than from zeros
    (EURLEX57K titles, 5 epochs, batch 32 beside frozen features: P@1 +1.5, bench/RESULTS.md).
    """
    norms = np.sqrt(np.asarray(centroid.multiply(centroid).sum(axis=1))).ravel()
    rows = np.repeat(np.arange(pattern.shape[0]), pattern.shape[1])
    values = np.asarray(centroid[rows, pattern.ravel()]).reshape(pattern.shape)
    return (values * (scale / np.maximum(norms, 1e-12))[:, None]).astype(np.float32)


def _other_columns(rng: np.random.Generator, n_words: int, taken: np.ndarray, n: int) -> np.ndarray:
    """`n` distinct random columns of range(n_words) not in `taken`."""
    free = np.setdiff1d(np.arange(n_words), taken, assume_unique=False) if n_words <= 4 * (n + len(taken)) else None
    if free is not None:
        return rng.choice(free, size=n, replace=False)
    picked: set[int] = set()
    blocked = set(taken.tolist())
    while len(picked) < n:
        for c in rng.integers(0, n_words, size=2 * n).tolist():
            if c not in blocked and c not in picked and len(picked) < n:
                picked.add(c)
    return np.fromiter(picked, dtype=np.int64, count=n)
