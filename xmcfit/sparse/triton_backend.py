"""Triton backend: the sparse layer's three chunk products as Triton kernels (CUDA, or CPU under
TRITON_INTERPRET=1 for tests). Importing this module imports triton; `dispatch` imports it lazily.

Implements xmcfit.sparse.backend.SparseBackend, like `torch_backend`. Values may be fp32, bf16 or fp16; every product
accumulates in fp32. The input gradient scatters with fp32 atomics into a (d, batch) buffer, so it
needs no transposed pattern (and is not bitwise deterministic across runs; the error is fp32 rounding).
No transient buffers beyond the outputs: logits (chunk, batch) fp32, grad_values (chunk, k) fp32.
"""

import torch
import triton
import triton.language as tl

from xmcfit.sparse.backend import new_output

BLOCK_LABELS = 32
BLOCK_BATCH = 32


@triton.jit
def _logits_kernel(x_ptr, v_ptr, idx_ptr, bias_ptr, out_ptr, n_rows, batch, d,
                   K: tl.constexpr, HAS_BIAS: tl.constexpr, BL: tl.constexpr, BB: tl.constexpr):
    rl = tl.program_id(0) * BL + tl.arange(0, BL)  # (BL,) label rows
    rb = tl.program_id(1) * BB + tl.arange(0, BB)  # (BB,) batch rows
    ml = rl < n_rows
    mb = rb < batch
    m2 = ml[:, None] & mb[None, :]
    acc = tl.zeros((BL, BB), dtype=tl.float32)
    for j in range(K):
        col = tl.load(idx_ptr + rl * K + j, mask=ml, other=0).to(tl.int32)  # (BL,)
        w = tl.load(v_ptr + rl * K + j, mask=ml, other=0.0).to(tl.float32)  # (BL,)
        xg = tl.load(x_ptr + rb[None, :] * d + col[:, None], mask=m2, other=0.0).to(tl.float32)  # (BL, BB)
        acc += w[:, None] * xg
    if HAS_BIAS:
        acc += tl.load(bias_ptr + rl, mask=ml, other=0.0).to(tl.float32)[:, None]
    tl.store(out_ptr + rl[:, None] * batch + rb[None, :], acc, mask=m2)


@triton.jit
def _grad_values_kernel(g_ptr, x_ptr, idx_ptr, out_ptr, n_rows, batch, d,
                        K: tl.constexpr, KP: tl.constexpr, BL: tl.constexpr):
    rl = tl.program_id(0) * BL + tl.arange(0, BL)  # (BL,)
    rj = tl.arange(0, KP)  # (KP,) fan-in slots, padded to a power of two
    ml = rl < n_rows
    m2 = ml[:, None] & (rj < K)[None, :]
    cols = tl.load(idx_ptr + rl[:, None] * K + rj[None, :], mask=m2, other=0).to(tl.int32)  # (BL, KP)
    acc = tl.zeros((BL, KP), dtype=tl.float32)
    for b in range(batch):
        g = tl.load(g_ptr + rl * batch + b, mask=ml, other=0.0).to(tl.float32)  # (BL,)
        xg = tl.load(x_ptr + b * d + cols, mask=m2, other=0.0).to(tl.float32)  # (BL, KP)
        acc += g[:, None] * xg
    tl.store(out_ptr + rl[:, None] * K + rj[None, :], acc, mask=m2)


@triton.jit
def _grad_input_kernel(g_ptr, v_ptr, idx_ptr, out_ptr, n_rows, batch,
                       K: tl.constexpr, BL: tl.constexpr, BB: tl.constexpr):
    rl = tl.program_id(0) * BL + tl.arange(0, BL)
    rb = tl.program_id(1) * BB + tl.arange(0, BB)
    ml = rl < n_rows
    m2 = ml[:, None] & (rb < batch)[None, :]
    g = tl.load(g_ptr + rl[:, None] * batch + rb[None, :], mask=m2, other=0.0).to(tl.float32)  # (BL, BB)
    for j in range(K):
        col = tl.load(idx_ptr + rl * K + j, mask=ml, other=0).to(tl.int32)
        w = tl.load(v_ptr + rl * K + j, mask=ml, other=0.0).to(tl.float32)
        tl.atomic_add(out_ptr + col[:, None] * batch + rb[None, :], g * w[:, None], mask=m2)


def _grid(n_rows: int, batch: int) -> tuple[int, int]:
    return (triton.cdiv(n_rows, BLOCK_LABELS), triton.cdiv(batch, BLOCK_BATCH))


def transposed_pattern(indices: torch.Tensor, in_features: int) -> None:
    """The Triton input gradient uses atomics, so no transposed pattern is needed."""
    return None


def logits_t(
    x: torch.Tensor, values: torch.Tensor, indices: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """Logits of one label chunk, label-major: (chunk, batch) fp32."""
    n_rows, fan_in = indices.shape
    batch, d = x.shape
    out = new_output((n_rows, batch), torch.float32, x.device)
    _logits_kernel[_grid(n_rows, batch)](
        x.contiguous(), values.contiguous(), indices.contiguous(), bias if bias is not None else values,
        out, n_rows, batch, d, K=fan_in, HAS_BIAS=bias is not None, BL=BLOCK_LABELS, BB=BLOCK_BATCH,
    )
    return out


def grad_values(grad_t: torch.Tensor, x: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """grad_values[l, j] = sum_b grad_t[l, b] * x[b, indices[l, j]]: (chunk, k) fp32."""
    n_rows, fan_in = indices.shape
    batch, d = x.shape
    out = new_output((n_rows, fan_in), torch.float32, x.device)
    _grad_values_kernel[(triton.cdiv(n_rows, BLOCK_LABELS),)](
        grad_t.contiguous(), x.contiguous(), indices.contiguous(), out, n_rows, batch, d,
        K=fan_in, KP=triton.next_power_of_2(fan_in), BL=BLOCK_LABELS,
    )
    return out


def add_grad_input_t(
    grad_t: torch.Tensor,
    values: torch.Tensor,
    indices: torch.Tensor,
    out_t: torch.Tensor,
    pattern: None = None,
) -> None:
    """out_t (d, batch) fp32 += W_chunk^T @ grad_t by atomic scatter."""
    n_rows, fan_in = indices.shape
    batch = grad_t.shape[1]
    if out_t.dtype != torch.float32 or not out_t.is_contiguous():
        raise ValueError("triton grad_input accumulates into a contiguous fp32 (d, batch) buffer")
    _grad_input_kernel[_grid(n_rows, batch)](
        grad_t.contiguous(), values.contiguous(), indices.contiguous(), out_t, n_rows, batch,
        K=fan_in, BL=BLOCK_LABELS, BB=BLOCK_BATCH,
    )
