"""Label-sharded training on 2 CPU processes (gloo): one step equals the one-process step, rewiring per
shard keeps its invariants, a stopped or killed sharded run resumes to the same weights, and evaluating
a sharded run equals evaluating the same weights unsharded. Refusals are one line, before any write."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from dist_workers import free_port, on_devices, reference_step, step_worker
from plan_factory import tiny_plan
from xmcfit.cli import app
from xmcfit.plan.memory import reprice
from xmcfit.train.memory_report import STATIC_TERMS

ROOT = Path(__file__).resolve().parents[1]
N_BOW_LABELS = 10


def _no_dropout(plan):
    return replace(plan, model=replace(plan.model, dropout=0.0))


@pytest.fixture(scope="module")
def sharded_steps(tmp_path_factory, tiny_encoder_dir, synth_dir, bow_data):
    """One step of a bag-of-words plan (intermediate layer, aux head, TF-IDF side, 2 accumulated
    micro-batches) and of a tiny-BERT plan with and without a TF-IDF side over its words, in 2 processes and
    in one; then one rewiring of the BERT plan's shards."""
    out = tmp_path_factory.mktemp("steps")
    bow = _no_dropout(tiny_plan("bow", N_BOW_LABELS, bow_features=40, fan_in=4, micro_batch=16, grad_accum=2,
                                aux_clusters=2, intermediate_dim=48, tfidf_fan_in=4))
    text = _no_dropout(tiny_plan(str(tiny_encoder_dir), 40, micro_batch=16, aux_clusters=4))
    text_side = _no_dropout(tiny_plan(str(tiny_encoder_dir), 40, micro_batch=16, aux_clusters=4, tfidf_fan_in=4))
    # the text run last: the rewiring below takes the last case's shards
    cases = [("bow", bow, bow_data, False), ("text-side", text_side, synth_dir, True), ("text", text, synth_dir, True)]
    sharded = [(name, on_devices(plan, 2), data, eval_encoder) for name, plan, data, eval_encoder in cases]
    mp.start_processes(step_worker, args=(2, free_port(), sharded, str(out)), nprocs=2, join=True,
                       start_method="spawn")
    results = {}
    for name, plan, data, eval_encoder in cases:
        ref = reference_step(plan, out / f"{name}-ref", data, eval_encoder=eval_encoder)
        ranks = [torch.load(out / f"{name}-rank{r}.pt") for r in range(2)]
        results[name] = (ref, ranks)
    rewire = [torch.load(out / f"rewire-rank{r}.pt") for r in range(2)]
    gathered = [torch.load(out / f"gather-rank{r}.pt") for r in range(2)]
    return results, rewire, text, gathered


@pytest.mark.parametrize("case", ["bow", "text-side", "text"])
def test_one_sharded_step_equals_the_one_process_step(sharded_steps, case):
    (ref, (r0, r1)) = sharded_steps[0][case]
    assert r0["finite"] and r1["finite"] and ref["finite"]
    assert r0["loss"] == r1["loss"] and r0["main"] == r1["main"] and r0["aux"] == r1["aux"]  # one value, every rank
    assert r0["loss"] == pytest.approx(ref["loss"], rel=1e-5)
    assert r0["aux"] == pytest.approx(ref["aux"], rel=1e-5) and ref["aux"] > 0  # the aux objective is on
    assert ref["grads"].keys() == r0["grads"].keys() == r1["grads"].keys()
    for name, grad in ref["grads"].items():
        assert torch.equal(r0["grads"][name], r1["grads"][name]), name  # replicas stay identical
        torch.testing.assert_close(r0["grads"][name], grad, rtol=1e-4, atol=1e-6, msg=name)
    for key, value in ref["classifier"].items():  # rank 0 holds the first rows, rank 1 the rest
        torch.testing.assert_close(torch.cat([r0["classifier"][key], r1["classifier"][key]]), value,
                                   rtol=1e-5, atol=1e-6, msg=key)
    assert (ref["side"] is not None) == (case != "text")
    if ref["side"] is not None:  # its rows split like the classifier's; idf the same in every rank
        assert bool(ref["side_grad"].abs().sum() > 0)
        torch.testing.assert_close(torch.cat([r0["side_grad"], r1["side_grad"]]), ref["side_grad"],
                                   rtol=1e-4, atol=1e-7)
        for key, value in ref["side"].items():
            got = r0["side"][key] if key == "idf" else torch.cat([r0["side"][key], r1["side"][key]])
            torch.testing.assert_close(got, value, rtol=1e-5, atol=1e-6, msg=key)


def test_inputs_of_different_row_counts_gather_in_rank_order(sharded_steps):
    expected = torch.tensor([[0.0] * 3, [1.0] * 3, [1.0] * 3])  # rank 0's row, then rank 1's two
    for gathered in sharded_steps[3]:
        assert torch.equal(gathered, expected)


def test_rewiring_per_shard_keeps_fan_in_distinct_columns_and_zeroed_state(sharded_steps):
    rewire, plan = sharded_steps[1], sharded_steps[2]
    regrown_total = 0
    for rank, r in enumerate(rewire):
        assert r["seed"] == plan.seed + 1 + rank  # each shard's own generator
        indices = r["indices"].long()
        assert indices.shape == (20, plan.classifier.fan_in)  # 40 labels over 2 ranks
        assert bool((indices[:, 1:] > indices[:, :-1]).all())  # sorted, so distinct, in every row
        kept = [{(c, v) for c, v in zip(ci.tolist(), vi.tolist())}
                for ci, vi in zip(r["before"]["indices"].long(), r["before"]["values"])]
        for row, (cols, vals) in enumerate(zip(indices.tolist(), r["values"].tolist())):
            for slot, (c, v) in enumerate(zip(cols, vals)):
                if (c, v) not in kept[row]:  # a regrown connection starts from zero, state included
                    regrown_total += 1
                    assert v == 0.0 and r["exp_avg"][row, slot] == 0 and r["exp_avg_sq"][row, slot] == 0
    assert regrown_total > 0
    assert rewire[0]["n_moved"] == rewire[1]["n_moved"] == regrown_total  # summed over the shards


# -- end to end, through `xmcfit train --nproc 2` -------------------------------------------------------


@pytest.fixture(scope="module")
def bow_data(tmp_path_factory) -> Path:
    """120 train / 30 test bag-of-words points, 40 features, 10 labels (two or three per point)."""
    rng = np.random.default_rng(1)
    data = tmp_path_factory.mktemp("bow")

    def lines(n):
        out = [f"{n} 40 {N_BOW_LABELS}"]
        for _ in range(n):
            labels = sorted(rng.choice(N_BOW_LABELS, rng.integers(2, 4), replace=False))
            feats = sorted(set(rng.choice(40, 6).tolist()) | {int(labels[0]) * 4})  # feature 4l says label l
            out.append(",".join(map(str, labels)) + " " + " ".join(f"{f}:1" for f in feats))
        return "\n".join(out) + "\n"

    (data / "toy_train.txt").write_text(lines(120))
    (data / "toy_test.txt").write_text(lines(30))
    return data


def _xmcfit(*args: str, popen: bool = False, **popen_kwargs) -> subprocess.CompletedProcess | subprocess.Popen:
    """`python -m xmcfit ARGS` outside any torchrun environment: run to the end, or started (popen=True)."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["PYTHONPATH"] = str(ROOT)
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "xmcfit", *args]
    if popen:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **popen_kwargs)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def sharded_plan(tmp_path_factory) -> Path:
    """6 epochs of 8 steps (120 points, micro-batch 8 on each of 2 devices), rewiring every 3 steps, with a
    TF-IDF side (its rows split like the classifier's)."""
    plan = on_devices(tiny_plan("bow", N_BOW_LABELS, bow_features=40, fan_in=4, micro_batch=16, epochs=6,
                                aux_clusters=2, tfidf_fan_in=4), 2)
    path = tmp_path_factory.mktemp("plan") / "plan2.json"
    plan.save(path)
    return path


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory, sharded_plan, bow_data) -> Path:
    run = tmp_path_factory.mktemp("runs") / "whole"
    done = _xmcfit("train", str(sharded_plan), "--data", str(bow_data), "--out", str(run), "--nproc", "2",
                   "--device", "cpu")
    assert done.returncode == 0, done.stdout + done.stderr
    return run


def test_a_sharded_run_writes_shards_and_one_model_a_rank_priced_by_its_plan(whole_run):
    checkpoint = whole_run / "checkpoint"
    assert {p.name for p in checkpoint.glob("shard-*")} == {"shard-0-of-2", "shard-1-of-2"}
    assert (checkpoint / "step-000000048").is_dir()  # the replicated state, rank 0's
    weights = load_file(str(whole_run / "model.safetensors"))
    assert weights["classifier.values"].shape == weights["tfidf.layer.values"].shape == (N_BOW_LABELS, 4)
    memory = json.loads((whole_run / "memory.json").read_text())  # rank 0's: half the classifier and side
    predicted, measured = memory["predicted_terms_bytes"], memory["measured_terms_bytes"]
    static = STATIC_TERMS + ("tfidf_weights", "tfidf_optimizer_state")
    assert {t: measured[t] for t in static} == {t: predicted[t] for t in static}
    assert measured["classifier_values"] == N_BOW_LABELS // 2 * 4 * 4
    assert measured["tfidf_optimizer_state"] == 2 * N_BOW_LABELS // 2 * 4 * 4  # AdamW's two moments of 5 x 4
    log = [json.loads(line) for line in (whole_run / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 48 and log[-1]["connections_moved"] > 0  # one log, rank 0's, moves of both ranks


def test_a_stopped_then_killed_sharded_run_resumes_to_the_same_weights(tmp_path, whole_run, sharded_plan, bow_data):
    run = tmp_path / "run"
    stopped = _xmcfit("train", str(sharded_plan), "--data", str(bow_data), "--out", str(run), "--nproc", "2",
                      "--device", "cpu", "--max-steps", "11")  # mid-epoch, between rewirings
    assert stopped.returncode == 0 and "stopped at --max-steps 11" in stopped.stderr, stopped.stdout + stopped.stderr
    assert stopped.stderr.count("--resume") == 1  # rank 0 says it; rank 1 and the launcher do not repeat it
    assert "Error:" not in stopped.stderr and "Traceback" not in stopped.stdout + stopped.stderr
    proc = _xmcfit("train", "--resume", str(run), "--nproc", "2", "--device", "cpu", popen=True,
                   start_new_session=True)
    # step 16 ends epoch 2: rank 0 writes its shard, then the replicated state; rank 1 its shard
    written = [run / "checkpoint" / root / "step-000000016" / "state.json" for root in (".", "shard-1-of-2")]
    deadline = time.monotonic() + 240
    while not all(p.exists() for p in written) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both ranks, wherever they are
    proc.wait()
    assert all(p.exists() for p in written) and not (run / "model.safetensors").exists(), \
        "the run ended (or never reached step 16) before it could be killed"
    resumed = _xmcfit("train", "--resume", str(run), "--nproc", "2", "--device", "cpu")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    _assert_same_weights(whole_run, run)


def test_resuming_a_sharded_run_with_another_number_of_processes_is_one_line(whole_run):
    result = CliRunner().invoke(app, ["train", "--resume", str(whole_run), "--nproc", "3", "--device", "cpu"])
    assert result.exit_code == 2, result.output
    assert "the plan is for 2 device(s) (n_devices=2) but 3 processes were started" in result.output
    assert result.output.count("\n") == 1 and "Traceback" not in result.output


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.equal(wa[name], wb[name]), name


def test_evaluating_a_sharded_run_equals_evaluating_its_weights_unsharded(tmp_path, whole_run):
    from xmcfit.atomic import file_sha256
    from xmcfit.plan.schema import Plan
    from xmcfit.rundir import read_run_info, write_run_info

    unsharded = tmp_path / "unsharded"
    shutil.copytree(whole_run, unsharded, ignore=shutil.ignore_patterns("checkpoint"))
    plan = Plan.from_json(whole_run / "plan.json")
    reprice(replace(plan, n_devices=1, training=replace(plan.training, micro_batch=16))).save(unsharded / "plan.json")
    step = whole_run / "checkpoint" / "step-000000048"
    weights = load_file(str(step / "tensors.safetensors"))
    shards = [load_file(str(whole_run / "checkpoint" / f"shard-{r}-of-2" / step.name / "tensors.safetensors"))
              for r in range(2)]
    merged = {k[len("s.train.model."):]: v for k, v in weights.items() if k.startswith("s.train.model.")}
    for key in ("classifier.values", "classifier.indices", "classifier.bias", "tfidf.layer.values",
                "tfidf.layer.indices"):
        merged[key] = torch.cat([s[f"s.model.{key}"] for s in shards])
    save_file(merged, str(unsharded / "model.safetensors"))
    info = read_run_info(unsharded)  # loading checks the weights against the checksum the run recorded
    write_run_info(unsharded, {**info, "weights_sha256": file_sha256(unsharded / "model.safetensors")})
    result = CliRunner().invoke(app, ["eval", str(whole_run), str(unsharded), "--json"])
    assert result.exit_code == 0, result.output
    runs = json.loads(result.output)
    sharded_metrics, unsharded_metrics = (r["metrics"] for r in runs)
    assert sharded_metrics == unsharded_metrics
    assert sharded_metrics["P@1"] > 0


# -- refusals: one line, exit code 2, nothing written ---------------------------------------------------


def _two_device_plan(tmp_path) -> Path:
    path = tmp_path / "plan2.json"
    on_devices(tiny_plan("bow", N_BOW_LABELS, bow_features=40, fan_in=4), 2).save(path)
    return path


@pytest.mark.parametrize("env,args,message", [
    ({}, [], "the plan is for 2 devices (n_devices=2): start 2 processes with `xmcfit train --nproc 2"),
    ({"WORLD_SIZE": "4", "RANK": "0"}, [], "the plan is for 2 device(s) (n_devices=2) but 4 processes were started"),
    ({}, ["--nproc", "3"], "but 3 processes were started"),
    ({}, ["--nproc", "2", "--auto-recover"], "--auto-recover works on one device only"),
    ({"WORLD_SIZE": "2", "RANK": "0"}, ["--nproc", "2"], "--nproc starts torchrun itself"),
])
def test_a_plan_that_does_not_fit_the_processes_is_refused_before_anything_is_written(tmp_path, monkeypatch, bow_data,
                                                                                     env, args, message):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", str(_two_device_plan(tmp_path)), "--data", str(bow_data),
                                      "--out", str(run), *args])
    assert result.exit_code == 2 and message in result.output, result.output
    assert result.output.count("\n") == 1 and "Traceback" not in result.output
    assert not run.exists()


def test_a_rank_other_than_0_leaves_a_shared_error_to_rank_0(tmp_path, monkeypatch, bow_data):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    result = CliRunner().invoke(app, ["train", str(_two_device_plan(tmp_path)), "--data", str(bow_data)])
    assert result.exit_code == 2 and result.output == ""


def test_world_process_checks_and_launcher_import_without_torch():
    code = ("import sys; from xmcfit.train.world import World, check_processes; import xmcfit.train.launch; "
            "assert 'torch' not in sys.modules, 'torch imported'; "
            "assert World.from_env({'RANK': '1', 'WORLD_SIZE': '2'}) == World(1, 2, 0)")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
