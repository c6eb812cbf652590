"""`xmcfit eval` and xmcfit.evaluate on a tiny trained run: metric keys and ranges, propensities, error paths."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from plan_factory import tiny_plan
from xmcfit.cli import app
from xmcfit.errors import XmcfitError
from xmcfit.evaluate import (evaluate_run, inverse_propensity_from_counts, load_eval_data, resolve_propensity,
                             training_size)
from xmcfit.inference import load_run
from xmcfit.metrics import inverse_propensity
from xmcfit.train.loop import run_training
from xmcfit.rundir import DataOptions, prepare_run_dir
from xmcfit.train.data import load_train_data

N_LABELS = 40
METRICS = [f"{m}@{k}" for m in ("P", "nDCG", "PSP", "PSnDCG") for k in (1, 3, 5)] + ["coverage@5"]
runner = CliRunner()


def train_tiny_run(run_dir: Path, data_dir: Path, plan) -> Path:
    options = DataOptions(str(data_dir))
    prepare_run_dir(plan, run_dir, options)
    run_training(plan, run_dir, load_train_data(plan, run_dir, options, resume=False), device="cpu")
    return run_dir


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_encoder_dir, synth_dir) -> Path:
    """A finished sparse run: tiny BERT, 40 synthetic labels, two epochs (a few seconds on a CPU)."""
    plan = tiny_plan(str(tiny_encoder_dir), N_LABELS, epochs=2, aux_clusters=0)
    return train_tiny_run(tmp_path_factory.mktemp("eval") / "run", synth_dir, plan)


@pytest.fixture(scope="module")
def loaded(tiny_run):
    return load_run(tiny_run, device="cpu")


def test_evaluate_run_reports_every_metric_as_a_fraction(loaded):
    dataset, split = load_eval_data(loaded)
    result = evaluate_run(loaded, dataset, split=split)
    assert split == "test" and result.split == "test" and result.n_points == 60
    assert set(METRICS) <= set(result.metrics)
    assert all(0.0 <= result.metrics[m] <= 1.0 for m in METRICS)
    assert result.metrics["P@1"] > 0.0  # two epochs on learnable synthetic words beat zero
    assert result.run.classifier_kind == "sparse" and result.run.fan_in == 8
    assert result.run.measured_peak_bytes and result.run.measured_peak_bytes > 0


def test_propensities_from_counts_equal_the_metrics_module(loaded, synth_dir):
    from xmcfit.data import load_split

    train = load_split(synth_dir, "train", label_vocab=loaded.label_vocab)
    assert training_size(loaded) == train.n_points
    from_counts = inverse_propensity_from_counts(loaded.train_label_counts, train.n_points, 0.6, 2.6)
    np.testing.assert_allclose(from_counts, inverse_propensity(train.labels, N_LABELS, 0.6, 2.6), rtol=1e-12)


def test_propensity_comes_from_flags_then_dataset_profile_then_default(loaded):
    assert (resolve_propensity(loaded).a, resolve_propensity(loaded).b) == (0.55, 1.5)
    assert resolve_propensity(loaded).source == "default"
    plan = loaded.plan
    amazon = dataclasses.replace(loaded, plan=dataclasses.replace(
        plan, inputs=dataclasses.replace(plan.inputs, dataset="Amazon-670K")))
    from_profile = resolve_propensity(amazon)
    assert (from_profile.a, from_profile.b, from_profile.source) == (0.6, 2.6, "profile Amazon-670K")
    assert (resolve_propensity(amazon, a=0.5, b=0.4).a, resolve_propensity(amazon, a=0.5, b=0.4).b) == (0.5, 0.4)
    assert resolve_propensity(amazon, a=0.5).b == 2.6


def test_eval_command_prints_json_with_every_metric(tiny_run):
    result = runner.invoke(app, ["eval", str(tiny_run), "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.stdout)
    assert set(METRICS) <= set(row["metrics"]) and row["split"] == "test" and row["n_points"] == 60
    assert row["propensity"] == {"a": 0.55, "b": 1.5, "source": "default"}


def test_eval_command_puts_several_runs_in_one_table(tiny_run, tmp_path):
    other = tmp_path / "run-copy"
    shutil.copytree(tiny_run, other)
    result = runner.invoke(app, ["eval", str(tiny_run), str(other), "--split", "test", "--propensity-a", "0.6",
                                 "--propensity-b", "2.6"])
    assert result.exit_code == 0, result.output
    assert "run-copy" in result.stdout and "PSnDCG@5" in result.stdout and "coverage@5" in result.stdout
    assert "A=0.6, B=2.6" in result.stdout.replace("\n", " ")


def _one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def test_eval_of_a_run_without_weights_exits_2_in_one_line(tiny_run, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_run, broken)
    (broken / "model.safetensors").unlink()
    assert "missing model.safetensors" in _one_error_line(runner.invoke(app, ["eval", str(broken)]))


def test_eval_of_a_missing_run_directory_exits_2_in_one_line(tmp_path):
    _one_error_line(runner.invoke(app, ["eval", str(tmp_path / "nowhere")]))


def test_eval_of_a_run_from_another_format_version_exits_2(tiny_run, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(tiny_run, old)
    info = json.loads((old / "run.json").read_text())
    info["run_format_version"] = 999
    (old / "run.json").write_text(json.dumps(info))
    assert "re-train" in _one_error_line(runner.invoke(app, ["eval", str(old)]))


def test_eval_on_data_with_another_label_space_exits_2(tiny_run, tmp_path):
    from xmcfit.data.synth import write_synthetic

    other = tmp_path / "other-labels"
    write_synthetic(other, n_train=50, n_test=20, n_labels=25, seed=11, words_per_text=10)
    line = _one_error_line(runner.invoke(app, ["eval", str(tiny_run), "--data", str(other)]))
    assert "label space" in line


def test_eval_rejects_a_split_other_than_dev_or_test(tiny_run):
    assert "--split" in _one_error_line(runner.invoke(app, ["eval", str(tiny_run), "--split", "train"]))


def test_dense_runs_evaluate_through_the_same_path(tmp_path, tiny_encoder_dir, synth_dir):
    plan = tiny_plan(str(tiny_encoder_dir), N_LABELS, kind="dense", epochs=1, aux_clusters=0)
    run = load_run(train_tiny_run(tmp_path / "dense", synth_dir, plan), device="cpu")
    dataset, split = load_eval_data(run, split="test")
    result = evaluate_run(run, dataset, ks=(1, 3, 5, 50), split=split)  # k above the 40 labels pads with misses
    assert result.run.classifier_kind == "dense"
    assert 0.0 <= result.metrics["P@50"] <= 40 / 50


def test_load_eval_data_rejects_a_missing_data_path(loaded, tmp_path):
    with pytest.raises(XmcfitError, match="no such data"):
        load_eval_data(loaded, tmp_path / "missing")
