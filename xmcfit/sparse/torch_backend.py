"""Torch backend: the sparse layer's three chunk products from PyTorch sparse CSR ops (any device).

All products work label-major on one chunk of rows [l0, l1) of the ELLPACK weight:

    logits_t      (chunk, batch) = W_chunk @ x^T + bias            CSR x dense  (MKL on CPU)
    grad_values   (chunk, k)     = (grad_t @ x) sampled at W's pattern   torch.sparse.sampled_addmm
    grad_x_t      (d, batch)    += W_chunk^T @ grad_t               CSR of the transpose x dense

The transpose's CSR (rows sorted by column) depends only on the indices, so it is built once per chunk
and cached by the caller until rewiring changes the indices (see `TransposedPattern`); building it on
every step costs about 2x the product itself on a 2-core CPU (measured, L=200k, k=32).

Transient bytes per chunk (c rows, k fan-in, b batch, 4-byte accumulation, 8 for float64):
column indices as int32 c*k*4, row pointers (c+1)*4, values cast to the accumulation dtype c*k*4 when
they are stored in 16 bits, and the product's output (c*b*4 for logits, c*k*4 for grad_values).
A cached TransposedPattern holds c*k*(4 + 8) + (d+1)*4 bytes per chunk for the layer's lifetime.
"""

import warnings
from dataclasses import dataclass

import torch

# The CSR layout is stable for the ops used here; silence torch's once-per-process "beta" notice.
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")


@dataclass(frozen=True)
class TransposedPattern:
    """CSR of one chunk's transposed pattern: W_chunk^T is (d, chunk) with rows = input features."""

    crow: torch.Tensor  # (d + 1,) int32 row pointers over input features
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
    w = _csr(values, indices, x.shape[1], x.dtype)
    out = torch.sparse.mm(w, x.t())  # (chunk, batch)
    if bias is not None:
        out += bias.to(out.dtype)[:, None]
    return out


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
    vals_t = values.reshape(-1)[pattern.perm].to(out_t.dtype)  # (chunk * k,) grouped by feature
    w_t = torch.sparse_csr_tensor(
        pattern.crow, pattern.rows, vals_t, (out_t.shape[0], indices.shape[0]), check_invariants=False
    )
    out_t += torch.sparse.mm(w_t, grad_t)  # (d, batch)
