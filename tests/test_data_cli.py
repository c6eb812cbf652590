"""`xmcfit data stats` and `xmcfit data synth` through the CLI (exit codes, one-line errors)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from xmcfit.cli import app

runner = CliRunner()


def test_synth_then_stats_json_round_trip(tmp_path):
    out = tmp_path / "syn"
    result = runner.invoke(app, ["data", "synth", str(out), "--labels", "50", "--train", "300", "--test", "40", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert (out / "train_texts.txt").exists() and (out / "label_names.txt").exists()
    result = runner.invoke(app, ["data", "stats", str(out), "--split", "test", "--json"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert stats["n_points"] == 40 and stats["n_labels"] == 50 and stats["kind"] == "text"


def test_stats_prints_a_table(tmp_path):
    (tmp_path / "toy_train.txt").write_text("2 3 4\n0,1 0:1\n2 1:1 2:1\n")
    result = runner.invoke(app, ["data", "stats", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "avg labels per point" in result.stdout and "1.500" in result.stdout


def test_stats_on_missing_path_fails_in_one_line_with_exit_2(tmp_path):
    result = runner.invoke(app, ["data", "stats", str(tmp_path / "missing")])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "missing" in lines[0]


def test_stats_on_malformed_file_names_file_and_line(tmp_path):
    (tmp_path / "toy_train.txt").write_text("1 3 4\n9 0:1\n")
    result = runner.invoke(app, ["data", "stats", str(tmp_path)])
    assert result.exit_code == 2 and "toy_train.txt:2: label id 9 outside [0, 4)" in result.stderr


def test_synth_rejects_bad_sizes_with_exit_2(tmp_path):
    result = runner.invoke(app, ["data", "synth", str(tmp_path), "--labels", "0"])
    assert result.exit_code == 2 and "n_labels=0: must be >= 1" in result.stderr
