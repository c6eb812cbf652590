"""Memory model: parameter, gradient and optimizer-state bytes equal those of real modules."""

from __future__ import annotations

import math

import pytest

from xmcfit.dtypes import DTYPE_BYTES
from xmcfit.plan import memory
from xmcfit.plan.schema import EncoderSpec
from xmcfit.plan.profiles import load_encoder

torch = pytest.importorskip("torch")


def _bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _layout(**over) -> memory.Layout:
    base = dict(encoder=load_encoder("all-MiniLM-L6-v2").to_spec(), seq_len=64, precision="bf16_amp",
                gradient_checkpointing=False, micro_batch=8, grad_accum=1, pooling="mean", intermediate_dim=0,
                classifier_kind="sparse", n_labels=1000, fan_in=32, value_dtype="float32", optimizer="adamw",
                weight_decay=1e-4, update_rounding="none", loss_chunk_size=256, bias=True, aux_enabled=True,
                n_clusters=16, rewiring_enabled=True, rewiring_chunk_rows=128)
    base.update(over)
    return memory.Layout(**base)


def test_encoder_weight_grad_and_adamw_bytes_equal_a_real_bert():
    transformers = pytest.importorskip("transformers")
    spec = load_encoder("all-MiniLM-L6-v2").to_spec()
    cfg = transformers.BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                                  intermediate_size=1536)
    with torch.device("meta"):
        model = transformers.BertModel(cfg, add_pooling_layer=False)  # xmcfit pools itself
    params = list(model.parameters())
    assert memory.encoder_weight_bytes(spec) == _bytes(params)
    assert memory.encoder_grad_bytes(spec) == _bytes(params)  # grads: same shape and dtype
    # AdamW state: exp_avg and exp_avg_sq, each like the parameter (step counters are scalars).
    assert memory.encoder_optimizer_bytes(spec) == 2 * _bytes(params)


def _sparse_layer(layout: memory.Layout, dtype):
    from xmcfit.sparse import FixedFanInLinear

    return FixedFanInLinear(layout.features_dim, layout.n_labels, layout.fan_in, bias=layout.bias, dtype=dtype)


@pytest.mark.parametrize("optimizer", ["adamw", "sgd_momentum", "sgd"])
def test_sparse_classifier_bytes_equal_fixed_fan_in_linear_and_its_optimizer(optimizer):
    layout = _layout(optimizer=optimizer)
    layer = _sparse_layer(layout, torch.float32)
    assert memory.classifier_value_bytes(layout) == _bytes([layer.values])
    assert memory.classifier_index_bytes(layout) == _bytes([layer.indices])
    assert memory.classifier_bias_bytes(layout) == _bytes([layer.bias])
    params = [layer.values, layer.bias]
    opt_cls = torch.optim.AdamW if optimizer == "adamw" else torch.optim.SGD
    kwargs = {"momentum": 0.9} if optimizer == "sgd_momentum" else {}
    opt = opt_cls(params, lr=0.01, **kwargs)
    out = layer(torch.randn(4, layout.features_dim))
    out.square().sum().backward()
    assert memory.classifier_grad_bytes(layout) == _bytes([p.grad for p in params])
    opt.step()
    state = [t for s in opt.state.values() for t in s.values() if torch.is_tensor(t) and t.dim() > 0]
    assert memory.classifier_optimizer_bytes(layout) == _bytes(state)


def test_workspace_terms_agree_with_the_sparse_engine():
    from xmcfit import sparse

    for over in ({}, {"value_dtype": "bfloat16"}, {"fan_in": 24, "loss_chunk_size": 999, "micro_batch": 3}):
        layout = _layout(**over)
        assert memory.rewiring_workspace_bytes(layout) == sparse.rewire_workspace_bytes(
            layout.rewiring_chunk_rows, layout.features_dim, layout.fan_in,
            DTYPE_BYTES[layout.value_dtype])
        chunk = min(layout.loss_chunk_size, layout.n_labels)
        assert memory.loss_workspace_bytes(layout) == sparse.loss_workspace_bytes(
            layout.micro_batch, chunk, layout.fan_in, layout.features_dim)
        dense = layout.as_dense()
        assert memory.loss_workspace_bytes(dense) == sparse.loss_workspace_bytes(
            layout.micro_batch, chunk, None, layout.features_dim)


def test_bf16_sparse_bias_is_stored_in_bf16():
    layout = _layout(value_dtype="bfloat16")
    layer = _sparse_layer(layout, torch.bfloat16)
    assert memory.classifier_bias_bytes(layout) == _bytes([layer.bias])
    assert memory.classifier_value_bytes(layout) == _bytes([layer.values])


def test_bf16_kahan_classifier_adds_one_bf16_buffer_per_value_and_bias():
    fp32 = _layout(value_dtype="bfloat16", update_rounding="none")
    kahan = _layout(value_dtype="bfloat16", update_rounding="kahan")
    n_values = fp32.n_labels * fp32.fan_in
    n_entries = n_values + fp32.n_labels  # values and bias
    assert memory.classifier_optimizer_bytes(kahan) - memory.classifier_optimizer_bytes(fp32) == 2 * n_entries
    assert memory.classifier_value_bytes(kahan) == 2 * n_values


def test_dense_classifier_bytes_equal_nn_linear_with_adamw():
    layout = _layout().as_dense()
    with torch.device("meta"):
        linear = torch.nn.Linear(layout.features_dim, layout.n_labels)
    assert memory.classifier_value_bytes(layout) + memory.classifier_bias_bytes(layout) == _bytes(linear.parameters())
    assert memory.classifier_index_bytes(layout) == 0
    assert memory.classifier_optimizer_bytes(layout) == 2 * _bytes(linear.parameters())


def test_classifier_rows_are_sharded_per_device_rounding_up():
    one = _layout(n_labels=1001)
    four = _layout(n_labels=1001, n_devices=4)
    assert four.rows_per_device == 251
    assert memory.classifier_value_bytes(four) == 251 * one.fan_in * 4
    assert memory.encoder_weight_bytes(four.encoder) == memory.encoder_weight_bytes(one.encoder)


def test_peak_is_resident_plus_largest_phase_plus_reserves():
    est = memory.predict(_layout())
    t = est.terms_bytes
    assert est.predicted_peak_bytes == sum(t[n] for n in est.peak_terms)
    assert est.predicted_peak_bytes < sum(t.values())  # not everything coexists
    assert "cuda_context" in est.peak_terms and "fragmentation_margin" in est.peak_terms


def test_checkpointing_lowers_activations_and_amp_lowers_them_further():
    spec = load_encoder("bert-base-uncased").to_spec()
    fp32 = memory.encoder_activation_bytes(spec, 128, 32, "fp32", False)
    amp = memory.encoder_activation_bytes(spec, 128, 32, "bf16_amp", False)
    ckpt = memory.encoder_activation_bytes(spec, 128, 32, "bf16_amp", True)
    assert ckpt < amp < fp32


def test_every_dtype_a_plan_names_has_a_size_and_a_torch_dtype():
    import typing

    from xmcfit.dtypes import AUTOCAST_DTYPE, torch_dtype
    from xmcfit.plan.schema import IndexDtype, Precision, ValueDtype

    names = set(typing.get_args(ValueDtype)) | set(typing.get_args(IndexDtype))
    names |= {n for n in AUTOCAST_DTYPE.values() if n is not None}
    assert set(AUTOCAST_DTYPE) == set(typing.get_args(Precision))
    for name in names:
        assert torch.empty(0, dtype=torch_dtype(name)).element_size() == DTYPE_BYTES[name]


def test_every_term_the_memory_model_emits_is_in_the_registry():
    from xmcfit.plan import phases, terms
    from xmcfit.train.memory_report import STATIC_TERMS
    plain, widest = _layout(), _layout(n_devices=4, tfidf_n_words=500, tfidf_fan_in=8)  # every optional term
    emitted = set(memory.predict(plain).terms_bytes) | set(memory.predict(widest).terms_bytes)
    assert emitted == set(terms.ALL_TERMS)
    assert len(set(terms.ALL_TERMS)) == len(terms.ALL_TERMS)
    grouped = (phases.RESIDENT + phases.BACKWARD + phases.STEP + phases.REWIRING + phases.RESERVES + phases.OPTIONAL
               + STATIC_TERMS)
    assert set(grouped) <= set(terms.ALL_TERMS)
