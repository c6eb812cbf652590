"""A synthetic raw-text XMC dataset that needs no download: Zipf label frequencies, learnable words.

Each label owns a few signal words drawn from a vocabulary of pronounceable pseudo-words; a text mixes
its labels' signal words with background noise words (themselves Zipf-distributed), shuffled. Written
in the text-pair format (`{split}_texts.txt`, `{split}_labels.txt`, `label_names.txt`). Label ids are
popularity ranks: label 0 is the most frequent. Deterministic for a seed.

Default size (4,000 train / 1,000 test points, 500 labels, 16 words per text, about 30-40 MiniLM
word pieces) is meant for a plan -> train -> eval demo of a few CPU minutes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xmcfit.errors import XmcfitError

log = logging.getLogger(__name__)

_CONSONANTS = tuple("bdfgklmnprstvz")
_VOWELS = tuple("aeiou")


@dataclass(frozen=True)
class SynthConfig:
    """Size and shape of a synthetic dataset; every field is validated in __post_init__."""

    n_train: int = 4000
    n_test: int = 1000
    n_labels: int = 500
    seed: int = 0
    label_zipf_exponent: float = 1.0
    """Label popularity p_l ∝ (l + 1)^-exponent."""
    mean_labels_per_point: float = 3.0
    """1 + Poisson(mean - 1), capped at max_labels_per_point."""
    max_labels_per_point: int = 8
    words_per_text: int = 16
    signal_words_per_label: int = 3
    """Distinct words owned by each label."""
    signal_tokens_per_label: int = 2
    """Occurrences of a label's signal words in each of its texts."""
    n_noise_words: int = 2000

    def __post_init__(self) -> None:
        for name in ("n_train", "n_test", "n_labels", "words_per_text", "signal_words_per_label",
                     "signal_tokens_per_label", "n_noise_words", "max_labels_per_point"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: must be >= 1")
        if not 1.0 <= self.mean_labels_per_point <= self.max_labels_per_point:
            raise ValueError(f"mean_labels_per_point={self.mean_labels_per_point}: must be in [1, max_labels_per_point]")
        if self.max_labels_per_point > self.n_labels:
            object.__setattr__(self, "max_labels_per_point", self.n_labels)
        if self.label_zipf_exponent < 0:
            raise ValueError(f"label_zipf_exponent={self.label_zipf_exponent}: must be >= 0")


def check_empty_target(out_dir: Path) -> None:
    """One XmcfitError line unless `out_dir` is new or an empty directory (checked before anything is written)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise XmcfitError(f"{out_dir}: is a file, not a directory; choose a new directory for the dataset")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        raise XmcfitError(f"{out_dir}: not empty; `xmcfit data synth` writes only into a new or empty directory "
                          "and never overwrites files")


def pseudo_words(n_words: int, rng: np.random.Generator) -> list[str]:
    """`n_words` distinct pronounceable words of 2-4 consonant-vowel syllables."""
    words: dict[str, None] = {}
    while len(words) < n_words:
        batch = n_words - len(words)
        n_syll = rng.integers(2, 5, size=batch)
        cons = rng.integers(0, len(_CONSONANTS), size=(batch, 4))
        vows = rng.integers(0, len(_VOWELS), size=(batch, 4))
        for i in range(batch):
            word = "".join(_CONSONANTS[cons[i, j]] + _VOWELS[vows[i, j]] for j in range(n_syll[i]))
            words.setdefault(word, None)
    return list(words)[:n_words]


def _sample_split(cfg: SynthConfig, n_points: int, signal: np.ndarray, noise: list[str],
                  signal_words: list[str], rng: np.random.Generator) -> tuple[list[str], list[np.ndarray]]:
    label_p = (np.arange(1, cfg.n_labels + 1, dtype=np.float64)) ** -cfg.label_zipf_exponent
    label_p /= label_p.sum()
    noise_p = (np.arange(1, len(noise) + 1, dtype=np.float64)) ** -1.0
    noise_p /= noise_p.sum()
    n_per_point = np.minimum(1 + rng.poisson(cfg.mean_labels_per_point - 1, size=n_points), cfg.max_labels_per_point)
    texts, label_sets = [], []
    for n_pos in n_per_point:
        labels = np.sort(rng.choice(cfg.n_labels, size=n_pos, replace=False, p=label_p))
        picks = rng.integers(0, cfg.signal_words_per_label, size=(n_pos, cfg.signal_tokens_per_label))
        tokens = [signal_words[w] for w in signal[labels[:, None], picks].ravel()]  # (n_pos * tokens_per_label,)
        n_noise = max(cfg.words_per_text - len(tokens), 0)
        tokens += [noise[w] for w in rng.choice(len(noise), size=n_noise, p=noise_p)]
        rng.shuffle(tokens)
        texts.append(" ".join(tokens))
        label_sets.append(labels)
    return texts, label_sets


def write_synthetic(
    out_dir: str | Path,
    n_train: int = 4000,
    n_test: int = 1000,
    n_labels: int = 500,
    seed: int = 0,
    **shape: float,
) -> SynthConfig:
    """Write a synthetic text-pair dataset into `out_dir` (created; an existing one must be empty, so no
    file of the user's is ever overwritten); returns the resolved SynthConfig.

    `shape` takes the other SynthConfig fields (words_per_text, label_zipf_exponent, ...).
    """
    check_empty_target(Path(out_dir))
    cfg = SynthConfig(n_train=n_train, n_test=n_test, n_labels=n_labels, seed=seed, **shape)  # type: ignore[arg-type]
    rng = np.random.default_rng(cfg.seed)
    n_signal = cfg.n_labels * cfg.signal_words_per_label
    words = pseudo_words(n_signal + cfg.n_noise_words, rng)
    signal_words, noise = words[:n_signal], words[n_signal:]
    signal = np.arange(n_signal).reshape(cfg.n_labels, cfg.signal_words_per_label)  # (n_labels, words) word ids
    # A label is named after its first signal word, so predictions read naturally in demos.
    label_names = [signal_words[signal[i, 0]] for i in range(cfg.n_labels)]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "label_names.txt").write_text("\n".join(label_names) + "\n", encoding="utf-8")
    for split, n_points in (("train", cfg.n_train), ("test", cfg.n_test)):
        texts, label_sets = _sample_split(cfg, n_points, signal, noise, signal_words, rng)
        (out / f"{split}_texts.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
        (out / f"{split}_labels.txt").write_text(
            "\n".join(" ".join(label_names[i] for i in labels) for labels in label_sets) + "\n", encoding="utf-8")
    log.info("wrote synthetic dataset to %s: %d/%d points, %d labels", out, cfg.n_train, cfg.n_test, cfg.n_labels)
    return cfg
