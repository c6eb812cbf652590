"""SET rewiring invariants: fan-in constant, no duplicates, smallest-|w| pruned, regrown slots zero in
values and optimizer state, other slots untouched (up to the re-sort), deterministic with a seed."""

import pytest
import torch

from xmcfit.sparse import FixedFanInLinear, SETRewirer
from xmcfit.sparse.lowprec_optim import LowPrecisionSGD
from xmcfit.train.schedules import cosine_schedule


def _trained_layer(optimizer_cls=torch.optim.AdamW, **kw):
    torch.manual_seed(0)
    layer = FixedFanInLinear(24, 150, 8, seed=0)
    opt = optimizer_cls([layer.values], lr=0.01, **kw)
    layer.values.grad = torch.randn_like(layer.values)
    opt.step()
    return layer, opt


@pytest.mark.parametrize("mode,level", [("fraction", 0.25), ("threshold", 0.1)])
def test_rewire_keeps_fan_in_sorted_unique_and_prunes_smallest(mode, level):
    layer, opt = _trained_layer()
    before_idx, before_val = layer.indices.long().clone(), layer.values.detach().clone()
    before_m = opt.state[layer.values]["exp_avg"].clone()
    rewirer = SETRewirer(layer, opt, lambda step: level, interval=1, end_step=10, mode=mode, seed=1, chunk_rows=37)
    stats = rewirer.step(1)
    idx = layer.indices.long()
    assert idx.shape == (150, 8)
    assert (idx[:, 1:] > idx[:, :-1]).all() and idx.min() >= 0 and idx.max() < 24
    m = opt.state[layer.values]["exp_avg"]
    n_moved = 0
    for row in range(150):
        old = dict(zip(before_idx[row].tolist(), range(8)))
        mags = before_val[row].abs()
        if mode == "fraction":
            pruned = set(mags.argsort()[:2].tolist())  # round(0.25 * 8) smallest
        else:
            pruned = set((mags < level).nonzero().squeeze(1).tolist())
        kept_cols = {c for c, s in old.items() if s not in pruned}
        n_moved += len(pruned)
        for slot, col in enumerate(idx[row].tolist()):
            if col in kept_cols:  # untouched connection: same value and state
                assert layer.values[row, slot] == before_val[row, old[col]]
                assert m[row, slot] == before_m[row, old[col]]
            else:  # regrown: zero value and zero state
                assert layer.values[row, slot] == 0 and m[row, slot] == 0
                assert opt.state[layer.values]["exp_avg_sq"][row, slot] == 0
        assert len(kept_cols) == 8 - len(pruned)
    assert stats.n_moved == n_moved
    if mode == "fraction":
        assert stats.n_moved == 150 * 2


def test_rewire_is_deterministic_with_seed():
    results = []
    for _ in range(2):
        layer, opt = _trained_layer()
        SETRewirer(layer, opt, lambda s: 0.5, interval=1, end_step=5, seed=7).step(3)
        results.append(layer.indices.clone())
    assert torch.equal(results[0], results[1])


def test_rewire_zeroes_sgd_momentum_and_kahan_buffer_at_regrown_slots():
    layer, opt = _trained_layer(LowPrecisionSGD, momentum=0.9)
    state = opt.state[layer.values]
    state["kahan_comp"].fill_(1.0)
    SETRewirer(layer, opt, lambda s: 0.5, interval=1, end_step=5, seed=0).step(1)
    zero = layer.values == 0
    assert (state["kahan_comp"][zero] == 0).all() and (state["kahan_comp"][~zero] == 1).all()
    assert (state["momentum_buffer"][zero] == 0).all() and zero.sum(1).eq(4).all()


def test_rewire_runs_only_on_schedule():
    layer, opt = _trained_layer()
    rewirer = SETRewirer(layer, opt, lambda s: 0.25, interval=3, end_step=6, seed=0)
    assert [rewirer.step(s) is not None for s in range(9)] == [False, False, False, True, False, False, True,
                                                                False, False]


def test_regrowth_is_roughly_uniform_over_free_columns():
    layer = FixedFanInLinear(16, 4000, 4, seed=0)
    with torch.no_grad():
        layer.values.copy_(torch.arange(4).float().expand(4000, 4) + 1)  # slot 0 is always the smallest
    rewirer = SETRewirer(layer, None, lambda s: 0.25, interval=1, end_step=1, seed=0)
    rewirer.step(1)
    new_cols = layer.indices.long()[layer.values == 0]  # one regrown slot per row
    assert new_cols.shape == (4000,)
    counts = torch.bincount(new_cols, minlength=16).float()
    assert counts.min() > 0.7 * counts.mean() and counts.max() < 1.3 * counts.mean()


def test_regrowth_is_uniform_over_the_columns_a_row_does_not_keep():
    """Every row keeps columns {2, 3} and prunes {0, 1}: the two regrown columns are distinct draws from
    the 14 columns not kept (pruned ones included), each about equally often."""
    n_rows, d = 7000, 16
    layer = FixedFanInLinear(d, n_rows, 4, seed=0)
    with torch.no_grad():
        layer.indices.copy_(torch.arange(4, dtype=layer.indices.dtype).expand(n_rows, 4))
        layer.values.copy_(torch.arange(4).float().expand(n_rows, 4) + 1)  # slots 0 and 1 are the smallest
    SETRewirer(layer, None, lambda s: 0.5, interval=1, end_step=1, seed=3, chunk_rows=1000).step(1)
    idx = layer.indices.long()
    assert (idx[:, 1:] > idx[:, :-1]).all()
    new_cols = idx[layer.values == 0]  # two per row
    assert new_cols.shape == (2 * n_rows,)
    counts = torch.bincount(new_cols, minlength=d).float()
    assert counts[2] == 0 and counts[3] == 0
    free = torch.cat([counts[:2], counts[4:]])
    expected = 2 * n_rows / 14
    assert ((free - expected).abs() < 0.15 * expected).all(), counts


def test_rewiring_a_fully_connected_row_regrows_exactly_the_pruned_columns():
    layer = FixedFanInLinear(6, 50, 6, seed=0)  # fan-in = d: every column is in every row
    SETRewirer(layer, None, lambda s: 0.5, interval=1, end_step=1, seed=0).step(1)
    assert torch.equal(layer.indices.long(), torch.arange(6).expand(50, 6))


def test_cosine_schedule_decays_from_initial_to_final():
    f = cosine_schedule(0.25, 0.0, 100)
    assert f(0) == pytest.approx(0.25) and f(50) == pytest.approx(0.125) and f(100) == pytest.approx(0.0)
    assert f(200) == pytest.approx(0.0)


def test_rewirer_rejects_unknown_mode():
    layer = FixedFanInLinear(8, 4, 2)
    with pytest.raises(ValueError, match="mode='random'"):
        SETRewirer(layer, None, lambda s: 0.1, 1, 1, mode="random")
