"""What the trainer holds besides a step's tensors: the checkpoint write and the out-of-memory recovery."""

from __future__ import annotations

import gc
import json
import weakref

import pytest
import torch

from plan_factory import tiny_plan
from xmcfit.train import checkpoint as ckpt
from xmcfit.train import loop, setup
from xmcfit.rundir import DataOptions, prepare_run_dir
from xmcfit.train.data import load_train_data


def test_checkpoint_write_does_not_copy_cpu_tensors():
    values = torch.randn(1000, 8)
    tensors: dict[str, torch.Tensor] = {}
    ckpt.flatten_state("s", {"model": {"values": values}}, tensors)
    assert tensors["s.model.values"].data_ptr() == values.data_ptr()  # written from the live tensor, no clone


def test_out_of_memory_recovery_frees_the_failed_model_and_finishes_at_half_micro_batch(tmp_path, bow_dir, monkeypatch):
    """A CUDA out-of-memory error inside a step, simulated on the CPU by a forward hook (a CPU has no allocator
    cap): the trainer must drop the failed step (activations, old model, optimizer) before the resumed run."""
    plan = tiny_plan("bow", 6, bow_features=30, fan_in=4, epochs=1, aux_clusters=0, micro_batch=16)
    built: list[weakref.ref] = []
    real_build = setup.build_model

    def build_with_allocator_limit(plan, *args, **kwargs):
        model = real_build(plan, *args, **kwargs)
        built.append(weakref.ref(model))

        def hook(module, inputs):
            if inputs[1].shape[0] > 8:  # feat_offsets: one per point of the micro-batch
                raise torch.OutOfMemoryError("simulated: CUDA out of memory")

        model.encoder.register_forward_pre_hook(hook)
        return model

    monkeypatch.setattr(setup, "build_model", build_with_allocator_limit)
    run_dir = tmp_path / "run"
    options = DataOptions(str(bow_dir))
    prepare_run_dir(plan, run_dir, options)
    data = load_train_data(plan, run_dir, options, resume=False)
    first_model_alive: list[bool] = []

    def on_step(stats) -> None:
        gc.collect()
        first_model_alive.append(built[0]() is not None)

    result = loop.run_training(plan, run_dir, data, device="cpu", auto_recover=True, on_step=on_step)
    assert len(built) == 2 and first_model_alive and not any(first_model_alive)
    saved = json.loads((run_dir / "plan.json").read_text())["training"]
    assert (saved["micro_batch"], saved["grad_accum"]) == (8, 2)
    assert result.steps == 4  # 60 points / (8 x 2), all after the recovery
    with pytest.raises(loop.TrainingStopped, match="--micro-batch 8"):
        loop._recovery_plan(plan, run_dir, auto_recover=False)
