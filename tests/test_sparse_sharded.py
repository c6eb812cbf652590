"""Label shards of the classifier, in one process: the rows a rank holds, an initialisation equal to those
rows of the whole layer, and shard losses that add up to the whole loss."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from xmcfit.sparse import FixedFanInLinear, chunked_loss
from xmcfit.sparse.sharded import shard_fixed_fan_in, shard_linear
from xmcfit.workspace import label_range


@pytest.mark.parametrize("n_labels,world", [(10, 2), (159, 2), (1001, 4), (7, 3), (5, 4)])
def test_label_ranges_give_each_rank_ceil_l_over_n_rows_in_order(n_labels, world):
    ranges = [label_range(n_labels, world, r) for r in range(world)]
    rows = -(-n_labels // world)
    assert ranges[0] == (0, min(rows, n_labels))
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:])) and ranges[-1][1] == n_labels
    assert all(hi - lo <= rows for lo, hi in ranges)


@pytest.mark.parametrize("lo,hi", [(0, 3000), (3000, 5000), (4000, 4200), (4999, 5000)])
def test_a_sparse_shard_is_those_rows_of_the_whole_layer(lo, hi):
    whole = FixedFanInLinear(24, 5000, 6, seed=11)  # 5000 rows: the index draws cross a 4096-row chunk
    shard = shard_fixed_fan_in(24, 5000, 6, lo, hi, seed=11)
    assert torch.equal(shard.indices, whole.indices[lo:hi])
    assert torch.equal(shard.values, whole.values[lo:hi])
    assert torch.equal(shard.bias, whole.bias[lo:hi])
    assert (shard.out_features, shard.indices.dtype) == (hi - lo, whole.indices.dtype)


def test_a_bf16_shard_without_bias_is_those_rows_too():
    whole = FixedFanInLinear(40, 300, 8, bias=False, dtype=torch.bfloat16, seed=3)
    shard = shard_fixed_fan_in(40, 300, 8, 100, 200, seed=3, bias=False, dtype=torch.bfloat16)
    assert shard.bias is None and shard.values.dtype == torch.bfloat16
    assert torch.equal(shard.values, whole.values[100:200]) and torch.equal(shard.indices, whole.indices[100:200])


def test_a_dense_shard_is_those_rows_and_leaves_the_generator_where_the_whole_layer_would():
    torch.manual_seed(5)
    whole = nn.Linear(16, 90)
    after_whole = torch.rand(3)
    torch.manual_seed(5)
    shard = shard_linear(16, 90, 30, 60)
    after_shard = torch.rand(3)
    assert torch.equal(shard.weight, whole.weight[30:60]) and torch.equal(shard.bias, whole.bias[30:60])
    assert torch.equal(after_shard, after_whole)


@pytest.mark.parametrize("reduction", ["mean", "sum_over_labels"])
@pytest.mark.parametrize("dense", [False, True])
def test_shard_losses_with_the_whole_label_count_add_up_to_the_whole_loss(reduction, dense):
    torch.manual_seed(0)
    n_labels, bounds = 50, [(0, 17), (17, 34), (34, 50)]
    whole = nn.Linear(12, n_labels) if dense else FixedFanInLinear(12, n_labels, 4, seed=1)
    x = torch.randn(6, 12, requires_grad=True)
    positives = torch.tensor([[0, 3], [1, 20], [5, 49], [2, 0], [2, 33], [4, 34]])
    loss = chunked_loss(x, whole, positives, chunk_size=8, reduction=reduction)
    (grad_whole,) = torch.autograd.grad(loss, x)
    total, grad_sum = torch.zeros(()), torch.zeros_like(x)
    for lo, hi in bounds:
        if dense:
            part = nn.Linear(12, hi - lo)
            part.load_state_dict({"weight": whole.weight[lo:hi], "bias": whole.bias[lo:hi]})
        else:
            part = shard_fixed_fan_in(12, n_labels, 4, lo, hi, seed=1)
        mine = positives[(positives[:, 1] >= lo) & (positives[:, 1] < hi)] - torch.tensor([0, lo])
        piece = chunked_loss(x, part, mine, chunk_size=8, reduction=reduction, n_labels_total=n_labels)
        total = total + piece.detach()
        grad_sum += torch.autograd.grad(piece, x)[0]
    torch.testing.assert_close(total, loss.detach())
    torch.testing.assert_close(grad_sum, grad_whole)


def test_n_labels_total_below_the_layer_is_rejected():
    with pytest.raises(ValueError, match="n_labels_total=3: must be >= the layer's 5 labels"):
        chunked_loss(torch.randn(2, 4), nn.Linear(4, 5), torch.zeros(0, 2, dtype=torch.long), n_labels_total=3)
