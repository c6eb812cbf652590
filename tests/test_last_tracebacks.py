"""Inputs that used to end in a traceback or a silently wrong result: each is now one `Error:` line (or, for
the Python API, an XmcfitError raised before anything is written), or the right figure."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import xmcfit
from plan_factory import tiny_plan
from xmcfit import api
from xmcfit.cli import app
from xmcfit.errors import XmcfitError
from xmcfit.plan.schema import Plan
from xmcfit.train.epoch import TrainingPaused

from cli_checks import one_error_line as _one_error_line  # noqa: E402

runner = CliRunner()


@pytest.fixture
def bow_plan(tmp_path) -> Path:
    path = tmp_path / "plan.json"
    tiny_plan("bow", 6, bow_features=30, fan_in=4, epochs=1, aux_clusters=0).save(path)
    return path


# -- plan.json and the seed ---------------------------------------------------------------------------------

def test_a_plan_json_that_is_not_utf8_is_one_line(tmp_path, bow_plan, bow_dir):
    bad = tmp_path / "utf16.json"
    bad.write_bytes(b"\xff\xfe" + bow_plan.read_text().encode("utf-16-le"))
    line = _one_error_line(runner.invoke(app, ["train", str(bad), "--data", str(bow_dir), "--out",
                                               str(tmp_path / "run")]))
    assert "not UTF-8" in line and not (tmp_path / "run").exists()


@pytest.mark.parametrize("seed", [2**63, 2**64, 2**70])
def test_a_seed_too_large_for_the_trainer_is_refused_by_the_planner_and_the_plan_reader(tmp_path, bow_plan,
                                                                                        bow_dir, seed):
    line = _one_error_line(runner.invoke(app, ["plan", "--labels", "100", "--gpu-mem", "16G", "--seed", str(seed)]))
    assert "--seed" in line and "2**62" in line
    with pytest.raises(XmcfitError, match="seed"):
        xmcfit.plan(labels=100, gpu_mem="16G", seed=seed)
    raw = json.loads(bow_plan.read_text())
    raw["seed"] = seed
    bow_plan.write_text(json.dumps(raw))
    line = _one_error_line(runner.invoke(app, ["train", str(bow_plan), "--data", str(bow_dir), "--out",
                                               str(tmp_path / "run"), "--device", "cpu"]))
    assert "seed" in line and not (tmp_path / "run").exists()


def test_the_largest_seed_allowed_trains(tmp_path, bow_dir):
    from dataclasses import replace

    plan = replace(tiny_plan("bow", 6, bow_features=30, fan_in=4, epochs=1, aux_clusters=0), seed=2**62)
    assert api.train(plan, bow_dir, tmp_path / "run", device="cpu").steps > 0


# -- predict input ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["file", "stdin"])
def test_predict_input_that_is_not_utf8_is_one_line_naming_the_line(tmp_path, text_run, how):
    raw = "first text\nsecond caf\xe9 text\n".encode("latin-1")
    if how == "file":
        (tmp_path / "in.txt").write_bytes(raw)
        result = runner.invoke(app, ["predict", str(text_run), "--file", str(tmp_path / "in.txt")])
        where = f"{tmp_path / 'in.txt'}:2"
    else:
        result = runner.invoke(app, ["predict", str(text_run), "--file", "-"], input=raw)
        where = "stdin:2"
    line = _one_error_line(result)
    assert where in line and "not UTF-8" in line and "0xe9" in line


def test_predict_with_a_mebibyte_of_random_bytes_on_stdin_is_one_line(text_run):
    raw = np.random.default_rng(0).integers(0, 256, 2**20, dtype=np.uint8).tobytes()
    assert "not UTF-8" in _one_error_line(runner.invoke(app, ["predict", str(text_run), "--file", "-"], input=raw))


# -- a run's records ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("content", ["garbage", "object array", "wrong length", "negative"])
def test_eval_of_a_run_with_bad_label_counts_is_one_line(tmp_path, text_run, content):
    run = tmp_path / "run"
    shutil.copytree(text_run, run)
    path = run / "label_counts.npy"
    if content == "garbage":
        path.write_bytes(os.urandom(200))
    elif content == "object array":
        np.save(path, np.array([{"a": 1}] * 40, dtype=object), allow_pickle=True)
    elif content == "wrong length":
        np.save(path, np.ones(7))
    else:
        np.save(path, -np.ones(40))
    assert "label_counts.npy" in _one_error_line(runner.invoke(app, ["eval", str(run)]))


@pytest.mark.parametrize("bad_line", [5, 251])
def test_a_non_utf8_byte_in_a_data_file_is_reported_at_its_line(tmp_path, bad_line):
    data = tmp_path / "data"
    data.mkdir()
    texts = [f"text number {i} " + "word " * 20 for i in range(1, 401)]
    raw = [t.encode() for t in texts]
    raw[bad_line - 1] = "caf\xe9 au lait".encode("latin-1")
    (data / "train_texts.txt").write_bytes(b"\n".join(raw) + b"\n")
    (data / "train_labels.txt").write_text("\n".join(f"l{i % 7}" for i in range(400)) + "\n")
    line = _one_error_line(runner.invoke(app, ["data", "stats", str(data)]))
    assert f"train_texts.txt:{bad_line}: not UTF-8 text (byte 0xe9)" in line


def test_a_label_names_file_that_is_not_utf8_is_one_line(tmp_path, bow_dir):
    (bow_dir / "label_names.txt").write_bytes(b"a\nb\n\xff\n")
    assert "label_names.txt:3: not UTF-8" in _one_error_line(runner.invoke(app, ["data", "stats", str(bow_dir)]))


@pytest.mark.parametrize("flag, value", [("--propensity-a", "nan"), ("--propensity-b", "nan"),
                                         ("--propensity-a", "inf"), ("--propensity-a", "0")])
def test_propensity_arguments_that_are_not_finite_numbers_in_range_are_refused(text_run, flag, value):
    line = _one_error_line(runner.invoke(app, ["eval", str(text_run), "--json", flag, value]))
    assert flag in line


# -- resume -----------------------------------------------------------------------------------------------------

def test_a_resume_with_no_step_left_reports_the_final_loss(tmp_path, bow_plan, bow_dir):
    run = tmp_path / "run"
    total = math.ceil(60 / 16)
    with pytest.raises(TrainingPaused):
        api.train(bow_plan, bow_dir, run, device="cpu", max_steps=total, log_every=1)
    last_logged = json.loads((run / "train_log.jsonl").read_text().splitlines()[-1])
    result = api.train(resume=run, device="cpu")
    assert result.steps == total and result.final_loss == pytest.approx(last_logged["loss"], abs=1e-6)
    from xmcfit.report import train_result_table

    assert "nan" not in str(train_result_table(result).title)


@pytest.mark.parametrize("edit", [("training", "encoder_lr", 0.5), ("training", "epochs", 7)])
def test_a_plan_edited_between_pause_and_resume_is_refused(tmp_path, bow_plan, bow_dir, edit):
    run = tmp_path / "run"
    with pytest.raises(TrainingPaused):
        api.train(bow_plan, bow_dir, run, device="cpu", max_steps=1)
    raw = json.loads((run / "plan.json").read_text())
    raw[edit[0]][edit[1]] = edit[2]
    (run / "plan.json").write_text(json.dumps(raw, indent=2))
    line = _one_error_line(runner.invoke(app, ["train", "--resume", str(run), "--device", "cpu"]))
    assert "plan.json: changed since the run started" in line


# -- the Python API validates what the command line validates -------------------------------------------------

@pytest.mark.parametrize("kwargs, needle", [
    ({"precision": "fp8"}, "--precision='fp8'"),
    ({"labels": 3000.5}, "--labels=3000.5"),
    ({"labels": "3000"}, "--labels='3000'"),
    ({"seed": 2**70}, "--seed"),
    ({"fan_in": "64"}, "--fan-in='64'"),
    ({"dropout": float("nan")}, "--dropout"),
    ({"gpu_mem": 16}, "--gpu-mem=16"),
    ({"data": 5, "labels": None}, "data=5"),
])
def test_api_plan_raises_xmcfit_error_for_what_the_cli_refuses(kwargs, needle):
    args = {"labels": 3000, "gpu_mem": "16G", **kwargs}
    with pytest.raises(XmcfitError) as caught:
        xmcfit.plan(**args)
    assert needle in str(caught.value)


@pytest.mark.parametrize("kwargs, needle", [
    ({"log_every": 0}, "--log-every 0: must be >= 1"),
    ({"log_every": 2.5}, "--log-every=2.5"),
    ({"max_steps": "3"}, "--max-steps='3'"),
    ({"limit": 0}, "--limit 0"),
    ({"device": 3}, "--device=3"),
    ({"auto_recover": "yes"}, "--auto-recover"),
    ({"log_to": ["wandb"]}, "--log-to wandb"),
    ({"log_to": 7}, "--log-to 7"),
    ({"text_fields": [1]}, "--text-field"),
    ({"checkpoints": {"keep": 3}}, "CheckpointPolicy"),
    ({"on_step": "print"}, "on_step"),
    ({"out": 5}, "out=5"),
])
def test_api_train_raises_xmcfit_error_before_writing_anything(tmp_path, bow_plan, bow_dir, kwargs, needle):
    args = {"out": tmp_path / "run", "device": "cpu", **kwargs}
    with pytest.raises(XmcfitError) as caught:
        api.train(bow_plan, bow_dir, **args)
    assert needle in str(caught.value)
    assert not (tmp_path / "run").exists()


def test_api_checkpoint_policy_of_the_wrong_type_is_an_xmcfit_error():
    from xmcfit.train.checkpoint import CheckpointPolicy

    with pytest.raises(XmcfitError, match="--keep-checkpoints='2'"):
        CheckpointPolicy(keep="2")


def test_api_log_to_as_one_string_names_one_target(tmp_path, bow_plan, bow_dir):
    pytest.importorskip("tensorboard")
    api.train(bow_plan, bow_dir, tmp_path / "run", device="cpu", log_to="tensorboard")
    assert any((tmp_path / "run" / "tensorboard").iterdir())


def test_api_predict_and_evaluate_raise_xmcfit_error_for_bad_arguments(text_run):
    model = xmcfit.load(text_run, device="cpu")
    for call in (lambda: model.predict(["a text"], k="5"), lambda: model.predict([b"bytes"]),
                 lambda: model.evaluate(propensity_a=float("nan")), lambda: model.evaluate(data=5),
                 lambda: model.evaluate(split=["test"]), lambda: xmcfit.load(5)):
        with pytest.raises(XmcfitError):
            call()


def test_api_plan_rejects_a_bad_plan_before_writing_its_output(tmp_path):
    with pytest.raises(XmcfitError):
        xmcfit.plan(labels=3000, gpu_mem="16G", precision="fp8", output=tmp_path / "plan.json")
    assert not (tmp_path / "plan.json").exists()
    plan = xmcfit.plan(labels=3000, gpu_mem="16G", output=tmp_path / "ok.json")
    assert Plan.from_json(tmp_path / "ok.json") == plan
