"""Format readers, directory detection, label vocabularies and stats, on tiny files and the real data."""

from __future__ import annotations

import gzip
import json
import lzma
from pathlib import Path

import numpy as np
import pytest

from xmcfit.data import LabelVocab, available_splits, compute_stats, eval_split, load_split
from xmcfit.errors import XmcfitError

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is absent")

XMC_BODY = "3 4 5\n0,2 0:1 3:0.5\n 1:2\n4 2:1\n"


def _write(path: Path, text: str) -> Path:
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    elif path.suffix == ".xz":
        with lzma.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("suffix", ["", ".gz", ".xz"])
def test_xmc_text_reader_parses_labels_features_and_empty_label_field(tmp_path, suffix):
    _write(tmp_path / f"toy_train.txt{suffix}", XMC_BODY)
    ds = load_split(tmp_path, "train")
    assert (ds.kind, ds.n_points, ds.n_features, ds.n_labels) == ("bow", 3, 4, 5)
    assert [list(l) for l in ds.label_lists()] == [[0, 2], [], [4]]
    np.testing.assert_allclose(ds.features.toarray(), [[1, 0, 0, 0.5], [0, 2, 0, 0], [0, 0, 1, 0]])
    assert ds.features.dtype == np.float32 and ds.labels.dtype == np.float32


def test_xmc_text_limit_reads_only_first_points(tmp_path):
    _write(tmp_path / "toy_train.txt", XMC_BODY)
    assert load_split(tmp_path, limit=2).n_points == 2


@pytest.mark.parametrize(
    "body, line, problem",
    [
        ("3 4 5\n0 0:1\n", ":1:", "header says n_points=3 but the file has 1"),
        ("2 4 5\n0 0:1\n1 1:1\n2 2:1\n", ":4:", "more records than the header"),
        ("1 4 5\n7 0:1\n", ":2:", "label id 7 outside [0, 5)"),
        ("1 4 5\n0 9:1\n", ":2:", "feature '9:1'"),
        ("1 4 5\n0 1\n", ":2:", "feature '1'"),
        ("1 4 5\nx 1:1\n", ":2:", "malformed record"),
        ("1 4\n", ":1:", "header"),
    ],
)
def test_xmc_text_errors_name_file_line_and_problem(tmp_path, body, line, problem):
    path = _write(tmp_path / "toy_train.txt", body)
    with pytest.raises(XmcfitError) as err:
        load_split(path)
    message = str(err.value)
    assert "\n" not in message and str(path) + line in message and problem in message


def test_xmc_text_uses_label_names_when_counts_match(tmp_path):
    _write(tmp_path / "toy_train.txt", XMC_BODY)
    (tmp_path / "label_names.txt").write_text("a\nb\nc\nd\ne\n")
    assert load_split(tmp_path).label_names == ["a", "b", "c", "d", "e"]


def _text_pair(directory: Path, split: str, texts: list[str], labels: list[str], suffix: str = "") -> None:
    _write(directory / f"{split}_texts.txt{suffix}", "\n".join(texts) + "\n")
    _write(directory / f"{split}_labels.txt{suffix}", "\n".join(labels) + "\n")


@pytest.mark.parametrize("suffix", ["", ".gz", ".xz"])
def test_text_pair_builds_vocab_from_train_and_drops_unseen_test_labels(tmp_path, suffix):
    _text_pair(tmp_path, "train", ["a b", "c", "d e f"], ["x y", "", "y z"], suffix)
    _text_pair(tmp_path, "test", ["g", "h"], ["z w", "q"], suffix)
    train = load_split(tmp_path, "train")
    assert train.label_vocab.keys == ("x", "y", "z") and train.texts == ["a b", "c", "d e f"]
    assert [list(l) for l in train.label_lists()] == [[0, 1], [], [1, 2]]
    test = load_split(tmp_path, "test")  # no vocabulary passed: rebuilt from the train split
    assert [list(l) for l in test.label_lists()] == [[2], []] and test.n_dropped_labels == 2
    assert available_splits(tmp_path) == ["test", "train"] and eval_split(tmp_path) == "test"


def test_text_pair_integer_keys_sort_numerically(tmp_path):
    _text_pair(tmp_path, "train", ["a", "b"], ["10 2", "1"])
    assert load_split(tmp_path).label_vocab.keys == ("1", "2", "10")


def test_text_pair_label_names_file_is_the_vocabulary(tmp_path):
    _text_pair(tmp_path, "train", ["a"], ["beta"])
    (tmp_path / "label_names.txt").write_text("alpha\nbeta\ngamma\n")
    ds = load_split(tmp_path)
    assert ds.n_labels == 3 and [list(l) for l in ds.label_lists()] == [[1]]


def test_text_pair_misaligned_files_fail_with_file_and_line(tmp_path):
    _text_pair(tmp_path, "train", ["a", "b", "c"], ["x", "y"])
    with pytest.raises(XmcfitError, match=r"train_labels\.txt:3: ends before train_texts\.txt"):
        load_split(tmp_path)


def test_label_vocab_round_trips_through_json(tmp_path):
    vocab = LabelVocab(keys=("3", "4"), names=("adhesive", "state trading"))
    vocab.save(tmp_path / "vocab.json")
    assert LabelVocab.load(tmp_path / "vocab.json") == vocab
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(XmcfitError, match="bad.json: not a label vocabulary"):
        LabelVocab.load(tmp_path / "bad.json")


@pytest.mark.parametrize("name", ["trn.json.gz", "train.jsonl", "train.jsonl.xz"])
def test_jsonl_detects_lf_style_fields(tmp_path, name):
    records = [{"uid": 1, "title": "red shoe", "content": "nice", "target_ind": [3, 1]},
               {"uid": 2, "title": "blue hat", "content": "", "target_ind": []}]
    _write(tmp_path / name, "\n".join(json.dumps(r) for r in records) + "\n")
    ds = load_split(tmp_path, "train")
    assert ds.texts == ["red shoe\nnice", "blue hat\n"]
    assert ds.label_vocab.keys == ("1", "3") and [list(l) for l in ds.label_lists()] == [[0, 1], []]


def test_jsonl_eurlex_style_uses_labels_tsv_and_joins_main_body(tmp_path):
    rec = {"title": "T", "header": "H", "recitals": "R", "main_body": ["a", "b"], "concepts": ["4", "99"]}
    _write(tmp_path / "dev.jsonl", json.dumps(rec) + "\n")
    (tmp_path / "labels.tsv").write_text("label_index\tconcept_id\tlabel\n0\t3\tadhesive\n1\t4\tState trading\n")
    ds = load_split(tmp_path, "dev")
    assert ds.texts == ["T\nH\nR\na\nb"] and ds.label_names == ["adhesive", "State trading"]
    assert [list(l) for l in ds.label_lists()] == [[1]] and ds.n_dropped_labels == 1
    assert eval_split(tmp_path) == "dev"


def test_jsonl_custom_fields_and_errors(tmp_path):
    _write(tmp_path / "train.jsonl", '{"body": "x", "tags": ["a"]}\n{"body": "y"}\n')
    ds = load_split(tmp_path, limit=1, text_fields=["body"], label_field="tags")
    assert ds.texts == ["x"]
    with pytest.raises(XmcfitError, match=r"train\.jsonl:2: missing label field 'tags'"):
        load_split(tmp_path, text_fields=["body"], label_field="tags")
    with pytest.raises(XmcfitError, match=r"train\.jsonl:1: no 'target_ind' or 'concepts' field"):
        load_split(tmp_path)
    _write(tmp_path / "train.jsonl", "{not json\n")
    with pytest.raises(XmcfitError, match=r"train\.jsonl:1: invalid JSON"):
        load_split(tmp_path)


def test_directory_detection_errors_are_one_line(tmp_path):
    with pytest.raises(XmcfitError, match="no dataset files found; looked for") as err:
        load_split(tmp_path)
    assert "\n" not in str(err.value)
    _write(tmp_path / "toy_train.txt", XMC_BODY)
    with pytest.raises(XmcfitError, match="no test split"):
        load_split(tmp_path, "test")
    with pytest.raises(XmcfitError, match="no test or dev split"):
        eval_split(tmp_path)
    _write(tmp_path / "train.jsonl", "{}\n")
    with pytest.raises(XmcfitError, match="ambiguous dataset directory"):
        load_split(tmp_path)


def test_stats_count_labels_and_lengths(tmp_path):
    _text_pair(tmp_path, "train", ["a b", "c", "d e f"], ["x y", "", "y"])
    stats = compute_stats(load_split(tmp_path))
    assert (stats.n_points, stats.n_labels, stats.n_labels_used) == (3, 2, 2)
    assert stats.avg_labels_per_point == pytest.approx(1.0) and stats.avg_points_per_label == pytest.approx(1.5)
    assert stats.avg_input_length == pytest.approx(2.0) and stats.n_points_without_labels == 1
    assert stats.label_freq_quantiles["q100"] == 2.0


@needs_shared
def test_bibtex_counts_match_source():
    train = load_split(SHARED_DATA / "Bibtex", "train")
    assert (train.n_points, train.n_features, train.n_labels) == (4880, 1836, 159)
    assert train.label_names[134] == "TAG_statphys23"
    assert compute_stats(train).avg_labels_per_point == pytest.approx(2.380, abs=1e-3)
    assert load_split(SHARED_DATA / "Bibtex", "test").n_points == 2515


@needs_shared
def test_delicious_counts_match_source():
    stats = compute_stats(load_split(SHARED_DATA / "Delicious", "train"))
    assert (stats.n_points, stats.n_features, stats.n_labels, stats.n_points_without_labels) == (12920, 500, 983, 10)
    assert stats.avg_labels_per_point == pytest.approx(19.047, abs=1e-3)


@needs_shared
def test_eurlex57k_dev_loads_with_limit_and_fixed_vocabulary():
    ds = load_split(SHARED_DATA / "EURLEX57K", "dev", limit=200)
    assert ds.kind == "text" and ds.n_points == 200 and ds.n_labels == 4271
    assert ds.texts[0].startswith("EEC Council: Decision") and ds.n_dropped_labels == 0
    assert available_splits(SHARED_DATA / "EURLEX57K") == ["dev", "train"]
    assert eval_split(SHARED_DATA / "EURLEX57K") == "dev"
