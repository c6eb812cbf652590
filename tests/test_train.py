"""Trainer: complete run directories, exact resume, every classifier/precision path, clear failures."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from plan_factory import tiny_plan
from plan_factory import train_plan as _train
from xmcfit.errors import XmcfitError
from xmcfit.train.loop import TrainingStopped, _recovery_plan
from xmcfit.rundir import DataOptions, prepare_run_dir
from xmcfit.train.data import load_train_data
from xmcfit.train.schedules import cosine_decay, fraction_step, warmup_cosine

N_LABELS = 40


def test_training_writes_a_complete_run_directory(tmp_path, tiny_encoder_dir, synth_dir):
    plan = tiny_plan(str(tiny_encoder_dir), N_LABELS, epochs=1)
    result = _train(plan, tmp_path / "run", synth_dir)
    names = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"plan.json", "run.json", "labels.json", "label_counts.npy", "encoder", "clusters.npy",
            "train_log.jsonl", "checkpoint", "model.safetensors", "memory.json"} <= names
    assert result.steps == 15  # 240 points / micro-batch 16, one epoch
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["status"] == "done" and info["epochs_done"] == 1
    memory = json.loads((tmp_path / "run" / "memory.json").read_text())
    assert memory["measured_peak_bytes"] > 0
    assert memory["measured_terms_bytes"]["classifier_values"] == N_LABELS * 8 * 4
    assert memory["measured_terms_bytes"]["classifier_indices"] == N_LABELS * 8 * 2  # int16 indices
    _assert_static_terms_match_the_plan(memory)
    assert np.isfinite(result.final_loss)


def test_interrupted_and_resumed_run_ends_with_the_same_weights(tmp_path, tiny_encoder_dir, synth_dir):
    plan = tiny_plan(str(tiny_encoder_dir), N_LABELS, epochs=2, grad_accum=2)
    _train(plan, tmp_path / "whole", synth_dir)
    with pytest.raises(TrainingStopped, match="--resume"):
        _train(plan, tmp_path / "split", synth_dir, max_steps=5)  # mid-epoch, mid-rewiring schedule
    _train(plan, tmp_path / "split", synth_dir, resume=True)
    whole = load_file(str(tmp_path / "whole" / "model.safetensors"))
    split = load_file(str(tmp_path / "split" / "model.safetensors"))
    assert whole.keys() == split.keys()
    for name in whole:
        assert torch.equal(whole[name], split[name]), name


def test_a_stochastic_rounding_run_resumes_to_the_same_weights(tmp_path, bow_dir):
    plan = tiny_plan("bow", 6, bow_features=30, fan_in=4, epochs=3, aux_clusters=0, micro_batch=8,
                     value_dtype="bfloat16", optimizer="sgd_momentum", rounding="stochastic")
    _train(plan, tmp_path / "whole", bow_dir)
    with pytest.raises(TrainingStopped, match="--resume"):
        _train(plan, tmp_path / "split", bow_dir, max_steps=10)
    _train(plan, tmp_path / "split", bow_dir, resume=True)
    whole = load_file(str(tmp_path / "whole" / "model.safetensors"))
    split = load_file(str(tmp_path / "split" / "model.safetensors"))
    for name in whole:
        assert torch.equal(whole[name], split[name]), name


def test_rewiring_moves_connections_and_keeps_fan_in(tmp_path, tiny_encoder_dir, synth_dir):
    plan = tiny_plan(str(tiny_encoder_dir), N_LABELS, epochs=1)
    moved = []
    _train(plan, tmp_path / "run", synth_dir, on_step=lambda s: moved.append(s.connections_moved))
    assert moved[-1] > 0
    state = load_file(str(tmp_path / "run" / "model.safetensors"))
    indices = state["classifier.indices"].long()
    assert indices.shape == (N_LABELS, 8)
    assert all(len(set(row.tolist())) == 8 for row in indices)


def _assert_static_terms_match_the_plan(memory: dict) -> None:
    """Every persistent tensor family the planner prices is exactly what the trainer held."""
    from xmcfit.train.memory_report import STATIC_TERMS

    predicted, measured = memory["predicted_terms_bytes"], memory["measured_terms_bytes"]
    assert {t: measured[t] for t in STATIC_TERMS} == {t: predicted[t] for t in STATIC_TERMS}


@pytest.mark.parametrize("kind,precision,value_dtype,optimizer,rounding", [
    ("dense", "fp32", "float32", "adamw", "none"),
    ("sparse", "bf16_amp", "float32", "sgd_momentum", "none"),
    ("sparse", "bf16_amp", "bfloat16", "adamw", "kahan"),
    ("sparse", "fp16_amp", "bfloat16", "sgd", "stochastic"),
])
def test_other_classifier_and_precision_paths_train(tmp_path, tiny_encoder_dir, synth_dir, kind, precision,
                                                   value_dtype, optimizer, rounding):
    plan = tiny_plan(str(tiny_encoder_dir), N_LABELS, kind=kind, precision=precision, epochs=1, aux_clusters=0,
                     intermediate_dim=48 if kind == "dense" else 0, value_dtype=value_dtype, optimizer=optimizer,
                     rounding=rounding)
    result = _train(plan, tmp_path / "run", synth_dir)
    assert result.steps == 15 and np.isfinite(result.final_loss)
    _assert_static_terms_match_the_plan(json.loads((tmp_path / "run" / "memory.json").read_text()))


def test_bag_of_words_input_trains(tmp_path, bow_dir):
    data = bow_dir
    plan = tiny_plan("bow", 6, bow_features=30, fan_in=4, epochs=1, aux_clusters=2)
    result = _train(plan, tmp_path / "run", data)
    assert result.steps == 4 and np.isfinite(result.final_loss)
    _assert_static_terms_match_the_plan(json.loads((tmp_path / "run" / "memory.json").read_text()))


def test_a_diverging_run_stops_with_a_clear_message(tmp_path, tiny_encoder_dir, synth_dir):
    from dataclasses import replace

    plan = tiny_plan(str(tiny_encoder_dir), N_LABELS, epochs=3, aux_clusters=0)
    plan = replace(plan, classifier=replace(plan.classifier, lr=1e30))
    with pytest.raises(TrainingStopped, match="not finite"):
        _train(plan, tmp_path / "run", synth_dir)


def test_a_step_with_a_non_finite_gradient_is_skipped_and_training_goes_on(tmp_path, tiny_encoder_dir, synth_dir,
                                                                           monkeypatch):
    from xmcfit.sparse import torch_backend

    real, calls = torch_backend.grad_values, []

    def poisoned_once(*args, **kwargs):  # the loss stays finite; one value gradient is NaN
        calls.append(1)
        out = real(*args, **kwargs)
        return out.fill_(float("nan")) if len(calls) == 3 else out

    monkeypatch.setenv("XMCFIT_SPARSE_BACKEND", "torch")
    monkeypatch.setattr(torch_backend, "grad_values", poisoned_once)
    plan = tiny_plan(str(tiny_encoder_dir), N_LABELS, epochs=1, aux_clusters=0)
    result = _train(plan, tmp_path / "run", synth_dir)
    assert result.skipped_steps == 1 and result.steps == 15 and np.isfinite(result.final_loss)


def test_a_fresh_run_never_overwrites_an_existing_run(tmp_path, tiny_encoder_dir, synth_dir):
    plan = tiny_plan(str(tiny_encoder_dir), N_LABELS)
    prepare_run_dir(plan, tmp_path / "run", DataOptions(str(synth_dir)))
    with pytest.raises(XmcfitError, match="already holds a run"):
        prepare_run_dir(plan, tmp_path / "run", DataOptions(str(synth_dir)))


def test_data_with_another_label_space_is_rejected(tmp_path, tiny_encoder_dir, synth_dir):
    plan = tiny_plan(str(tiny_encoder_dir), N_LABELS + 1)
    prepare_run_dir(plan, tmp_path / "run", DataOptions(str(synth_dir)))
    with pytest.raises(XmcfitError, match="labels but the plan has n_labels=41"):
        load_train_data(plan, tmp_path / "run", DataOptions(str(synth_dir)), resume=False)


def test_out_of_memory_recovery_halves_micro_batch_and_keeps_effective_batch(tmp_path, tiny_encoder_dir):
    from xmcfit.atomic import file_sha256
    from xmcfit.rundir import DataOptions, check_plan_unchanged, prepare_run_dir, read_run_info

    plan = tiny_plan(str(tiny_encoder_dir), N_LABELS, micro_batch=16, grad_accum=2)
    run = tmp_path / "run"
    prepare_run_dir(plan, run, DataOptions(str(tmp_path / "data")))
    smaller = _recovery_plan(plan, run, auto_recover=True)
    assert (smaller.training.micro_batch, smaller.training.grad_accum) == (8, 4)
    assert smaller.effective_batch == plan.effective_batch
    # The run's plan.json is the smaller plan, recorded as the run's own: a resume does not take it for an edit.
    assert read_run_info(run)["plan_sha256"] == file_sha256(run / "plan.json")
    check_plan_unchanged(run, read_run_info(run))
    with pytest.raises(TrainingStopped, match="--micro-batch 8"):
        _recovery_plan(plan, run, auto_recover=False)


def test_schedules_reach_their_end_values_at_the_right_step():
    total = 100
    end = fraction_step(0.66, total)
    assert end == 66
    assert cosine_decay(0, end, 0.25) == 0.25
    assert cosine_decay(end - 1, end, 0.25) > 0.0
    assert cosine_decay(end, end, 0.25) == 0.0 and cosine_decay(end + 10, end, 0.25) == 0.0
    assert warmup_cosine(0, total, 10) == pytest.approx(0.1)
    assert warmup_cosine(9, total, 10) == pytest.approx(1.0)
    assert warmup_cosine(total, total, 10) == pytest.approx(0.0)
    values = [cosine_decay(s, end, 0.4) for s in range(end + 1)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_an_out_of_memory_step_saves_and_goes_on_with_half_the_micro_batch(tmp_path, tiny_encoder_dir, synth_dir,
                                                                            monkeypatch):
    from xmcfit.plan.schema import Plan
    from xmcfit.train import epoch

    real, calls = epoch.train_step, []

    def out_of_memory_once(parts, micro, step):
        calls.append(step)
        if len(calls) == 4:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(parts, micro, step)

    monkeypatch.setattr(epoch, "train_step", out_of_memory_once)
    plan = tiny_plan(str(tiny_encoder_dir), N_LABELS, epochs=1, aux_clusters=0)
    with pytest.raises(TrainingStopped, match="out of GPU memory at micro-batch 16"):
        _train(plan, tmp_path / "stopped", synth_dir)
    assert (tmp_path / "stopped" / "checkpoint" / "step-000000003").is_dir()
    calls.clear()
    result = _train(plan, tmp_path / "run", synth_dir, auto_recover=True)
    assert result.steps == 15 and np.isfinite(result.final_loss)
    assert Plan.from_json(tmp_path / "run" / "plan.json").training.micro_batch == 8
