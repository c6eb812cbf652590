"""FixedFanInLinear and chunked_loss against a float64 dense reference (torch backend), and bad input."""

import pytest
import torch
from torch import nn

from xmcfit.sparse import FixedFanInLinear, backend, chunked_loss


@pytest.fixture(autouse=True)
def poison_outputs(monkeypatch):
    """Fill every output with NaN before the kernels write it; an unwritten element then fails."""
    monkeypatch.setattr(backend, "POISON_OUTPUTS", True)
    monkeypatch.setenv("XMCFIT_SPARSE_BACKEND", "torch")

SHAPES = [  # (batch, in_features, out_features, fan_in, chunk_size): odd sizes on purpose
    (1, 7, 5, 3, 2),
    (5, 13, 37, 5, 8),
    (4, 30, 64, 30, 64),
    (3, 40, 101, 11, 7),
]


def _reference_loss(z: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "bce":
        return nn.functional.binary_cross_entropy_with_logits(z, y)
    return torch.clamp(1 - (2 * y - 1) * z, min=0).pow(2).mean()


def _random_positives(batch: int, n_labels: int, n_pos: int) -> torch.Tensor:
    return torch.stack([torch.randint(0, batch, (n_pos,)), torch.randint(0, n_labels, (n_pos,))], 1)


def test_init_indices_unique_sorted_and_index_dtype():
    layer = FixedFanInLinear(50, 200, 17, seed=0)
    idx = layer.indices.long()
    assert layer.indices.dtype == torch.int16
    assert (idx[:, 1:] > idx[:, :-1]).all()  # sorted and duplicate-free
    assert idx.min() >= 0 and idx.max() < 50
    assert FixedFanInLinear(40000, 3, 2, seed=0).indices.dtype == torch.int32
    assert layer.values.abs().max() <= 1 / 17**0.5


def test_init_is_deterministic_with_seed_and_columns_cover_inputs():
    a, b = FixedFanInLinear(20, 500, 4, seed=3), FixedFanInLinear(20, 500, 4, seed=3)
    assert torch.equal(a.indices, b.indices) and torch.equal(a.values, b.values)
    counts = torch.bincount(a.indices.long().reshape(-1), minlength=20).float()
    assert counts.min() > 0.5 * counts.mean()  # roughly uniform columns


@pytest.mark.parametrize("shape", SHAPES)
def test_forward_and_grads_match_dense_float64(shape):
    batch, d, n_labels, k, chunk = shape
    layer = FixedFanInLinear(d, n_labels, k, dtype=torch.float64, chunk_size=chunk)
    x = torch.randn(batch, d, dtype=torch.float64, requires_grad=True)
    w = layer.to_dense().requires_grad_()
    out, ref = layer(x), x @ w.t() + layer.bias
    assert out.shape == (batch, n_labels)
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(out)
    gx, gv, gb = torch.autograd.grad(out, [x, layer.values, layer.bias], g)
    rx, rw, rb = torch.autograd.grad(ref, [x, w, layer.bias], g)
    torch.testing.assert_close(gx, rx)
    torch.testing.assert_close(gv, rw.gather(1, layer.indices.long()))
    torch.testing.assert_close(gb, rb)


@pytest.mark.parametrize("kind", ["squared_hinge", "bce"])
@pytest.mark.parametrize("shape", SHAPES)
def test_chunked_loss_matches_dense_formula(shape, kind):
    batch, d, n_labels, k, chunk = shape
    layer = FixedFanInLinear(d, n_labels, k, dtype=torch.float64)
    x = torch.randn(batch, d, dtype=torch.float64, requires_grad=True)
    positives = _random_positives(batch, n_labels, 2 * batch)
    loss = chunked_loss(x, layer, positives, kind, chunk_size=chunk)
    w = layer.to_dense().requires_grad_()
    y = torch.zeros(batch, n_labels, dtype=torch.float64)
    y[positives[:, 0], positives[:, 1]] = 1
    ref = _reference_loss(x @ w.t() + layer.bias, y, kind)
    torch.testing.assert_close(loss, ref)
    gx, gv, gb = torch.autograd.grad(loss, [x, layer.values, layer.bias])
    rx, rw, rb = torch.autograd.grad(ref, [x, w, layer.bias])
    torch.testing.assert_close(gx, rx)
    torch.testing.assert_close(gv, rw.gather(1, layer.indices.long()))
    torch.testing.assert_close(gb, rb)


@pytest.mark.parametrize("kind", ["squared_hinge", "bce"])
def test_chunked_loss_on_dense_linear_matches_formula(kind):
    dense = nn.Linear(9, 23, dtype=torch.float64)
    x = torch.randn(4, 9, dtype=torch.float64, requires_grad=True)
    positives = _random_positives(4, 23, 6)
    loss = chunked_loss(x, dense, positives, kind, chunk_size=5)
    y = torch.zeros(4, 23, dtype=torch.float64)
    y[positives[:, 0], positives[:, 1]] = 1
    ref = _reference_loss(dense(x), y, kind)
    torch.testing.assert_close(loss, ref)
    got = torch.autograd.grad(loss, [x, dense.weight, dense.bias])
    want = torch.autograd.grad(ref, [x, dense.weight, dense.bias])
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


def test_chunked_loss_scales_with_upstream_gradient_and_works_without_bias():
    layer = FixedFanInLinear(8, 19, 3, bias=False, dtype=torch.float64)
    x = torch.randn(2, 8, dtype=torch.float64)
    positives = torch.tensor([[0, 18], [1, 0]])
    (3.0 * chunked_loss(x, layer, positives, chunk_size=4)).backward()
    w = layer.to_dense().requires_grad_()
    y = torch.zeros(2, 19, dtype=torch.float64)
    y[positives[:, 0], positives[:, 1]] = 1
    (3.0 * _reference_loss(x @ w.t(), y, "squared_hinge")).backward()
    torch.testing.assert_close(layer.values.grad, w.grad.gather(1, layer.indices.long()))


def test_fp32_layer_close_to_float64_reference():
    layer = FixedFanInLinear(64, 300, 9, chunk_size=128)
    x = torch.randn(6, 64)
    ref = x.double() @ layer.to_dense().double().t() + layer.bias.double()
    torch.testing.assert_close(layer(x).double(), ref, rtol=1e-5, atol=1e-5)


def test_rejects_fan_in_out_of_range():
    with pytest.raises(ValueError, match="fan_in=9"):
        FixedFanInLinear(8, 4, 9)
    with pytest.raises(ValueError, match="fan_in=0"):
        FixedFanInLinear(8, 4, 0)


def test_rejects_wrong_input_width_and_nan():
    layer = FixedFanInLinear(8, 4, 2)
    with pytest.raises(ValueError, match="input width 7"):
        layer(torch.randn(2, 7))
    x = torch.randn(2, 8)
    x[1, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        layer(x)
    with pytest.raises(ValueError, match="NaN"):
        chunked_loss(x, layer, torch.tensor([[0, 1]]))


def test_chunked_loss_rejects_bad_positives():
    layer = FixedFanInLinear(8, 4, 2)
    x = torch.randn(2, 8)
    with pytest.raises(ValueError, match="label id out of range"):
        chunked_loss(x, layer, torch.tensor([[0, 4]]))
    with pytest.raises(ValueError, match="label id out of range"):
        chunked_loss(x, layer, torch.tensor([[0, -1]]))
    with pytest.raises(ValueError, match="row id out of range"):
        chunked_loss(x, layer, torch.tensor([[2, 0]]))
    with pytest.raises(ValueError, match="expected \\(n_pos, 2\\)"):
        chunked_loss(x, layer, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="loss='mse'"):
        chunked_loss(x, layer, torch.tensor([[0, 1]]), loss="mse")
