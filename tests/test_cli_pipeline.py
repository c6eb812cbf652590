"""The whole pipeline through the command line, as a user runs it: data synth -> plan -> train -> eval ->
predict, with an interruption and a resume in the middle, on the tiny BERT."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from xmcfit.cli import app

runner = CliRunner()


def _ok(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result.output


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, tiny_encoder_dir) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pipeline")
    data, plan, run = root / "data", root / "plan.json", root / "run"
    _ok(["data", "synth", str(data), "--labels", "30", "--train", "320", "--test", "80", "--seed", "1"])
    _ok(["plan", "--data", str(data), "--encoder", str(tiny_encoder_dir), "--gpu-mem", "4G", "--precision", "fp32",
         "--batch", "16", "--seq-len", "24", "--epochs", "3", "--fan-in", "16", "-o", str(plan)])
    # Pause after 7 steps (checkpoint written; a planned stop, so exit 0 and no "Error:"), then resume to the end.
    stopped = runner.invoke(app, ["train", str(plan), "--data", str(data), "--out", str(run), "--device", "cpu",
                                  "--max-steps", "7"])
    assert stopped.exit_code == 0, stopped.output
    assert "Error" not in stopped.output
    assert "--max-steps 7" in stopped.output and "xmcfit train --resume" in stopped.output
    assert "Traceback" not in stopped.output
    out = _ok(["train", "--resume", str(run), "--device", "cpu"])
    assert "measured" in out and "peak" in out
    return {"data": data, "plan": plan, "run": run}


def test_plan_reads_the_dataset_and_pins(pipeline):
    plan = json.loads(pipeline["plan"].read_text())
    assert plan["classifier"]["n_labels"] == 30
    assert plan["classifier"]["fan_in"] == 16
    assert plan["precision"] == "fp32"
    assert plan["memory"]["predicted_peak_bytes"] < plan["memory"]["dense_predicted_peak_bytes"] or \
        plan["classifier"]["in_features"] <= 32


def test_train_finishes_all_epochs_after_the_resume(pipeline):
    info = json.loads((pipeline["run"] / "run.json").read_text())
    probe = json.loads(pipeline["plan"].read_text())["training"]["probe_epochs"]
    assert probe >= 1  # the planner's linear-probe warm start; the stop at step 7 fell inside it
    assert info["status"] == "done" and info["epochs_done"] == 3 and info["probe_epochs_done"] == probe
    steps = [json.loads(line)["step"] for line in (pipeline["run"] / "train_log.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 20 * (probe + 3)  # 320 points / 16 per step x all epochs


def test_eval_json_reports_every_metric_and_beats_chance(pipeline):
    out = _ok(["eval", str(pipeline["run"]), "--data", str(pipeline["data"]), "--json"])
    [result] = json.loads(out)
    metrics = result["metrics"]
    for key in ("P@1", "P@3", "P@5", "nDCG@5", "PSP@1", "PSP@5", "PSnDCG@5", "coverage@5"):
        assert 0.0 <= metrics[key] <= 1.0, key
    # 30 Zipf-distributed labels: a random ranking puts a true label first ~1/30 of the time per label.
    assert metrics["P@5"] > 5 / 30 * 0.5


def test_eval_table_and_predict(pipeline):
    table = _ok(["eval", str(pipeline["run"]), str(pipeline["run"])])
    assert "P@1" in table and "PSP@5" in table
    out = _ok(["predict", str(pipeline["run"]), "some words about a topic", "--top-k", "3", "--json"])
    [line] = out.strip().splitlines()
    labels = json.loads(line)["labels"]
    assert len(labels) == 3 and all(0 <= item["index"] < 30 for item in labels)


def test_train_errors_are_one_line(tmp_path, pipeline):
    missing = runner.invoke(app, ["train", str(tmp_path / "nope.json"), "--data", str(pipeline["data"])])
    assert missing.exit_code == 2 and "Traceback" not in missing.output
    assert len(missing.output.strip().splitlines()) == 1
    again = runner.invoke(app, ["train", str(pipeline["plan"]), "--data", str(pipeline["data"]),
                                "--out", str(pipeline["run"])])
    assert again.exit_code == 2 and "Traceback" not in again.output
    not_a_run = runner.invoke(app, ["train", "--resume", str(tmp_path)])
    assert not_a_run.exit_code == 2 and "not a run directory" in not_a_run.output


def test_resuming_a_finished_run_changes_nothing(pipeline):
    before = (pipeline["run"] / "memory.json").read_bytes()
    out = _ok(["train", "--resume", str(pipeline["run"])])
    assert "already finished" in out
    assert (pipeline["run"] / "memory.json").read_bytes() == before
