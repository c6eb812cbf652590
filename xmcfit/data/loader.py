"""Finding and loading dataset splits: format auto-detection in a directory, label vocabularies, limits.

Directory conventions (exactly one format per directory; compressed variants .gz/.xz/.bz2 allowed):
  1. XMC repository text format: `<name>_train.txt`, `<name>_test.txt` (bag-of-words); label names from
     `label_names.txt` (one per line, by id) when present.
  2. Raw text: `{split}_texts.txt` + `{split}_labels.txt`, line-aligned, labels space-separated keys.
  3. JSON lines: `{split}.jsonl` / `{split}.json` (LF-* style `title`/`content` + `target_ind`, or
     EURLEX57K style `title`,`header`,`recitals`,`main_body` + `concepts`; fields configurable).
Split aliases: train = trn, test = tst, dev = val = valid.
For formats 2 and 3 label keys map to ids through a LabelVocab taken from, in order: the `label_vocab`
argument, `labels.tsv` (columns label_index, concept_id, label), `label_names.txt` (keys are the names),
or else built from the training split. Keys absent from the vocabulary are dropped and counted in
XMCDataset.n_dropped_labels (and logged).
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Sequence
from pathlib import Path

from xmcfit.data.dataset import XMCDataset, labels_csr
from xmcfit.data.io import open_text, read_text_file, strip_compression
from xmcfit.data.raw_text import read_jsonl, read_label_keys, read_text_pair
from xmcfit.data.vocab import LabelVocab
from xmcfit.data.xmc_text import read_xmc_text
from xmcfit.errors import XmcfitError

log = logging.getLogger(__name__)

SPLIT_ALIASES = {"train": ("train", "trn"), "test": ("test", "tst"), "dev": ("dev", "val", "valid")}
_ALIAS_TO_SPLIT = {alias: split for split, aliases in SPLIT_ALIASES.items() for alias in aliases}
_ALIAS_RE = "|".join(_ALIAS_TO_SPLIT)
_PATTERNS = {
    "xmc-text": re.compile(rf"^.+_({_ALIAS_RE})\.txt$"),
    "text-pair": re.compile(rf"^({_ALIAS_RE})_texts\.txt$"),
    "jsonl": re.compile(rf"^({_ALIAS_RE})\.jsonl?$"),
}
_LOOKED_FOR = "<name>_{train,test}.txt (XMC text), {split}_texts.txt + {split}_labels.txt, {split}.jsonl / .json (optionally .gz/.xz/.bz2)"


def _classify(path: Path) -> tuple[str, str] | None:
    """(format, canonical split) for a data file name, or None."""
    base = strip_compression(path.name)
    for fmt, pattern in _PATTERNS.items():
        match = pattern.match(base)
        if match:
            return fmt, _ALIAS_TO_SPLIT[match.group(1)]
    return None


def _scan(directory: Path) -> tuple[str, dict[str, Path]]:
    """The single format found in `directory` and its split -> file map (texts file for text-pair)."""
    if not directory.is_dir():
        raise XmcfitError(f"{directory}: no such file or directory")
    found: dict[str, dict[str, list[Path]]] = {}
    for path in sorted(directory.iterdir()):
        if path.is_file() and (hit := _classify(path)):
            found.setdefault(hit[0], {}).setdefault(hit[1], []).append(path)
    if not found:
        raise XmcfitError(f"{directory}: no dataset files found; looked for {_LOOKED_FOR}")
    if len(found) > 1:
        raise XmcfitError(f"{directory}: ambiguous dataset directory, it holds several formats ({', '.join(sorted(found))}); pass a file path")
    fmt, splits = next(iter(found.items()))
    for split, paths in splits.items():
        if len(paths) > 1:
            raise XmcfitError(f"{directory}: ambiguous {split} split: {', '.join(p.name for p in paths)}")
    return fmt, {split: paths[0] for split, paths in splits.items()}


def _labels_path(texts_path: Path) -> Path:
    """The `{split}_labels.txt[.comp]` partner of a `{split}_texts.txt[.comp]` file."""
    candidate = texts_path.with_name(texts_path.name.replace("_texts.txt", "_labels.txt", 1))
    if candidate.exists():
        return candidate
    prefix = strip_compression(candidate.name)
    for other in sorted(texts_path.parent.glob(prefix + "*")):
        if strip_compression(other.name) == prefix:
            return other
    raise XmcfitError(f"{texts_path}: missing the line-aligned labels file {prefix}")


def available_splits(path: str | Path) -> list[str]:
    """Canonical split names ('train', 'dev', 'test') present in a dataset directory (a file: its split)."""
    path = Path(path)
    if path.is_file():
        hit = _classify(path)
        return [hit[1]] if hit else []
    return sorted(_scan(path)[1])


def eval_split(path: str | Path) -> str:
    """The split to evaluate on: 'test' if present, else 'dev'."""
    splits = available_splits(path)
    for split in ("test", "dev"):
        if split in splits:
            return split
    raise XmcfitError(f"{path}: no test or dev split (found: {', '.join(splits) or 'none'})")


def _vocab_file(directory: Path) -> LabelVocab | None:
    """Fixed vocabulary from labels.tsv or label_names.txt in `directory`, if either exists."""
    tsv = directory / "labels.tsv"
    if tsv.exists():
        rows = list(csv.DictReader(io.StringIO(read_text_file(tsv), newline=""), delimiter="\t"))
        if not rows or not {"label_index", "concept_id", "label"} <= set(rows[0]):
            raise XmcfitError(f"{tsv}:1: expected columns label_index, concept_id, label")
        bad = next((n for n, r in enumerate(rows, start=2) if not str(r["label_index"]).strip().isdecimal()), None)
        if bad is not None:
            raise XmcfitError(f"{tsv}:{bad}: label_index must be a whole number")
        rows.sort(key=lambda r: int(r["label_index"]))
        if [int(r["label_index"]) for r in rows] != list(range(len(rows))):
            raise XmcfitError(f"{tsv}: label_index must run 0..{len(rows) - 1} without gaps")
        return LabelVocab(keys=tuple(r["concept_id"] for r in rows), names=tuple(r["label"] for r in rows))
    names = directory / "label_names.txt"
    if names.exists():
        keys = [line.strip() for line in read_text_file(names).splitlines() if line.strip()]
        if len(set(keys)) != len(keys):
            raise XmcfitError(f"{names}: label names must be unique to serve as label keys")
        return LabelVocab(keys=tuple(keys))
    return None


def _to_ids(keys: list[list[str]], vocab: LabelVocab, source: Path) -> tuple[list[list[int]], int]:
    ids: list[list[int]] = []
    n_dropped = 0
    for point_keys in keys:
        mapped = [vocab.id_of(k) for k in point_keys]
        kept = [i for i in mapped if i is not None]
        n_dropped += len(mapped) - len(kept)
        ids.append(kept)
    if n_dropped:
        log.info("%s: dropped %d label occurrences not in the label vocabulary", source, n_dropped)
    return ids, n_dropped


def _load_xmc_text(path: Path, limit: int | None, train_path: Path | None = None) -> XMCDataset:
    """An XMC-text split; a headerless one (sizes inferred) is widened to its training split's sizes."""
    split = read_xmc_text(path, limit=limit)
    if not split.has_header and train_path is not None:
        train = read_xmc_text(train_path)
        split = split.widened(train.n_features, train.n_labels)
    label_names = None
    names_file = path.parent / "label_names.txt"
    if names_file.exists():
        names = read_text_file(names_file).splitlines()
        if len(names) == split.n_labels:
            label_names = names
        else:
            log.warning("%s has %d lines but %s has %d labels: ignoring it", names_file, len(names), path, split.n_labels)
    return XMCDataset(texts=None, features=split.features, labels=split.labels, n_labels=split.n_labels,
                      n_features=split.n_features, label_names=label_names, source=str(path))


def _read_keyed(fmt: str, path: Path, text_fields, label_field, limit, labels_only=False):
    if fmt == "text-pair":
        if labels_only:
            return [], read_label_keys(_labels_path(path))
        return read_text_pair(path, _labels_path(path), limit=limit)
    return read_jsonl(path, text_fields=text_fields, label_field=label_field, limit=limit, labels_only=labels_only)


def load_split(
    path: str | Path,
    split: str = "train",
    *,
    text_fields: Sequence[str] | None = None,
    label_field: str | None = None,
    label_vocab: LabelVocab | None = None,
    limit: int | None = None,
) -> XMCDataset:
    """Load one split from a dataset directory (auto-detected format) or a single data file.

    `limit` reads only the first `limit` points. With a directory, `split` picks the file (aliases
    trn/tst/val accepted); with a file path, `split` is ignored. See the module docstring for formats
    and label-vocabulary rules.
    """
    path = Path(path)
    if limit is not None and limit < 1:
        raise XmcfitError(f"limit={limit}: must be >= 1")
    canonical = _ALIAS_TO_SPLIT.get(split)
    if canonical is None:
        raise XmcfitError(f"split={split!r}: must be one of {', '.join(SPLIT_ALIASES)}")
    if path.is_file():
        hit = _classify(path)
        fmt = hit[0] if hit else ("jsonl" if ".json" in path.name else "xmc-text")
        files = {canonical: path}
    else:
        fmt, files = _scan(path)
        if canonical not in files:
            raise XmcfitError(f"{path}: no {canonical} split (found: {', '.join(sorted(files))})")
    data_path = files[canonical]
    if fmt == "xmc-text":
        ds = _load_xmc_text(data_path, limit, files.get("train") if canonical != "train" else None)
    else:
        texts, keys = _read_keyed(fmt, data_path, text_fields, label_field, limit)
        vocab = label_vocab or _vocab_file(data_path.parent)
        if vocab is None:
            if canonical == "train" or "train" not in files:
                vocab = LabelVocab.from_keys({k for point in keys for k in point})
            else:
                _, train_keys = _read_keyed(fmt, files["train"], text_fields, label_field, None, labels_only=True)
                vocab = LabelVocab.from_keys({k for point in train_keys for k in point})
        ids, n_dropped = _to_ids(keys, vocab, data_path)
        ds = XMCDataset(texts=texts, features=None, labels=labels_csr(ids, len(vocab)), n_labels=len(vocab),
                        n_features=0, label_names=vocab.display_names(), source=str(data_path),
                        label_vocab=vocab, n_dropped_labels=n_dropped)
    log.info("loaded %s: %d points, %d labels (%s)", data_path, ds.n_points, ds.n_labels, ds.kind)
    return ds
