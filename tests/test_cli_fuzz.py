"""Property: whatever bytes a user's file holds (random ones, or random edits of a valid plan.json, data file
of each format, or predict input), the command line either does its job or says why in one `Error:` line
with exit code 2: never a traceback, and nothing written outside the run directory.

Commands run in-process through typer's CliRunner (as the other CLI tests do), with few examples, so the
whole file takes well under a minute.
"""

from __future__ import annotations

import gzip
import json
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from plan_factory import tiny_plan
from xmcfit.cli import app

runner = CliRunner()
FUZZ = settings(max_examples=12, deadline=timedelta(seconds=30), derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _edit(valid: bytes, edits: list[tuple[int, str, bytes]]) -> bytes:
    """`valid` with each edit applied: flip a byte, delete a span, insert bytes, or cut the rest off."""
    data = bytearray(valid)
    for at, kind, payload in edits:
        at = at % (len(data) + 1)
        if kind == "flip" and at < len(data):
            data[at] ^= payload[0] or 0x80
        elif kind == "delete":
            del data[at:at + len(payload)]
        elif kind == "insert":
            data[at:at] = payload
        elif kind == "truncate":
            del data[at:]
    return bytes(data)


def mutations(valid: bytes) -> st.SearchStrategy[bytes]:
    edit = st.tuples(st.integers(0, 2**16), st.sampled_from(["flip", "delete", "insert", "truncate"]),
                     st.binary(min_size=1, max_size=6))
    return st.one_of(st.binary(max_size=600), st.lists(edit, min_size=1, max_size=4).map(lambda e: _edit(valid, e)))


def _files(root: Path, skip: Path | None = None) -> dict[str, bytes]:
    """Every file under `root` (but under `skip`) with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and (skip is None or skip not in p.parents)}


def _check(result) -> None:
    """Success, or one `Error:` line and exit 2; a traceback never."""
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in (0, 2), (result.exit_code, result.output)
    if result.exit_code == 2:
        errors = [line for line in result.stderr.splitlines() if not line.startswith(("WARNING ", "INFO "))]
        assert len(errors) == 1 and errors[0].startswith("Error: "), result.stderr


# -- data files of each format, read by `xmcfit data stats` (which writes nothing) ---------------------------

def _datasets(root: Path) -> dict[str, tuple[Path, str]]:
    """A small valid dataset per format: (directory, the file to mutate)."""
    texts = [f"text {i} about topic {i % 5}" for i in range(12)]
    labels = [f"t{i % 5} t{(i + 1) % 5}" for i in range(12)]
    sets = {}
    pair = root / "pair"
    pair.mkdir()
    (pair / "train_texts.txt").write_text("\n".join(texts) + "\n")
    (pair / "train_labels.txt").write_text("\n".join(labels) + "\n")
    sets["texts"], sets["labels"] = (pair, "train_texts.txt"), (pair, "train_labels.txt")
    named = root / "named"
    shutil.copytree(pair, named)
    (named / "label_names.txt").write_text("\n".join(f"t{i}" for i in range(5)) + "\n")
    sets["label_names"] = (named, "label_names.txt")
    tsv = root / "tsv"
    shutil.copytree(pair, tsv)
    (tsv / "labels.tsv").write_text("label_index\tconcept_id\tlabel\n" + "".join(f"{i}\tt{i}\tname {i}\n" for i in range(5)))
    sets["labels_tsv"] = (tsv, "labels.tsv")
    jsonl = root / "jsonl"
    jsonl.mkdir()
    (jsonl / "train.jsonl").write_text("".join(json.dumps({"title": t, "content": t, "target_ind": [i % 5]}) + "\n"
                                               for i, t in enumerate(texts)))
    sets["jsonl"] = (jsonl, "train.jsonl")
    bow = root / "bow"
    bow.mkdir()
    lines = ["12 30 6"] + [f"{i % 6},{(i + 2) % 6} {i % 30}:1 {(i * 7) % 30}:0.5" for i in range(12)]
    (bow / "toy_train.txt").write_text("\n".join(lines) + "\n")
    sets["xmc_text"] = (bow, "toy_train.txt")
    packed = root / "packed"
    packed.mkdir()
    (packed / "toy_train.txt.gz").write_bytes(gzip.compress((bow / "toy_train.txt").read_bytes()))
    sets["xmc_text_gz"] = (packed, "toy_train.txt.gz")
    return sets


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict[str, tuple[Path, str]]:
    return _datasets(tmp_path_factory.mktemp("fuzz_data"))


@FUZZ
@given(data=st.data(), kind=st.sampled_from(["texts", "labels", "label_names", "labels_tsv", "jsonl", "xmc_text",
                                             "xmc_text_gz"]))
def test_any_bytes_in_a_data_file_give_statistics_or_one_error_line(datasets, data, kind):
    source, name = datasets[kind]
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "data"
        shutil.copytree(source, copy)
        (copy / name).write_bytes(data.draw(mutations((source / name).read_bytes()), label=name))
        before = _files(Path(tmp))
        _check(runner.invoke(app, ["data", "stats", str(copy)]))
        assert _files(Path(tmp)) == before


# -- plan.json, read by `xmcfit train` -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def train_inputs(tmp_path_factory, datasets) -> tuple[bytes, Path]:
    plan = tiny_plan("bow", 6, bow_features=30, fan_in=4, epochs=1, micro_batch=4, aux_clusters=0)
    return plan.to_json().encode(), datasets["xmc_text"][0]


@FUZZ
@given(data=st.data())
def test_any_bytes_in_plan_json_train_or_give_one_error_line_and_write_only_the_run(train_inputs, data):
    valid, bow = train_inputs
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shutil.copytree(bow, root / "data")
        (root / "plan.json").write_bytes(data.draw(mutations(valid), label="plan.json"))
        run = root / "runs" / "run"
        before = _files(root)
        _check(runner.invoke(app, ["train", str(root / "plan.json"), "--data", str(root / "data"), "--out", str(run),
                                   "--device", "cpu", "--max-steps", "1", "--save-every-minutes", "0"]))
        assert _files(root, skip=run) == before


def _leaves(data, prefix=()):
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _leaves(value, prefix + (key,))
    else:
        yield prefix


def _set(data: dict, path: tuple, value) -> dict:
    *parents, last = path
    node = data
    for key in parents:
        node = node[key]
    node[last] = value
    return data


@FUZZ
@given(data=st.data())
def test_any_value_in_any_plan_field_trains_or_gives_one_error_line(train_inputs, data):
    valid, bow = train_inputs
    raw = json.loads(valid)
    paths = sorted(_leaves(raw))
    for _ in range(data.draw(st.integers(1, 3), label="n_edits")):
        path = data.draw(st.sampled_from(paths), label="field")
        value = data.draw(st.one_of(st.sampled_from([0, -1, 1, 2, 3, 0.5, 1e308, 2**63, "x", None, True, [], {}]),
                                    st.integers(-10, 10**6), st.floats(allow_nan=True, allow_infinity=True)),
                          label="value")
        _set(raw, path, value)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shutil.copytree(bow, root / "data")
        (root / "plan.json").write_text(json.dumps(raw))
        run = root / "run"
        before = _files(root)
        _check(runner.invoke(app, ["train", str(root / "plan.json"), "--data", str(root / "data"), "--out", str(run),
                                   "--device", "cpu", "--max-steps", "1", "--save-every-minutes", "0"]))
        assert _files(root, skip=run) == before


# -- predict input, read from stdin ------------------------------------------------------------------------------

@FUZZ
@given(data=st.data())
def test_any_bytes_on_predicts_stdin_give_labels_or_one_error_line_and_write_nothing(text_run, data):
    valid = b"some text about a topic\nanother text\n"
    before = _files(text_run)
    _check(runner.invoke(app, ["predict", str(text_run), "--file", "-", "--top-k", "2"],
                         input=data.draw(mutations(valid), label="stdin")))
    assert _files(text_run) == before
