"""One parametrized test over backends: torch and Triton (under TRITON_INTERPRET=1 on the CPU) give the
same logits, gradients and chunked losses as a float64 dense reference. Sizes are tiny on purpose:
the interpreter runs each kernel program in numpy."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported (the backend imports it lazily)

import importlib.util  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from xmcfit.sparse import FixedFanInLinear, backend, chunked_loss, dispatch  # noqa: E402

HAS_TRITON = importlib.util.find_spec("triton") is not None
BACKENDS = ["torch", pytest.param("triton", marks=pytest.mark.skipif(not HAS_TRITON, reason="triton missing"))]
SHAPES = [(1, 9, 5, 3, 4), (3, 20, 45, 7, 16), (5, 33, 70, 33, 64)]  # (batch, d, L, k, chunk)


@pytest.fixture(autouse=True)
def poison_outputs(monkeypatch):
    monkeypatch.setattr(backend, "POISON_OUTPUTS", True)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_backend_matches_dense_reference(backend, shape, monkeypatch):
    monkeypatch.setenv(dispatch.BACKEND_ENV, backend)
    batch, d, n_labels, k, chunk = shape
    layer = FixedFanInLinear(d, n_labels, k, chunk_size=chunk)
    assert dispatch.backend_name(layer.values.device) == backend
    x = torch.randn(batch, d, requires_grad=True)
    w = layer.to_dense().double().requires_grad_()
    xd, bd = x.detach().double().requires_grad_(), layer.bias.detach().double().requires_grad_()
    out, ref = layer(x), xd @ w.t() + bd
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5)
    g = torch.randn(batch, n_labels)
    got = torch.autograd.grad(out, [x, layer.values, layer.bias], g)
    want = torch.autograd.grad(ref, [xd, w, bd], g.double())
    want = (want[0], want[1].gather(1, layer.indices.long()), want[2])
    for a, b in zip(got, want):
        torch.testing.assert_close(a.double(), b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["squared_hinge", "bce"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_backend_chunked_loss_matches_dense_reference(backend, kind, monkeypatch):
    monkeypatch.setenv(dispatch.BACKEND_ENV, backend)
    layer = FixedFanInLinear(21, 50, 6)
    x = torch.randn(3, 21, requires_grad=True)
    positives = torch.tensor([[0, 3], [1, 49], [2, 17], [2, 18]])
    loss = chunked_loss(x, layer, positives, kind, chunk_size=16)
    w = layer.to_dense().double().requires_grad_()
    xd = x.detach().double().requires_grad_()
    z = xd @ w.t() + layer.bias.detach().double()
    y = torch.zeros(3, 50, dtype=torch.float64)
    y[positives[:, 0], positives[:, 1]] = 1
    if kind == "bce":
        ref = torch.nn.functional.binary_cross_entropy_with_logits(z, y)
    else:
        ref = torch.clamp(1 - (2 * y - 1) * z, min=0).pow(2).mean()
    torch.testing.assert_close(loss.double(), ref, rtol=1e-5, atol=1e-6)
    gx, gv = torch.autograd.grad(loss, [x, layer.values])
    rx, rw = torch.autograd.grad(ref, [xd, w])
    torch.testing.assert_close(gx.double(), rx, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gv.double(), rw.gather(1, layer.indices.long()), rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not HAS_TRITON, reason="triton missing")
def test_triton_bf16_values_accumulate_in_fp32(monkeypatch):
    monkeypatch.setenv(dispatch.BACKEND_ENV, "triton")
    layer = FixedFanInLinear(40, 30, 12, dtype=torch.bfloat16)
    x = torch.randn(4, 40)
    ref = x.double() @ layer.to_dense().double().t() + layer.bias.double()
    torch.testing.assert_close(layer(x).double(), ref, rtol=1e-5, atol=1e-5)


def test_backend_env_rejects_unknown_name(monkeypatch):
    monkeypatch.setenv(dispatch.BACKEND_ENV, "cuda")
    with pytest.raises(ValueError, match="must be 'torch' or 'triton'"):
        dispatch.backend_name(torch.device("cpu"))


def test_torch_value_gradient_ignores_whatever_memory_it_reuses():
    """grad_values must not read uninitialised memory (sampled_addmm computes beta * input even at
    beta=0): freed NaN-filled blocks of the same size are handed back by the allocator."""
    from xmcfit.sparse import torch_backend

    torch.manual_seed(0)
    n_rows, fan_in, d, batch = 30, 16, 64, 8
    indices = torch.stack([torch.randperm(d)[:fan_in].sort().values for _ in range(n_rows)])
    grad_t, x = torch.randn(n_rows, batch), torch.randn(batch, d)
    expected = (grad_t @ x).gather(1, indices)
    for _ in range(50):
        poison = [torch.full((n_rows * fan_in,), float("nan")) for _ in range(8)]
        del poison
        got = torch_backend.grad_values(grad_t, x, indices)
        torch.testing.assert_close(got, expected)
