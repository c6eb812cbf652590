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
