"""chunked_loss: mean classification loss over all batch x L entries without building batch x L.

The label space is walked in chunks of `chunk_size` rows. For each chunk the logits, the loss and its
gradient are computed in the forward pass and the gradients for x, the weight and the bias are
accumulated right away (no logits are saved); backward only scales them by the incoming gradient.
Works for FixedFanInLinear and for a dense nn.Linear (the trainer's dense baseline).

Memory (c = chunk_size, b = batch, a = accumulation bytes: 4, or 8 when x or the weight is float64):

  transient per chunk   2 * b * c * a            logits and loss/margin buffer, label-major (c, b)
                      + c * k * (4 + a)          sparse: int32 column indices + the sampled value gradient
                      + c * k * 4                torch backend with 16-bit values: values cast to fp32
                      + (c+1) * 4                torch backend: CSR row pointers
                        (dense nn.Linear instead: c * d * a for the weight-gradient chunk)
  held until backward   d * b * a                input gradient (+ b * d * x_bytes when returned)
                      + L * k * value_bytes      value gradient (L * d for nn.Linear), becomes .grad
                      + L * value_bytes          bias gradient
                      + b * d * a                x cast to the accumulation dtype, when x is not already
  plus the positives, sorted once: 2 * n_pos * 8 bytes.

The planner prices `2 * b * c * 4 + c * k * 16 + (c + 1) * 4` bytes transient (fp32 or bf16 values,
torch backend; the Triton backend needs at most that): xmcfit.workspace.loss_workspace_bytes, the one
statement of that formula. The NaN check on x reads b x d once.
"""

import torch
from torch import nn

from xmcfit.sparse.backend import new_output
from xmcfit.sparse.dispatch import get_backend
from xmcfit.sparse.layer import FixedFanInLinear, accumulation_dtype, chunk_ranges
from xmcfit.sparse.validate import check_input, check_positives

LOSSES = ("squared_hinge", "bce")
REDUCTIONS = ("mean", "sum_over_labels")
DEFAULT_LOSS_CHUNK = 8192


class _DenseOps:
    """The SparseBackend interface over an nn.Linear weight chunk (same label-major contract)."""

    @staticmethod
    def transposed_pattern(indices, in_features):
        return None  # a dense chunk needs no pattern

    @staticmethod
    def logits_t(x, weight, indices, bias):
        w = weight.to(x.dtype)
        if bias is None:
            return w @ x.t()  # (chunk, batch)
        return torch.addmm(bias.to(x.dtype)[:, None], w, x.t())

    @staticmethod
    def grad_values(grad_t, x, indices):
        return grad_t @ x  # (chunk, d)

    @staticmethod
    def add_grad_input_t(grad_t, weight, indices, out_t, pattern=None):
        out_t.addmm_(weight.to(out_t.dtype).t(), grad_t)  # (d, batch)


def _loss_and_grad_(z: torch.Tensor, work: torch.Tensor, pl: torch.Tensor, pr: torch.Tensor,
                    kind: str, scale: float) -> torch.Tensor:
    """Sum of the loss over the chunk; overwrites z (chunk, batch) with scale * dloss/dz.

    pl, pr: positives of this chunk as (label within chunk, batch row). `work` is a (chunk, batch) buffer.
    """
    if kind == "squared_hinge":
        work.fill_(-1.0)
        work[pl, pr] = 1.0  # y in {-1, +1}
        work.mul_(z).neg_().add_(1.0).clamp_min_(0.0)  # margin m = max(0, 1 - y z)
        flat = work.view(-1)
        total = torch.dot(flat, flat)
        z.copy_(work).mul_(2.0 * scale)  # d/dz = -2 y m: +2m for negatives ...
        z[pl, pr] = z[pl, pr].neg()  # ... and -2m for positives
        return total
    torch.logaddexp(z, torch.zeros((), dtype=z.dtype, device=z.device), out=work)  # softplus(z)
    total = work.sum() - z[pl, pr].sum()  # BCE = softplus(z) - y z
    z.sigmoid_()
    z[pl, pr] -= 1.0  # d/dz = sigmoid(z) - y
    z.mul_(scale)
    return total


class _ChunkedLossFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, extra_x, extra_values, extra_bias, positives, layer, ops, extra, kind, chunk_size,
                scale):
        need_x, need_w, need_b, _, need_e, need_eb = ctx.needs_input_grad[:6]
        acc = accumulation_dtype(x, weight)
        xa = x.to(acc).contiguous()
        ea = extra_x.to(acc).contiguous() if extra is not None else None
        batch, n_labels = x.shape[0], weight.shape[0]
        # Deduplicate and sort the positives by label, so each chunk's are one contiguous slice.
        keys = torch.unique(positives[:, 1] * batch + positives[:, 0])  # sorted (label, row) keys
        pos_label, pos_row = torch.div(keys, batch, rounding_mode="floor"), keys % batch
        starts = torch.tensor([s for s, _ in chunk_ranges(n_labels, chunk_size)] + [n_labels], device=keys.device)
        bounds = torch.searchsorted(pos_label, starts).tolist()
        gx_t = torch.zeros(x.shape[1], batch, dtype=acc, device=x.device) if need_x else None
        gw = new_output(weight.shape, weight.dtype, weight.device) if need_w else None
        gb = new_output(bias.shape, bias.dtype, bias.device) if need_b else None
        ge = new_output(extra_values.shape, extra_values.dtype, extra_values.device) if need_e else None
        geb = new_output(extra_bias.shape, extra_bias.dtype, extra_bias.device) if need_eb else None
        extra_ops = get_backend(x.device) if extra is not None else None
        total = torch.zeros((), dtype=acc, device=x.device)
        for i, (start, stop) in enumerate(chunk_ranges(n_labels, chunk_size)):
            idx = layer.indices[start:stop] if layer is not None else None
            b = bias[start:stop] if bias is not None else None
            z = ops.logits_t(xa, weight[start:stop], idx, b).to(acc)  # (chunk, batch)
            if extra is not None:  # a second linear term over its own input, scores added: (chunk, batch)
                eb = extra_bias[start:stop] if extra_bias is not None else None
                z += extra_ops.logits_t(ea, extra_values[start:stop], extra.indices[start:stop], eb).to(acc)
            pl = pos_label[bounds[i]:bounds[i + 1]] - start
            pr = pos_row[bounds[i]:bounds[i + 1]]
            total += _loss_and_grad_(z, torch.empty_like(z), pl, pr, kind, scale)  # z is now dloss/dz
            if need_x:
                pattern = layer.transposed_pattern(start, stop, ops) if layer is not None else None
                ops.add_grad_input_t(z, weight[start:stop], idx, gx_t, pattern)
            if need_w:
                gw[start:stop] = ops.grad_values(z, xa, idx).to(weight.dtype)
            if need_b:
                gb[start:stop] = z.sum(1).to(bias.dtype)
            if need_e:
                ge[start:stop] = extra_ops.grad_values(z, ea, extra.indices[start:stop]).to(extra_values.dtype)
            if need_eb:
                geb[start:stop] = z.sum(1).to(extra_bias.dtype)
        ctx.grads = (gx_t.t().contiguous().to(x.dtype) if need_x else None, gw, gb, None, ge, geb)
        return total * scale

    @staticmethod
    def backward(ctx, grad_loss):
        if ctx.grads is None:
            raise RuntimeError("chunked_loss: backward called twice; its gradients were already handed out")
        grads = tuple(g.mul_(grad_loss.to(g.dtype)) if g is not None else None for g in ctx.grads)
        ctx.grads = None
        return (*grads, None, None, None, None, None, None, None)


def chunked_loss(
    x: torch.Tensor,
    layer: FixedFanInLinear | nn.Linear,
    positives: torch.Tensor,
    loss: str = "squared_hinge",
    chunk_size: int = DEFAULT_LOSS_CHUNK,
    reduction: str = "mean",
    n_labels_total: int | None = None,
    extra: tuple[torch.Tensor, FixedFanInLinear] | None = None,
) -> torch.Tensor:
    """Loss over all batch x L entries of layer(x) (+ extra_layer(extra_x)) against sparse positive labels.

    x: (batch, in_features) features. positives: LongTensor (n_pos, 2) of [row, label] pairs, every
    other entry is negative (duplicates count once). loss: "squared_hinge" (y in {-1, +1},
    max(0, 1 - y z)^2) or "bce" (BCE with logits, y in {0, 1}). reduction: "mean" over batch x L, or
    "sum_over_labels" (summed over the L labels, averaged over the batch: L times the mean).
    n_labels_total: the label count "mean" divides by (default: the layer's rows); a label shard
    (xmcfit.sparse.sharded) passes the whole label space's, so the shards' losses sum to the whole loss.
    extra: (extra_x (batch, extra_in), extra_layer), a FixedFanInLinear (with or without bias) over another input
    whose logits are added to layer(x)'s (the TF-IDF side, xmcfit.model.TfidfScorer); its values get their
    gradient, extra_x none (it is data). It adds c·k'·16 + (c+1)·4 bytes to a chunk's workspace.
    Returns a 0-dim tensor (fp32, or fp64 for fp64 operands); gradients reach x, the weight (values) and the bias
    through loss.backward().
    """
    if loss not in LOSSES:
        raise ValueError(f"loss={loss!r}: must be one of {LOSSES}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction={reduction!r}: must be one of {REDUCTIONS}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size}: must be >= 1")
    if isinstance(layer, FixedFanInLinear):
        weight, sparse_layer, ops = layer.values, layer, get_backend(x.device)
    elif isinstance(layer, nn.Linear):
        weight, sparse_layer, ops = layer.weight, None, _DenseOps
    else:
        raise ValueError(f"layer of type {type(layer).__name__}: expected FixedFanInLinear or nn.Linear")
    check_input(x, layer.in_features)
    check_positives(positives, x.shape[0], layer.out_features)
    if n_labels_total is not None and n_labels_total < layer.out_features:
        raise ValueError(f"n_labels_total={n_labels_total}: must be >= the layer's {layer.out_features} labels")
    n_labels = layer.out_features if n_labels_total is None else n_labels_total
    scale = 1.0 / x.shape[0] / (n_labels if reduction == "mean" else 1)
    extra_x, extra_layer = extra if extra is not None else (None, None)
    if extra_layer is not None:
        check_input(extra_x, extra_layer.in_features)
        if extra_layer.out_features != layer.out_features or extra_x.shape[0] != x.shape[0]:
            raise ValueError("extra: must be a FixedFanInLinear over the same labels and batch")
    extra_values = extra_layer.values if extra_layer is not None else None
    extra_bias = extra_layer.bias if extra_layer is not None else None
    return _ChunkedLossFn.apply(x, weight, layer.bias, extra_x, extra_values, extra_bias,
                                positives, sparse_layer, ops, extra_layer, loss, chunk_size, scale)
