"""Everything loaded is verified: a checkpoint without its manifest is not trusted (the run falls back to the
newest one that verifies), and the final weights carry a SHA-256 that eval and predict always check,
whatever run.json says; the final weights are fsynced like checkpoints."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file
from typer.testing import CliRunner

from plan_factory import tiny_plan
from xmcfit import api
from xmcfit.cli import app
from xmcfit.train.checkpoint import checkpoint_folders, verify_checkpoint, write_checkpoint
from xmcfit.train.epoch import TrainingPaused

from cli_checks import one_error_line as _one_error_line  # noqa: E402

runner = CliRunner()


def _flip_last_byte(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0x40
    path.write_bytes(bytes(raw))


@pytest.fixture
def bow_plan(tmp_path) -> Path:
    path = tmp_path / "plan.json"
    tiny_plan("bow", 6, bow_features=30, fan_in=4, epochs=2, micro_batch=8, aux_clusters=0).save(path)
    return path


def test_a_checkpoint_without_its_manifest_does_not_verify(tmp_path):
    import torch

    folder = write_checkpoint(tmp_path, 1, {"w": torch.ones(3)})
    assert verify_checkpoint(folder) is None
    (folder / "manifest.json").unlink()
    assert "manifest.json" in verify_checkpoint(folder)


def test_resume_falls_back_past_a_checkpoint_whose_manifest_is_missing(tmp_path, bow_plan, bow_dir):
    run = tmp_path / "run"
    with pytest.raises(TrainingPaused):
        api.train(bow_plan, bow_dir, run, device="cpu", max_steps=10)  # epoch 1 ends at step 8
    newest, _older = checkpoint_folders(run / "checkpoint")[:2]
    (newest / "manifest.json").unlink()
    tensors = newest / "tensors.safetensors"
    state = load_file(str(tensors))
    values_key = next(k for k in state if k.endswith("classifier.values"))
    raw = bytearray(tensors.read_bytes())
    offset = raw.find(state[values_key].tobytes())
    raw[offset + 3] = 0x7E  # the exponent byte of the first classifier value: ~1e38
    tensors.write_bytes(bytes(raw))
    api.train(resume=run, device="cpu")
    assert (newest.parent / f"{newest.name}.corrupt").is_dir()  # set aside, not trusted, not deleted
    api.train(bow_plan, bow_dir, tmp_path / "left_alone", device="cpu")
    weights = load_file(str(run / "model.safetensors"))
    reference = load_file(str(tmp_path / "left_alone" / "model.safetensors"))
    assert weights.keys() == reference.keys()
    assert all(np.array_equal(weights[k], reference[k]) for k in weights)  # resumed from `older`, as if left alone


@pytest.fixture(scope="module")
def bow_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("bow_run")
    rng = np.random.default_rng(0)
    lines = ["60 30 6"] + [",".join(map(str, sorted(rng.choice(6, 2, replace=False)))) + " "
                           + " ".join(f"{f}:1" for f in sorted(rng.choice(30, 5, replace=False))) for _ in range(60)]
    data = tmp / "data"
    data.mkdir()
    (data / "toy_train.txt").write_text("\n".join(lines) + "\n")
    (data / "toy_test.txt").write_text("\n".join(["10 30 6"] + lines[1:11]) + "\n")
    plan = tiny_plan("bow", 6, bow_features=30, fan_in=4, epochs=1, aux_clusters=0)
    api.train(plan, data, tmp / "run", device="cpu")
    return tmp / "run"


def _killed_before_done(tmp_path: Path, bow_run: Path) -> Path:
    """A copy of the run as a kill between the weights' rename and run.json's `done` leaves it."""
    run = tmp_path / "run"
    shutil.copytree(bow_run, run)
    info = json.loads((run / "run.json").read_text())
    info["status"] = "training"
    del info["weights_sha256"]
    (run / "run.json").write_text(json.dumps(info))
    return run


@pytest.mark.parametrize("command", ["eval", "predict"])
def test_eval_and_predict_check_the_weights_even_when_run_json_has_no_checksum(tmp_path, bow_run, command):
    run = _killed_before_done(tmp_path, bow_run)
    assert runner.invoke(app, ["eval", str(run)]).exit_code == 0  # intact weights verify by their .sha256
    _flip_last_byte(run / "model.safetensors")
    data = json.loads((run / "run.json").read_text())["data"]["path"]
    args = ["eval", str(run)] if command == "eval" else ["predict", str(run), "--file", str(Path(data) / "toy_test.txt")]
    assert "does not match its recorded SHA-256" in _one_error_line(runner.invoke(app, args))


def test_weights_with_no_recorded_checksum_are_not_trusted(tmp_path, bow_run):
    run = _killed_before_done(tmp_path, bow_run)
    (run / "model.safetensors.sha256").unlink()
    assert "no SHA-256 recorded" in _one_error_line(runner.invoke(app, ["eval", str(run)]))


def test_the_weights_checksum_file_is_in_sha256sum_format(bow_run):
    digest, name = (bow_run / "model.safetensors.sha256").read_text().split()
    assert name == "model.safetensors" and digest == json.loads((bow_run / "run.json").read_text())["weights_sha256"]


def test_the_final_weights_are_fsynced_before_and_after_their_rename(tmp_path, bow_plan, bow_dir, monkeypatch):
    import xmcfit.train.finish as finish

    synced: list[str] = []
    real = finish.fsync_path
    monkeypatch.setattr(finish, "fsync_path", lambda path: (synced.append(Path(path).name), real(path)))
    result = api.train(bow_plan, bow_dir, tmp_path / "run", device="cpu")
    assert synced == ["model.tmp.safetensors", "run"] and math.isfinite(result.final_loss)
