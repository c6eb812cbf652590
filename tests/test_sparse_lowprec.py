"""Pure-bf16 optimizers: with compensation or stochastic rounding they track an fp32 run over many
small steps where naive bf16 updates stall; in fp32 they match torch's optimizers."""

import pytest
import torch

from xmcfit.sparse.lowprec_optim import LowPrecisionAdamW, LowPrecisionSGD, stochastic_round_to_bf16


def _run(cls, dtype, p0, grads, **kw):
    p = torch.nn.Parameter(p0.clone().to(dtype))
    opt = cls([p], **kw)
    for g in grads:
        p.grad = g.to(dtype, copy=True)
        opt.step()
    return p.detach().float()


@pytest.mark.parametrize("cls,kw", [(LowPrecisionSGD, dict(lr=0.1, momentum=0.0)),
                                    (LowPrecisionSGD, dict(lr=0.01, momentum=0.9)),
                                    (LowPrecisionAdamW, dict(lr=1e-4, weight_decay=0.01))])
def test_bf16_updates_track_fp32_far_better_than_naive(cls, kw):
    torch.manual_seed(0)
    p0 = torch.randn(2048) + 2.0
    grads = [1e-3 * (1 + 0.2 * torch.randn(2048)) for _ in range(600)]  # steps far below a bf16 ulp
    ref = _run(cls, torch.float32, p0, grads, rounding="nearest", **kw)
    moved = (ref - p0).norm()

    def rel(rounding):
        return float((_run(cls, torch.bfloat16, p0, grads, rounding=rounding, seed=0, **kw) - ref).norm() / moved)

    naive, kahan, stochastic = rel("nearest"), rel("kahan"), rel("stochastic")
    assert naive > 0.5  # naive bf16 loses most of the movement
    assert kahan < 0.1 * naive
    assert stochastic < 0.5 * naive


def test_fp32_matches_torch_optimizers():
    torch.manual_seed(0)
    p0, grads = torch.randn(64), [torch.randn(64) for _ in range(20)]
    ours = _run(LowPrecisionSGD, torch.float32, p0, grads, lr=0.1, momentum=0.9, weight_decay=0.01)
    theirs = _run(torch.optim.SGD, torch.float32, p0, grads, lr=0.1, momentum=0.9, weight_decay=0.01)
    torch.testing.assert_close(ours, theirs)
    ours = _run(LowPrecisionAdamW, torch.float32, p0, grads, lr=0.01)
    theirs = _run(torch.optim.AdamW, torch.float32, p0, grads, lr=0.01, weight_decay=0.0)
    torch.testing.assert_close(ours, theirs)


def test_stochastic_rounding_is_unbiased():
    x = torch.full((200000,), 1.0 + 2**-10)  # a quarter of the way between two bf16 neighbours
    mean = stochastic_round_to_bf16(x, torch.Generator().manual_seed(0)).float().mean()
    assert mean.item() == pytest.approx(1.0 + 2**-10, abs=2e-5)


def test_state_is_bf16_for_bf16_parameters():
    p = torch.nn.Parameter(torch.randn(10, dtype=torch.bfloat16))
    opt = LowPrecisionAdamW([p], lr=1e-3)
    p.grad = torch.randn_like(p)
    opt.step()
    assert all(opt.state[p][k].dtype == torch.bfloat16 for k in ("exp_avg", "exp_avg_sq", "kahan_comp"))


def test_rejects_unknown_rounding():
    with pytest.raises(ValueError, match="rounding='up'"):
        LowPrecisionSGD([torch.nn.Parameter(torch.zeros(1))], rounding="up")


@pytest.mark.parametrize("cls", [LowPrecisionAdamW, LowPrecisionSGD])
def test_stochastic_rounding_resumes_from_its_state_dict_bit_for_bit(cls):
    def run(steps, opt=None, p=None):
        torch.manual_seed(0)
        p = p if p is not None else torch.nn.Parameter(torch.randn(4096).to(torch.bfloat16))
        opt = opt or cls([p], lr=1e-2, rounding="stochastic", seed=7)
        for step in range(steps):
            p.grad = torch.full_like(p, 1e-3 * (step + 1))
            opt.step()
        return p, opt

    whole, _ = run(6)
    half, opt = run(3)
    resumed = torch.nn.Parameter(half.detach().clone())
    fresh = cls([resumed], lr=1e-2, rounding="stochastic", seed=7)
    fresh.load_state_dict(opt.state_dict())
    for step in range(3, 6):
        resumed.grad = torch.full_like(resumed, 1e-3 * (step + 1))
        fresh.step()
    assert torch.equal(resumed.detach(), whole.detach())
