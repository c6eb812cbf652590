"""The memory model against real modules: parameter/optimizer bytes of meta-device modules, and encoder
activation bytes against the tensors a real HF BertModel (sdpa) saves for backward on the CPU."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from xmcfit.model import enable_checkpointing  # noqa: E402
from xmcfit.plan import memory  # noqa: E402
from xmcfit.plan.schema import EncoderSpec  # noqa: E402

TOLERANCE = 0.10
SHAPES = [  # hidden, layers, heads, intermediate, batch, seq
    (64, 2, 4, 256, 4, 32),
    (64, 4, 4, 256, 4, 32),
    (128, 2, 4, 512, 4, 32),
    (64, 2, 8, 128, 8, 64),
]


def _config(h: int, n_layers: int, a: int, i: int):
    # Attention dropout 0: with it on, the CPU runs SDPA's unfused math kernel (keeps s x s scores);
    # CUDA's memory-efficient kernel never does, and that is what the planner prices. Hidden dropout stays.
    return transformers.BertConfig(vocab_size=1000, hidden_size=h, num_hidden_layers=n_layers, num_attention_heads=a,
                                   intermediate_size=i, max_position_embeddings=128, attention_probs_dropout_prob=0.0,
                                   attn_implementation="sdpa")


def _spec(h: int, n_layers: int, a: int, i: int) -> EncoderSpec:
    return EncoderSpec(name="tiny", kind="text", n_params=1, hidden_size=h, n_layers=n_layers, n_heads=a,
                       intermediate_size=i, vocab_size=1000, max_seq_len=128)


def _saved_bytes(shape, amp: bool, checkpointing: bool) -> tuple[int, int]:
    """(activation bytes, weight-copy bytes) saved for backward by one mean-pooled training forward."""
    h, n_layers, a, i, b, s = shape
    torch.manual_seed(0)
    model = transformers.BertModel(_config(h, n_layers, a, i), add_pooling_layer=False).train()
    if checkpointing:
        enable_checkpointing(model)  # as the trainer does
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    casts = [p.detach().to(torch.bfloat16) for p in model.parameters() if p.dim() == 2]
    saved: dict[int, tuple[int, bool]] = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            is_weight_copy = t.dtype == torch.bfloat16 and any(
                c.shape == w.shape and torch.equal(c, w) for c in casts for w in ((t.detach(), t.detach().mT) if t.dim() == 2 else (t.detach(),)))
            saved[storage.data_ptr()] = (storage.nbytes(), is_weight_copy)
        return t

    ids = torch.randint(0, 1000, (b, s))
    mask = torch.ones(b, s, dtype=torch.long)
    mask[:, s - 3:] = 0
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
            m = mask.unsqueeze(-1).float()
            pooled = (hidden * m).sum(1) / m.sum(1)  # mean pooling, as the trainer does
            loss = pooled.float().pow(2).sum()
    loss.backward()
    weights = sum(n for n, w in saved.values() if w)
    return sum(n for n, w in saved.values() if not w), weights


@pytest.mark.parametrize("amp", [False, True], ids=["fp32", "bf16_amp"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_activation_model_matches_saved_tensors_without_checkpointing(shape, amp):
    h, n_layers, a, i, b, s = shape
    measured, copies = _saved_bytes(shape, amp, checkpointing=False)
    precision = "bf16_amp" if amp else "fp32"
    # On the CPU a dropout mask has the dtype of the tensor it drops (CUDA: bool).
    predicted = _cpu_prediction(_spec(h, n_layers, a, i), s, b, precision, checkpointing=False)
    assert abs(predicted - measured) / measured < TOLERANCE, (predicted, measured)
    expected_copies = memory.amp_weight_copy_bytes(_spec(h, n_layers, a, i), precision, False)
    assert copies == expected_copies


@pytest.mark.parametrize("amp", [False, True], ids=["fp32", "bf16_amp"])
@pytest.mark.parametrize("shape", SHAPES[:2], ids=str)
def test_activation_model_matches_saved_tensors_with_checkpointing(shape, amp):
    """Checkpointed peak = what the checkpointed forward keeps + one layer recomputed in backward; the
    recomputed layer is measured as the difference between n and n-1 layers without checkpointing."""
    h, n_layers, a, i, b, s = shape
    kept, _ = _saved_bytes(shape, amp, checkpointing=True)
    full_n, _ = _saved_bytes(shape, amp, checkpointing=False)
    full_n_minus_1, _ = _saved_bytes((h, n_layers - 1, a, i, b, s), amp, checkpointing=False)
    measured = kept + (full_n - full_n_minus_1)
    precision = "bf16_amp" if amp else "fp32"
    predicted = _cpu_prediction(_spec(h, n_layers, a, i), s, b, precision, checkpointing=True)
    assert abs(predicted - measured) / measured < TOLERANCE, (predicted, measured)


def _cpu_prediction(spec, s, b, precision, checkpointing):
    # CPU dropout masks: the hidden-state dropouts act on 16-bit tensors under AMP, on fp32 otherwise;
    # the model's per-layer term takes one mask width, so use the layer's and correct the embedding's.
    layer_mask = 2 if precision == "bf16_amp" else 4
    predicted = memory.encoder_activation_bytes(spec, s, b, precision, checkpointing, "mean",
                                                dropout_mask_bytes=layer_mask)
    return predicted + b * s * spec.hidden_size * (4 - layer_mask)


def _eager_saved_bytes(model_cls, config, b: int, s: int) -> int:
    """Activation bytes an eager-attention encoder saves for backward in one fp32 mean-pooled forward."""
    torch.manual_seed(0)
    model = model_cls(config).train()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t):
        if t.untyped_storage().data_ptr() not in params:
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    ids = torch.randint(5, 1000, (b, s))
    mask = torch.ones(b, s, dtype=torch.long)
    mask[:, s - 3:] = 0
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).float()
        ((hidden * m).sum(1) / m.sum(1)).pow(2).sum().backward()
    return sum(saved.values())


@pytest.mark.parametrize("arch", ["mpnet", "deberta-v2"])
@pytest.mark.parametrize("shape", [SHAPES[0], SHAPES[3]], ids=str)
def test_eager_attention_encoders_are_priced_with_their_s_by_s_probabilities(shape, arch):
    """MPNet and DeBERTa-v2 have no SDPA path: each layer keeps heads x s x s probabilities, which an
    SDPA-priced plan would miss (a third to a half of their activations at these shapes)."""
    from dataclasses import replace

    h, n_layers, a, i, b, s = shape
    kw = dict(vocab_size=1000, hidden_size=h, num_hidden_layers=n_layers, num_attention_heads=a, intermediate_size=i,
              max_position_embeddings=130)
    if arch == "mpnet":
        measured = _eager_saved_bytes(lambda c: transformers.MPNetModel(c, add_pooling_layer=False),
                                      transformers.MPNetConfig(**kw), b, s)
    else:
        measured = _eager_saved_bytes(transformers.DebertaV2Model, transformers.DebertaV2Config(**kw), b, s)
    spec = replace(_spec(h, n_layers, a, i), attention="eager")
    predicted = memory.encoder_activation_bytes(spec, s, b, "fp32", False, "mean", attention="math",
                                                dropout_mask_bytes=4)
    assert abs(predicted - measured) / measured < TOLERANCE, (predicted, measured)
    sdpa_priced = _cpu_prediction(_spec(h, n_layers, a, i), s, b, "fp32", checkpointing=False)
    assert (measured - sdpa_priced) / measured > 0.15  # what the plan missed before


def test_a_plan_prices_an_eager_encoder_with_the_math_kernel_term():
    from dataclasses import replace

    spec = _spec(64, 2, 4, 256)
    layout = memory.Layout(encoder=spec, seq_len=32, precision="fp32", gradient_checkpointing=False, micro_batch=4,
                           grad_accum=1, pooling="mean", intermediate_dim=0, classifier_kind="dense", n_labels=10,
                           fan_in=64, value_dtype="float32", optimizer="adamw", weight_decay=0.0,
                           update_rounding="none", loss_chunk_size=10, bias=True, aux_enabled=False, n_clusters=0,
                           rewiring_enabled=False, rewiring_chunk_rows=1)
    eager = replace(layout, encoder=replace(spec, attention="eager"))
    extra = memory.memory_terms(eager)["encoder_activations"] - memory.memory_terms(layout)["encoder_activations"]
    assert extra == 4 * 32 * 2 * 3 * 4 * 32 * 4  # batch x seq x layers x (3 a s fp32 values)
