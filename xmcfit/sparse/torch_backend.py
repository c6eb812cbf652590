"""Torch backend: the sparse layer's three chunk products from PyTorch ops (any device); a SparseBackend.

All products work label-major on one chunk of rows [l0, l1) of the ELLPACK weight:

    logits_t      (chunk, batch) = W_chunk @ x^T + bias     embedding_bag over the rows of x^T
    grad_values   (chunk, k)     = (grad_t @ x) sampled at W's pattern   torch.sparse.sampled_addmm
    grad_x_t      (d, batch)    += W_chunk^T @ grad_t       embedding_bag over the rows of grad_t

A weighted-sum embedding bag is exactly an ELLPACK (or CSR) row times a dense matrix: bag l of the
logits sums the rows x^T[indices[l, j]] weighted by values[l, j]. PyTorch's CPU kernel for it
(FBGEMM) is 2-3x faster than the CSR product (torch.sparse.mm) it replaced here; on L=200k, k=32,
batch 64, 2 threads: 12 ms against 30 ms for the logits, 45 ms against 90 ms for the input gradient
(measured with bench/sparse_layer.py's shapes).

The input gradient needs the transpose, one bag per input feature listing the label rows that use
it. That pattern (rows sorted by column) depends only on the indices, so it is built once per chunk
and cached by the caller until rewiring changes the indices (see `TransposedPattern`); the values are
gathered into its order on every call (index_select, which costs about as much as the bag itself).

Transient bytes per chunk (c rows, k fan-in, b batch, 4-byte accumulation, 8 for float64):
column indices as int32 c*k*4, values cast to the accumulation dtype c*k*4 when they are stored in 16
bits, the product's output (c*b*4 for logits, c*k*4 for grad_values), for sampled_addmm's CSR pattern
row pointers (c+1)*4, and for the input gradient the gathered values c*k*4 plus d*b*4 for the bag sums.
A cached TransposedPattern holds c*k*(4 + 8) + (d+1)*4 bytes per chunk for the layer's lifetime.
"""

import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# The CSR layout is stable for the ops used here; silence torch's once-per-process "beta" notice.
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")


@dataclass(frozen=True)
class TransposedPattern:
    """One chunk's transposed pattern as bags: W_chunk^T is (d, chunk) with one bag per input feature."""

    crow: torch.Tensor  # (d + 1,) int32 bag offsets over input features
    rows: torch.Tensor  # (chunk * k,) int32 label row (within chunk) of each nonzero, grouped by feature
    perm: torch.Tensor  # (chunk * k,) int64 position in the flattened (chunk, k) values of each nonzero


def transposed_pattern(indices: torch.Tensor, in_features: int) -> TransposedPattern:
    """Sort one chunk's connections by input feature: the CSR pattern of W_chunk^T."""
    n_rows, fan_in = indices.shape
    flat = indices.reshape(-1).to(torch.int32)  # (chunk * k,)
    _, perm = torch.sort(flat, stable=True)
    counts = torch.bincount(flat, minlength=in_features)  # (d,)
    crow = torch.zeros(in_features + 1, dtype=torch.int32, device=indices.device)
    crow[1:] = torch.cumsum(counts, 0)
    rows = torch.div(perm, fan_in, rounding_mode="floor").to(torch.int32)
    return TransposedPattern(crow=crow, rows=rows, perm=perm)


def _csr(values: torch.Tensor, indices: torch.Tensor, in_features: int, dtype: torch.dtype) -> torch.Tensor:
    """ELLPACK chunk -> CSR (chunk, d); row pointers are multiples of k."""
    n_rows, fan_in = indices.shape
    crow = torch.arange(0, n_rows * fan_in + 1, fan_in, dtype=torch.int32, device=indices.device)
    col = indices.reshape(-1).to(torch.int32)  # (chunk * k,)
    return torch.sparse_csr_tensor(
        crow, col, values.reshape(-1).to(dtype), (n_rows, in_features), check_invariants=False
    )


def logits_t(
    x: torch.Tensor, values: torch.Tensor, indices: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """Logits of one label chunk, label-major: (chunk, batch) in x's dtype (the accumulation dtype)."""
    x_t = x.t().contiguous()  # (d, batch): d * b copied per chunk, negligible beside the bag sums
    out = F.embedding_bag(indices.to(torch.int32), x_t, per_sample_weights=values.to(x.dtype), mode="sum")
    if bias is not None:
        out += bias.to(out.dtype)[:, None]
    return out  # (chunk, batch)


def grad_values(grad_t: torch.Tensor, x: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """grad_values[l, j] = sum_b grad_t[l, b] * x[b, indices[l, j]]: (chunk, k) in x's dtype."""
    n_rows, fan_in = indices.shape
    # Zeros, not torch.empty: sampled_addmm computes beta * input even for beta=0, and 0 * (a NaN left in
    # uninitialised memory) is NaN, which corrupted the value gradient now and then.
    pattern = _csr(torch.zeros(n_rows * fan_in, dtype=x.dtype, device=x.device), indices, x.shape[1], x.dtype)
    sampled = torch.sparse.sampled_addmm(pattern, grad_t, x, beta=0.0)  # CSR (chunk, d), pattern order
    return sampled.values().reshape(n_rows, fan_in)


def add_grad_input_t(
    grad_t: torch.Tensor,
    values: torch.Tensor,
    indices: torch.Tensor,
    out_t: torch.Tensor,
    pattern: TransposedPattern | None = None,
) -> None:
    """out_t (d, batch) += W_chunk^T @ grad_t, using a cached transposed pattern when given."""
    if pattern is None:
        pattern = transposed_pattern(indices, out_t.shape[0])
    vals_t = torch.index_select(values.reshape(-1), 0, pattern.perm).to(out_t.dtype)  # grouped by feature
    out_t += F.embedding_bag(
        pattern.rows, grad_t, offsets=pattern.crow, per_sample_weights=vals_t, mode="sum", include_last_offset=True
    )  # (d, batch)
