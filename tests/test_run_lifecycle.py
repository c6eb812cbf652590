"""Runs that cannot get stuck: bad inputs refused before the run directory exists, a run without a
checkpoint restarted in place, one writer at a time, planned stops that are not errors, checkpoints by
step, a log without replayed steps, a resume that follows moved data, and one line for every failure."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from plan_factory import tiny_plan
from xmcfit import api
from xmcfit.cli import app
from xmcfit.rundir import RunLock
from xmcfit.train.checkpoint import CheckpointPolicy, checkpoint_folders
from xmcfit.train.epoch import TrainingPaused, TrainingStopped

from cli_checks import one_error_line as _one_error_line  # noqa: E402

runner = CliRunner()
N_LABELS = 40
XMCFIT = str(Path(sys.executable).with_name("xmcfit"))


def _steps_logged(run: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run / "train_log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def plan_file(tmp_path_factory, tiny_encoder_dir) -> Path:
    path = tmp_path_factory.mktemp("plans") / "plan.json"
    tiny_plan(str(tiny_encoder_dir), N_LABELS, epochs=1, aux_clusters=0).save(path)
    return path


def _bad_inputs(tmp: Path, synth: Path, plan_file: Path, tiny_encoder_dir: Path) -> dict[str, tuple[list[str], str]]:
    other_labels = tmp / "plan41.json"
    tiny_plan(str(tiny_encoder_dir), N_LABELS + 1, epochs=1).save(other_labels)
    truncated = tmp / "truncated"
    truncated.mkdir()
    for name in ("train_texts.txt", "train_labels.txt"):
        packed = gzip.compress((synth / name).read_bytes())
        (truncated / f"{name}.gz").write_bytes(packed[: len(packed) // 2])
    empty = tmp / "empty"
    empty.mkdir()
    (empty / "x_train.txt").write_text("0 1836 159\n")
    a_file = tmp / "a_file"
    a_file.write_text("x")
    plan, data = str(plan_file), str(synth)
    return {
        "label mismatch": ([str(other_labels), "--data", data], "labels but the plan has n_labels=41"),
        "truncated gzip": ([plan, "--data", str(truncated)], "ends early"),
        "no CUDA": ([plan, "--data", data, "--device", "cuda"], "no CUDA device is visible"),
        "unknown device": ([plan, "--data", data, "--device", "tpu"], "--device tpu: must be auto, cpu, cuda or cuda:N"),
        "empty data": ([tiny_plan_file(tmp, tiny_encoder_dir, 159), "--data", str(empty)], "has no points"),
        "out is a file": ([plan, "--data", data, "--out-file", str(a_file)], "is a file, not a directory"),
        "unwritable out": ([plan, "--data", data, "--out-file", "/proc/xmcfit-run"], "cannot create the run directory"),
        "unknown logger": ([plan, "--data", data, "--log-to", "wandb"], "'--log-to': 'wandb' is not one of 'tensorboard'"),
    }


def tiny_plan_file(tmp: Path, tiny_encoder_dir: Path, n_labels: int) -> str:
    path = tmp / f"bow{n_labels}.json"
    tiny_plan("bow", n_labels, bow_features=1836, fan_in=4, epochs=1, aux_clusters=0).save(path)
    return str(path)


@pytest.mark.parametrize("case", ["label mismatch", "truncated gzip", "no CUDA", "unknown device", "empty data",
                                  "out is a file", "unwritable out", "unknown logger"])
def test_a_bad_input_is_one_line_and_creates_no_run_directory(tmp_path, synth_dir, plan_file, tiny_encoder_dir, case):
    if case == "no CUDA" and __import__("torch").cuda.is_available():
        pytest.skip("a CUDA device is visible")
    args, needle = _bad_inputs(tmp_path, synth_dir, plan_file, tiny_encoder_dir)[case]
    out = tmp_path / "run"
    if "--out-file" in args:
        i = args.index("--out-file")
        out = Path(args[i + 1])
        args = args[:i] + args[i + 2:]
    before = out.exists()
    line = _one_error_line(runner.invoke(app, ["train", *args, "--out", str(out), "--device", "cpu"]
                                         if "--device" not in args else ["train", *args, "--out", str(out)]))
    assert needle in line
    assert out.exists() == before  # nothing was created


def test_the_empty_dataset_is_refused_in_training_and_in_evaluation(tmp_path, bow_dir):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "toy_train.txt").write_text("0 30 6\n")
    (empty / "toy_test.txt").write_text("0 30 6\n")
    plan = tiny_plan("bow", 6, bow_features=30, fan_in=4, epochs=1, aux_clusters=0)
    plan.save(tmp_path / "plan.json")
    line = _one_error_line(runner.invoke(app, ["train", str(tmp_path / "plan.json"), "--data", str(empty),
                                               "--out", str(tmp_path / "run")]))
    assert "the training split has no points" in line and not (tmp_path / "run").exists()
    api.train(plan, bow_dir, tmp_path / "ok", device="cpu")
    line = _one_error_line(runner.invoke(app, ["eval", str(tmp_path / "ok"), "--data", str(empty)]))
    assert "no points to evaluate" in line


def test_a_run_that_crashed_before_its_first_checkpoint_restarts_in_place(tmp_path, plan_file, synth_dir):
    run = tmp_path / "run"

    def crash_at_step_3(stats):
        if stats.step == 3:
            raise RuntimeError("simulated crash (kill -9) in epoch 1")

    with pytest.raises(RuntimeError, match="simulated crash"):
        api.train(plan_file, synth_dir, run, device="cpu", log_every=1, on_step=crash_at_step_3)
    assert not checkpoint_folders(run / "checkpoint") and _steps_logged(run) == [1, 2]
    resumed = runner.invoke(app, ["train", "--resume", str(run), "--device", "cpu", "--log-every", "1"])
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((run / "run.json").read_text())["status"] == "done"
    assert _steps_logged(run) == list(range(1, 16))  # from step 0 again, each step once


def test_rerunning_the_command_of_a_run_without_a_checkpoint_restarts_it_in_place(tmp_path, plan_file, synth_dir):
    run = tmp_path / "run"

    def crash_at_step_2(stats):
        if stats.step == 2:
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError):
        api.train(plan_file, synth_dir, run, device="cpu", log_every=1, on_step=crash_at_step_2)
    rerun = runner.invoke(app, ["train", str(plan_file), "--data", str(synth_dir), "--out", str(run),
                                "--device", "cpu", "--log-every", "1"])
    assert rerun.exit_code == 0, rerun.output
    assert _steps_logged(run) == list(range(1, 16))
    finished = runner.invoke(app, ["train", str(plan_file), "--data", str(synth_dir), "--out", str(run)])
    assert "already holds a run" in _one_error_line(finished)  # a finished run is never overwritten


def test_a_second_writer_is_refused_while_the_first_holds_the_run(tmp_path, plan_file, synth_dir):
    run = tmp_path / "run"
    with pytest.raises(TrainingPaused):
        api.train(plan_file, synth_dir, run, device="cpu", max_steps=2)
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from xmcfit.rundir import RunLock; RunLock(Path(sys.argv[1])).acquire(); "
                               "print('locked', flush=True); time.sleep(60)", str(run)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        line = _one_error_line(runner.invoke(app, ["train", "--resume", str(run), "--device", "cpu"]))
        assert f"{run} is in use by another xmcfit process (pid {holder.pid})" in line
    finally:
        holder.kill()
        holder.wait()
    # The kernel dropped the killed holder's lock: the run continues.
    assert runner.invoke(app, ["train", "--resume", str(run), "--device", "cpu"]).exit_code == 0
    with RunLock(run):  # and a finished run's lock is free again
        pass


def test_ctrl_c_pauses_with_a_checkpoint_and_exits_130_like_its_peers(tmp_path, tiny_encoder_dir):
    from xmcfit.data.synth import write_synthetic

    data = tmp_path / "data"
    write_synthetic(data, n_train=4000, n_test=10, n_labels=N_LABELS, seed=1, words_per_text=10)
    plan = tmp_path / "plan.json"
    tiny_plan(str(tiny_encoder_dir), N_LABELS, epochs=1, aux_clusters=0).save(plan)
    run = tmp_path / "run"
    proc = subprocess.Popen([XMCFIT, "train", str(plan), "--data", str(data), "--out", str(run), "--device", "cpu",
                             "--log-every", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not ((run / "train_log.jsonl").exists() and (run / "train_log.jsonl").read_text()):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted by signal 2" in err and "xmcfit train --resume" in err
    assert "Error" not in err and "Traceback" not in err
    assert checkpoint_folders(run / "checkpoint")


def test_ctrl_c_while_a_command_waits_is_one_line_and_130(tmp_path, plan_file, synth_dir):
    run = tmp_path / "run"
    api.train(plan_file, synth_dir, run, device="cpu")
    proc = subprocess.Popen([XMCFIT, "predict", str(run), "--file", "-"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600  # a loaded machine can take minutes to import torch and load the run
    while not _blocked_reading_stdin(proc.pid):  # then Ctrl-C, as a user at the keyboard would
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err.strip() == "Interrupted.", err


def _blocked_reading_stdin(pid: int) -> bool:
    """Linux: the process sits in read(0, ...) (syscall 0 on x86-64, 63 on arm64, first argument fd 0)."""
    try:
        fields = Path(f"/proc/{pid}/syscall").read_text().split()
    except OSError:
        return False
    return len(fields) > 1 and fields[0] in ("0", "63") and int(fields[1], 16) == 0


def test_checkpoints_every_n_steps_and_a_resume_logs_each_step_once(tmp_path, plan_file, synth_dir):
    run = tmp_path / "run"
    with pytest.raises(TrainingPaused) as paused:
        api.train(plan_file, synth_dir, run, device="cpu", max_steps=7, log_every=1,
                  checkpoints=CheckpointPolicy(every_steps=5, every_minutes=None))
    assert paused.value.exit_code == 0 and not paused.value.is_error
    assert [p.name for p in checkpoint_folders(run / "checkpoint")] == ["step-000000007", "step-000000005"]
    shutil.rmtree(run / "checkpoint" / "step-000000007")  # as if kill -9 came before this save
    with open(run / "train_log.jsonl", "a") as log:
        log.write('{"step": 8, "loss": 1.0')  # and mid-way through a log line
    api.train(resume=run, device="cpu", log_every=1)
    assert _steps_logged(run) == list(range(1, 16))


def test_a_resume_follows_data_that_moved_and_refuses_different_data(tmp_path, plan_file, synth_dir):
    from xmcfit.data.synth import write_synthetic

    data = tmp_path / "data"
    shutil.copytree(synth_dir, data)
    run = tmp_path / "run"
    with pytest.raises(TrainingPaused):
        api.train(plan_file, data, run, device="cpu", max_steps=3)
    moved = tmp_path / "moved"
    data.rename(moved)
    line = _one_error_line(runner.invoke(app, ["train", "--resume", str(run), "--device", "cpu"]))
    assert "no such file or directory" in line
    other = tmp_path / "other"
    write_synthetic(other, n_train=240, n_test=60, n_labels=N_LABELS, seed=99, words_per_text=10)
    line = _one_error_line(runner.invoke(app, ["train", "--resume", str(run), "--data", str(other)]))
    assert "not the training data run" in line
    done = runner.invoke(app, ["train", "--resume", str(run), "--data", str(moved), "--device", "cpu"])
    assert done.exit_code == 0, done.output
    assert json.loads((run / "run.json").read_text())["data"]["path"] == str(moved.resolve())


def test_a_diverging_run_without_a_checkpoint_does_not_claim_one(tmp_path, tiny_encoder_dir, synth_dir):
    plan = tiny_plan(str(tiny_encoder_dir), N_LABELS, epochs=2, aux_clusters=0, micro_batch=8)  # 30 steps an epoch
    plan = replace(plan, classifier=replace(plan.classifier, lr=1e30))
    with pytest.raises(TrainingStopped, match="no checkpoint was written yet") as info:
        api.train(plan, synth_dir, tmp_path / "run", device="cpu")
    assert info.value.is_error and "restarts it in place" in str(info.value)


def test_no_temporary_file_is_left_when_a_write_fails(tmp_path):
    from xmcfit.atomic import atomic_write_text
    from xmcfit.errors import XmcfitError

    target = tmp_path / "dir_in_the_way"
    (target.with_name(target.name + ".tmp")).mkdir()  # the temporary name cannot be opened as a file
    with pytest.raises(XmcfitError, match="cannot write"):
        atomic_write_text(target, "x")
    blocked = tmp_path / "plan.json"
    blocked.mkdir()  # a directory where the file should go: the rename fails after the temp file was written
    with pytest.raises(XmcfitError, match="cannot write"):
        atomic_write_text(blocked, "x")
    assert sorted(os.listdir(tmp_path)) == ["dir_in_the_way.tmp", "plan.json"]  # no plan.json.tmp left
