"""`xmcfit predict`: top-k labels with names and scores for texts, files and bag-of-words inputs."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from plan_factory import tiny_plan
from test_eval import train_tiny_run
from xmcfit.cli import app

runner = CliRunner()
N_LABELS = 40


@pytest.fixture(scope="module")
def text_run(tmp_path_factory, tiny_encoder_dir, synth_dir):
    plan = tiny_plan(str(tiny_encoder_dir), N_LABELS, epochs=1, aux_clusters=0)
    return train_tiny_run(tmp_path_factory.mktemp("predict") / "run", synth_dir, plan)


def _json_lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def test_predict_gives_top_k_named_labels_best_first(text_run):
    result = runner.invoke(app, ["predict", str(text_run), "first text", "second text", "--top-k", "3", "--json"])
    assert result.exit_code == 0, result.output
    rows = _json_lines(result.stdout)
    assert [r["input"] for r in rows] == ["first text", "second text"]
    for row in rows:
        labels = row["labels"]
        assert len(labels) == 3 and len({lab["index"] for lab in labels}) == 3
        assert all(0 <= lab["index"] < N_LABELS and lab["name"] for lab in labels)
        scores = [lab["score"] for lab in labels]
        assert scores == sorted(scores, reverse=True)


def test_predict_reads_one_text_per_line_from_a_file(text_run, tmp_path):
    inputs = tmp_path / "inputs.txt"
    inputs.write_text("alpha beta\n\ngamma delta\nepsilon\n")
    result = runner.invoke(app, ["predict", str(text_run), "--file", str(inputs), "--json"])
    assert result.exit_code == 0, result.output
    rows = _json_lines(result.stdout)
    assert len(rows) == 3 and all(len(r["labels"]) == 5 for r in rows)


def test_predict_table_shows_label_names(text_run, synth_dir):
    names = (synth_dir / "label_names.txt").read_text().split()
    result = runner.invoke(app, ["predict", str(text_run), "some words", "-k", "2"])
    assert result.exit_code == 0, result.output
    assert "some words" in result.stdout and any(name in result.stdout for name in names)


def test_predict_without_inputs_exits_2(text_run):
    result = runner.invoke(app, ["predict", str(text_run)])
    assert result.exit_code == 2 and "no inputs" in result.stderr


def test_predict_with_both_texts_and_a_file_exits_2(text_run, tmp_path):
    (tmp_path / "f.txt").write_text("x\n")
    result = runner.invoke(app, ["predict", str(text_run), "text", "--file", str(tmp_path / "f.txt")])
    assert result.exit_code == 2 and "not both" in result.stderr


def test_predict_on_a_bag_of_words_run_reads_a_features_file(tmp_path, bow_dir):
    data = bow_dir
    plan = tiny_plan("bow", 6, bow_features=30, fan_in=4, epochs=1, aux_clusters=0)
    run = train_tiny_run(tmp_path / "run", data, plan)
    result = runner.invoke(app, ["predict", str(run), "--file", str(data / "toy_test.txt"), "-k", "2", "--json"])
    assert result.exit_code == 0, result.output
    rows = _json_lines(result.stdout)
    assert len(rows) == 10 and all(len(r["labels"]) == 2 for r in rows)
    assert runner.invoke(app, ["predict", str(run), "a text"]).exit_code == 2
    evaluated = runner.invoke(app, ["eval", str(run), "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)[0]["n_points"] == 10
