"""The classifier split by label ranges across the processes of a torch.distributed group.

Rank r of N holds rows [r·R, min(L, (r+1)·R)) with R = ceil(L / N) (the planner's rows_per_device):
values, indices and bias of those labels, and (through the optimizer) their state. A step

  1. all-gathers the micro-batch's features from every rank       (B, d), B = sum of the local batches
  2. scores its own labels for the whole gathered batch            chunked_loss over R labels
     with the scale of the whole problem (1/B, and 1/L for "mean"), so the ranks' losses sum to the
     single-process loss
  3. back-propagates: the features' gradient is reduce-scattered   each rank gets its rows' gradient,
     back to the rank that produced them                           summed over every label shard

`shard_fixed_fan_in` and `shard_linear` initialise a shard exactly as rows [lo, hi) of the layer one
process would build with the same seed, so a sharded run starts from the same weights. Components:
they see tensors and a process group, never optimizers, data or logging.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
from torch import nn

from xmcfit.sparse.layer import FixedFanInLinear, random_row_indices
from xmcfit.sparse.loss import DEFAULT_LOSS_CHUNK, chunked_loss

# Random draws discarded per call when a shard skips the rows before it (16 MiB of fp32 at a time).
_SKIP_DRAWS = 1 << 22

# torch 2.13 renamed the one-tensor collectives (all_gather_into_tensor -> all_gather_single, ...) and
# warns on the old names; the project allows torch >= 2.6, which has only the old ones.
_all_gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
_reduce_scatter = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor


def _skip(generator: torch.Generator | None, n_draws: int) -> None:
    """Advance `generator` (None: torch's default CPU generator) by `n_draws` fp32 uniform draws.

    The CPU uniform kernel is serial and takes one 32-bit number per fp32 element, so drawing and
    dropping n values leaves the generator where n values of any tensor shape would (a test checks it).
    """
    while n_draws > 0:
        step = min(n_draws, _SKIP_DRAWS)
        torch.empty(step).uniform_(generator=generator)
        n_draws -= step


def shard_fixed_fan_in(in_features: int, n_labels: int, fan_in: int, lo: int, hi: int, *, seed: int,
                       bias: bool = True, dtype: torch.dtype | None = None,
                       index_dtype: torch.dtype | None = None) -> FixedFanInLinear:
    """Rows [lo, hi) of FixedFanInLinear(in_features, n_labels, fan_in, seed=seed), built without the
    others: the generator is replayed past the rows before and after the shard (time O(L·d) draws,
    memory O(shard))."""
    if not 0 <= lo < hi <= n_labels:
        raise ValueError(f"rows [{lo}, {hi}): must be a non-empty range inside [0, {n_labels})")
    # Built on the meta device (no data, no draws), then given uninitialised CPU storage to fill below.
    layer = FixedFanInLinear(in_features, hi - lo, fan_in, bias=bias, dtype=dtype, index_dtype=index_dtype,
                             device="meta").to_empty(device="cpu")
    generator = torch.Generator()
    generator.manual_seed(seed)
    # Draw order of FixedFanInLinear.__init__: L x d index keys, L x k values, L bias entries.
    _skip(generator, lo * in_features)
    indices = random_row_indices(hi - lo, in_features, fan_in, layer.indices.dtype, torch.device("cpu"), generator)
    _skip(generator, (n_labels - hi) * in_features + lo * fan_in)
    bound = 1.0 / math.sqrt(fan_in)
    values = torch.rand(hi - lo, fan_in, generator=generator)  # (rows, k)
    _skip(generator, (n_labels - hi) * fan_in + lo)
    b = torch.rand(hi - lo, generator=generator)  # (rows,)
    with torch.no_grad():
        layer.indices.copy_(indices)
        layer.values.copy_((values * 2 - 1).mul_(bound).to(layer.values.dtype))
        if layer.bias is not None:
            layer.bias.copy_((b * 2 - 1).mul_(bound).to(layer.bias.dtype))
    return layer


def shard_linear(in_features: int, n_labels: int, lo: int, hi: int, *, bias: bool = True,
                 dtype: torch.dtype | None = None) -> nn.Linear:
    """Rows [lo, hi) of nn.Linear(in_features, n_labels) as torch's default generator would initialise
    it now, and that generator left where building the whole layer would leave it (so what is built
    after the classifier gets the same numbers in every process and in a single-process run)."""
    layer = torch.nn.utils.skip_init(nn.Linear, in_features, hi - lo, bias=bias, dtype=dtype)
    bound = 1.0 / math.sqrt(in_features)  # nn.Linear.reset_parameters: kaiming_uniform_(a=sqrt(5)) and the bias
    with torch.no_grad():
        _skip(None, lo * in_features)
        layer.weight.uniform_(-bound, bound)  # (rows, d)
        _skip(None, (n_labels - hi) * in_features)
        if layer.bias is not None:
            _skip(None, lo)
            layer.bias.uniform_(-bound, bound)
            _skip(None, n_labels - hi)
    return layer


class _GatherRows(torch.autograd.Function):
    """All-gather rows of different counts per rank, concatenated in rank order; the backward
    reduce-scatters the gradient so each rank gets its own rows' gradient summed over all ranks."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, counts: list[int], group) -> torch.Tensor:
        ctx.counts, ctx.group, ctx.rank, ctx.most = counts, group, dist.get_rank(group), max(counts)
        return gather_inputs(x, counts, group)  # (B, d)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        counts, most, rank = ctx.counts, ctx.most, ctx.rank
        padded = grad.new_zeros(len(counts) * most, grad.shape[1])  # (world * most, d)
        start = 0
        for r, n in enumerate(counts):
            padded[r * most: r * most + n] = grad[start: start + n]
            start += n
        mine = grad.new_empty(most, grad.shape[1])  # (most, d)
        try:
            _reduce_scatter(mine, padded, group=ctx.group)
        except RuntimeError:
            # gloo before torch 2.13 has no reduce-scatter (the same in every rank): all-reduce the
            # (world * most, d) gradient and keep this rank's block, twice the bytes.
            dist.all_reduce(padded, group=ctx.group)
            mine = padded[rank * most: (rank + 1) * most]
        return mine[: counts[rank]].contiguous(), None, None


def gather_rows(x: torch.Tensor, counts: list[int], group=None) -> torch.Tensor:
    """(counts[rank], d) on each rank -> (sum(counts), d) on every rank, rows in rank order; autograd-aware."""
    return _GatherRows.apply(x, counts, group)


def gather_inputs(x: torch.Tensor, counts: list[int], group=None) -> torch.Tensor:
    """(counts[rank], w) on each rank -> (sum(counts), w) on every rank, rows in rank order, without autograd
    (gather_rows adds the backward; the TF-IDF side's input rows need none). Every rank sends the same
    shape, padded to the largest count; no copy beyond the gathered rows when the counts are equal, as
    they usually are."""
    world, most = len(counts), max(counts)
    send = x if x.shape[0] == most else torch.cat([x, x.new_zeros(most - x.shape[0], x.shape[1])])  # (most, w)
    out = x.new_empty(world * most, x.shape[1])  # (world * most, w)
    _all_gather(out, send.contiguous(), group=group)
    if all(n == most for n in counts):
        return out
    return torch.cat([out[r * most: r * most + n] for r, n in enumerate(counts)])  # (sum(counts), w)


def gather_counts(n_rows: int, n_positives: int, device: torch.device, group=None) -> list[tuple[int, int]]:
    """(rows, positives) of every rank's micro-batch, in rank order."""
    mine = torch.tensor([[n_rows, n_positives]], dtype=torch.int64, device=device)  # (1, 2)
    out = torch.empty(dist.get_world_size(group), 2, dtype=torch.int64, device=device)  # (world, 2)
    _all_gather(out, mine, group=group)
    return [(int(r), int(p)) for r, p in out.tolist()]


def gather_positives(positives: torch.Tensor, counts: list[tuple[int, int]], group=None) -> torch.Tensor:
    """Every rank's (n_pos, 2) [row, label] pairs with rows renumbered into the gathered batch."""
    world, most = len(counts), max(p for _, p in counts)
    padded = positives.new_zeros(most, 2)
    padded[: positives.shape[0]] = positives
    out = positives.new_empty(world * most, 2)  # (world * most, 2)
    _all_gather(out, padded, group=group)
    parts, row_offset = [], 0
    for r, (n_rows, n_pos) in enumerate(counts):
        part = out[r * most: r * most + n_pos].clone()
        part[:, 0] += row_offset
        parts.append(part)
        row_offset += n_rows
    return torch.cat(parts)  # (sum n_pos, 2)


class _WithValue(torch.autograd.Function):
    """The value of `value`, the gradient of `part`."""

    @staticmethod
    def forward(ctx, part: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        return value.detach().clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None


def with_value(part: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """A 0-dim loss whose value is `value` (the whole loss, the same bits in every rank) and whose
    gradient is that of `part` (this rank's share): each rank back-propagates its own part, and logs and
    checks for finiteness the whole."""
    return _WithValue.apply(part, value)


def global_value(local: torch.Tensor, group=None) -> torch.Tensor:
    """with_value(local, the sum of every rank's `local`)."""
    total = local.detach().clone()
    dist.all_reduce(total, group=group)
    return with_value(local, total)


class ShardedClassifierLoss:
    """The classifier loss of this rank's label shard over the micro-batch gathered from every rank.

    `__call__(features, positives, tfidf_x)` takes the local micro-batch (features (m, d), positives with
    local rows and global label ids, the TF-IDF rows (m, n_words) when there is a side) like any
    ClassifierLoss; it returns the loss of all labels over the whole gathered batch (the same number on
    every rank) whose gradient is this shard's part. `tfidf`: this rank's rows of the TF-IDF side (the same
    labels as the classifier's), which scores the gathered TF-IDF rows beside it.
    """

    def __init__(self, classifier: FixedFanInLinear | nn.Linear, label_lo: int, n_labels: int, loss: str,
                 chunk_size: int = DEFAULT_LOSS_CHUNK, reduction: str = "mean", group=None,
                 tfidf: FixedFanInLinear | None = None) -> None:
        self.classifier, self.label_lo, self.n_labels = classifier, label_lo, n_labels
        self.loss, self.chunk_size, self.reduction, self.group = loss, chunk_size, reduction, group
        self.tfidf = tfidf

    def __call__(self, features: torch.Tensor, positives: torch.Tensor,
                 tfidf_x: torch.Tensor | None = None) -> torch.Tensor:
        counts = gather_counts(features.shape[0], positives.shape[0], features.device, self.group)
        rows = [r for r, _ in counts]
        gathered = gather_rows(features, rows, self.group)  # (B, d)
        every = gather_positives(positives, counts, self.group)  # (n_pos over all ranks, 2)
        n_rows = self.classifier.out_features
        mine = every[(every[:, 1] >= self.label_lo) & (every[:, 1] < self.label_lo + n_rows)]
        mine = mine - torch.tensor([0, self.label_lo], device=mine.device)  # labels within the shard
        extra = None
        if self.tfidf is not None:
            assert tfidf_x is not None, "a TF-IDF side scores the micro-batch's TF-IDF rows"
            extra = (gather_inputs(tfidf_x, rows, self.group), self.tfidf)  # (B, n_words), this shard's rows
        part = chunked_loss(gathered, self.classifier, mine, loss=self.loss, chunk_size=self.chunk_size,
                            reduction=self.reduction, n_labels_total=self.n_labels, extra=extra)
        return global_value(part, self.group)
