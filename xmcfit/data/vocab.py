"""LabelVocab: the fixed mapping between label keys as they appear in data files and 0-based label ids.

Saved next to a trained model (JSON) so dev/test/predict map labels exactly as training did.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from xmcfit.errors import XmcfitError

VOCAB_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class LabelVocab:
    """Label keys (as written in the data, e.g. EUROVOC concept ids) and display names, by label id."""

    keys: tuple[str, ...]
    """keys[i] is the token that denotes label i in the data files; unique."""
    names: tuple[str, ...] | None = None
    """Human-readable names by label id (None: the keys are the names)."""
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "keys", tuple(self.keys))
        if self.names is not None:
            object.__setattr__(self, "names", tuple(self.names))
            if len(self.names) != len(self.keys):
                raise ValueError(f"names has {len(self.names)} entries: must match keys ({len(self.keys)})")
        index = {key: i for i, key in enumerate(self.keys)}
        if len(index) != len(self.keys):
            raise ValueError("keys: must be unique")
        object.__setattr__(self, "_index", index)

    def __len__(self) -> int:
        return len(self.keys)

    def id_of(self, key: str) -> int | None:
        """Label id for a key, or None when the key is not in the vocabulary."""
        return self._index.get(key)

    def display_names(self) -> list[str]:
        return list(self.names if self.names is not None else self.keys)

    @classmethod
    def from_keys(cls, keys: set[str] | list[str]) -> LabelVocab:
        """Vocabulary over distinct keys: numeric order when every key is an integer, else lexicographic."""
        unique = set(keys)
        if all(k.isdigit() for k in unique):
            ordered = sorted(unique, key=int)
        else:
            ordered = sorted(unique)
        return cls(keys=tuple(ordered))

    def save(self, path: str | Path) -> None:
        payload = {"schema_version": VOCAB_SCHEMA_VERSION, "keys": list(self.keys),
                   "names": list(self.names) if self.names is not None else None}
        Path(path).write_text(json.dumps(payload), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> LabelVocab:
        path = Path(path)
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
            version = payload["schema_version"]
            keys, names = payload["keys"], payload["names"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise XmcfitError(f"{path}: not a label vocabulary file ({exc})") from exc
        if version != VOCAB_SCHEMA_VERSION:
            raise XmcfitError(f"{path}: label vocabulary schema_version={version}, expected {VOCAB_SCHEMA_VERSION}")
        return cls(keys=tuple(keys), names=tuple(names) if names is not None else None)
