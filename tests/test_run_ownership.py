"""A run directory is xmcfit's only when xmcfit made it: a directory of the user's given as --out (or the
data's directory) is refused in one line before anything is written, pruning deletes only checkpoints
xmcfit wrote, and `xmcfit data synth` never overwrites a file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from plan_factory import tiny_plan
from xmcfit import api
from xmcfit.cli import app
from xmcfit.errors import XmcfitError
from xmcfit.rundir import RUN_MARKER
from xmcfit.train.checkpoint import write_checkpoint

from cli_checks import one_error_line as _one_error_line  # noqa: E402

runner = CliRunner()


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def bow_plan(tmp_path, bow_dir) -> Path:
    path = tmp_path / "plan.json"
    tiny_plan("bow", 6, bow_features=30, fan_in=4, epochs=1, aux_clusters=0).save(path)
    return path


@pytest.fixture
def users_dir(tmp_path) -> Path:
    """A directory of the user's holding files with the names a run writes."""
    mine = tmp_path / "models"
    (mine / "checkpoint" / "step-000000001").mkdir(parents=True)
    (mine / "checkpoint" / "step-000000001" / "important.txt").write_text("keep me\n")
    (mine / "model.safetensors").write_bytes(b"my weights")
    (mine / "plan.json").write_text("{\"mine\": true}\n")
    (mine / "train_log.jsonl").write_text("my log\n")
    return mine


def test_train_refuses_an_existing_directory_that_is_not_a_run_and_leaves_it_untouched(bow_plan, bow_dir, users_dir):
    before = _snapshot(users_dir)
    line = _one_error_line(runner.invoke(app, ["train", str(bow_plan), "--data", str(bow_dir), "--out",
                                               str(users_dir), "--device", "cpu"]))
    assert "not an xmcfit run" in line and "choose another --out" in line
    assert _snapshot(users_dir) == before and not (users_dir / RUN_MARKER).exists()
    with pytest.raises(XmcfitError, match="not an xmcfit run"):
        api.train(bow_plan, bow_dir, users_dir, device="cpu")
    assert _snapshot(users_dir) == before


def test_resume_refuses_a_directory_xmcfit_did_not_make(users_dir):
    (users_dir / "run.json").write_text(json.dumps({"run_format_version": 1, "status": "training"}))
    before = _snapshot(users_dir)
    line = _one_error_line(runner.invoke(app, ["train", "--resume", str(users_dir), "--device", "cpu"]))
    assert f"no {RUN_MARKER}" in line
    assert _snapshot(users_dir) == before and not (users_dir / ".lock").exists()


def test_train_refuses_the_data_directory_as_out(bow_plan, bow_dir):
    before = _snapshot(bow_dir)
    line = _one_error_line(runner.invoke(app, ["train", str(bow_plan), "--data", str(bow_dir), "--out", str(bow_dir),
                                               "--device", "cpu"]))
    assert "holds the training data" in line
    assert _snapshot(bow_dir) == before


def test_a_run_writes_its_marker_into_a_new_or_empty_directory_and_trains(tmp_path, bow_plan, bow_dir):
    empty = tmp_path / "empty"
    empty.mkdir()
    api.train(bow_plan, bow_dir, empty, device="cpu")
    marker = json.loads((empty / RUN_MARKER).read_text())
    assert marker["xmcfit_run"] == 1
    assert json.loads((empty / "run.json").read_text())["status"] == "done"


def test_checkpoint_pruning_never_deletes_a_folder_xmcfit_did_not_write(tmp_path):
    root = tmp_path / "checkpoint"
    (root / "step-000000001").mkdir(parents=True)
    (root / "step-000000001" / "important.txt").write_text("keep me\n")
    for step in (2, 3, 4):
        write_checkpoint(root, step, {"w": torch.ones(2) * step}, keep=1)
    assert (root / "step-000000001" / "important.txt").read_text() == "keep me\n"
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["step-000000001", "step-000000004"]


def test_data_synth_refuses_to_overwrite_a_directory_with_files(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train_texts.txt").write_text("my texts\n")
    line = _one_error_line(runner.invoke(app, ["data", "synth", str(data), "--labels", "5", "--train", "10",
                                               "--test", "5"]))
    assert "not empty" in line and "never overwrites" in line
    assert (data / "train_texts.txt").read_text() == "my texts\n" and len(list(data.iterdir())) == 1


def test_data_synth_writes_into_an_empty_directory(tmp_path):
    result = runner.invoke(app, ["data", "synth", str(tmp_path), "--labels", "5", "--train", "10", "--test", "5"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "train_texts.txt").exists()
