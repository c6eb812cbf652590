"""What predicting returns: top-k label ids and scores as NumPy arrays, with the named, per-input view
(lists of LabelScore) that tables and JSON lines show."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LabelScore:
    """One predicted label: its id, display name when known, the model's score (a margin for squared-hinge
    runs, a logit for BCE runs) and, when asked for on a BCE run, sigmoid(score) as `probability`."""

    index: int
    name: str | None
    score: float
    probability: float | None = None


@dataclass(frozen=True, eq=False)
class Predictions:
    """Top-k labels of n inputs, best first. A sequence too: `predictions[i]` is input i's list of
    LabelScore, so `for labels in predictions` reads as before arrays existed."""

    ids: np.ndarray
    """Label ids (n_inputs, k) int64; k is min(k asked, the run's labels)."""
    scores: np.ndarray
    """Scores (n_inputs, k) float32: margins (squared-hinge runs) or logits (BCE runs)."""
    names: np.ndarray | None
    """Label names (n_inputs, k) object (str), or None when the run has no names."""
    probabilities: np.ndarray | None = None
    """sigmoid(scores) (n_inputs, k) float64 when asked for (BCE runs), else None."""

    @classmethod
    def from_arrays(cls, ids: np.ndarray, scores: np.ndarray, label_names: list[str] | None,
                    probabilities: bool = False) -> Predictions:
        """Arrays from the scorer, with names looked up by id and, when asked, sigmoid(scores)."""
        names = np.asarray(label_names, dtype=object)[ids] if label_names is not None else None
        probs = 1.0 / (1.0 + np.exp(-scores.astype(np.float64))) if probabilities else None
        return cls(ids.astype(np.int64), scores.astype(np.float32), names, probs)

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def __getitem__(self, row: int) -> list[LabelScore]:
        return [LabelScore(int(i), str(self.names[row, col]) if self.names is not None else None, float(s),
                           float(self.probabilities[row, col]) if self.probabilities is not None else None)
                for col, (i, s) in enumerate(zip(self.ids[row], self.scores[row]))]

    def __iter__(self) -> Iterator[list[LabelScore]]:
        return (self[row] for row in range(len(self)))

    def __eq__(self, other: object) -> bool:
        """Equal to Predictions with the same arrays, or to a list of each input's LabelScore lists (what
        predict returned before arrays, so `predictions == expected_lists` keeps working)."""
        if isinstance(other, Predictions):
            pairs = [(self.ids, other.ids), (self.scores, other.scores), (self.names, other.names),
                     (self.probabilities, other.probabilities)]
            return all((a is None and b is None) or (a is not None and b is not None and np.array_equal(a, b))
                       for a, b in pairs)
        if isinstance(other, (list, tuple)):
            return self.as_lists() == [list(labels) for labels in other]
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  (mutable arrays inside: not hashable, like a list)

    def as_lists(self) -> list[list[LabelScore]]:
        """Each input's labels as LabelScore lists."""
        return list(self)
