"""The memory model priced for a CPU run (Layout.on_cpu): the torch backend's pattern cache, torch's
single-tensor AdamW, no CUDA reserves; and the pure-bf16 optimizers' sliced workspace on any device."""

from __future__ import annotations

from dataclasses import replace

import pytest

from plan_factory import tiny_plan
from xmcfit.plan import memory

torch = pytest.importorskip("torch")


def _bow_plan(**over):
    return tiny_plan("bow", 300, bow_features=50, fan_in=8, epochs=1, aux_clusters=0, **over)


def test_cpu_pricing_drops_the_cuda_context_and_the_caching_allocator_margin():
    est = memory.predict(memory.Layout.on_cpu(_bow_plan()))
    assert est.terms_bytes["cuda_context"] == 0
    assert est.terms_bytes["fragmentation_margin"] == 0
    gpu = memory.predict(memory.Layout.from_plan(_bow_plan()))
    assert gpu.terms_bytes["cuda_context"] == memory.CUDA_CONTEXT_BYTES
    assert gpu.terms_bytes["classifier_pattern_cache"] == 0  # Triton kernels keep no pattern


def test_pattern_cache_term_equals_what_the_torch_backend_caches():
    from xmcfit.sparse import FixedFanInLinear, chunked_loss

    plan = _bow_plan()
    layout = memory.Layout.on_cpu(plan)
    layer = FixedFanInLinear(layout.features_dim, layout.n_labels, layout.fan_in, seed=0)
    x = torch.randn(4, layout.features_dim, requires_grad=True)
    positives = torch.tensor([[0, 1], [3, 7]])
    chunked_loss(x, layer, positives, chunk_size=layout.loss_chunk_size).backward()
    assert layer.cached_pattern_bytes() == memory.classifier_pattern_cache_bytes(layout) > 0


def test_cpu_adamw_workspace_is_two_copies_of_the_largest_parameter():
    layout = memory.Layout.on_cpu(_bow_plan())
    values = memory.classifier_value_bytes(layout)
    embedding = layout.encoder.vocab_size * layout.encoder.hidden_size * memory.FP32_BYTES
    assert memory.optimizer_step_workspace_bytes(layout) == 2 * max(values, embedding)
    sgd = replace(layout, optimizer="sgd", weight_decay=0.0)
    assert memory.optimizer_step_workspace_bytes(sgd) == 2 * embedding  # plain SGD: no classifier temporary


def test_pure_bf16_workspace_is_one_slice_of_the_low_precision_optimizer():
    from xmcfit.sparse.lowprec_optim import DEFAULT_CHUNK_NUMEL

    assert memory.LOWPREC_CHUNK_NUMEL == DEFAULT_CHUNK_NUMEL
    layout = memory.Layout.from_plan(_bow_plan(value_dtype="bfloat16", rounding="kahan"))  # any device
    numel = layout.n_labels * layout.fan_in  # under one slice
    assert memory.lowprec_step_workspace_bytes(layout) == numel * 30
    huge = replace(layout, n_labels=10**7, optimizer="sgd_momentum")
    assert memory.lowprec_step_workspace_bytes(huge) == DEFAULT_CHUNK_NUMEL * 22


def test_training_reports_the_pattern_cache_it_held(tmp_path, bow_dir):
    from xmcfit.train.loop import run_training
    from xmcfit.rundir import DataOptions, prepare_run_dir
    from xmcfit.train.data import load_train_data

    plan = tiny_plan("bow", 6, bow_features=30, fan_in=4, epochs=1, aux_clusters=0)
    options = DataOptions(str(bow_dir))
    prepare_run_dir(plan, tmp_path / "run", options)
    data = load_train_data(plan, tmp_path / "run", options, resume=False)
    result = run_training(plan, tmp_path / "run", data, device="cpu")
    measured = result.memory.measured_terms_bytes["classifier_pattern_cache"]
    assert measured == memory.classifier_pattern_cache_bytes(memory.Layout.on_cpu(plan)) > 0
