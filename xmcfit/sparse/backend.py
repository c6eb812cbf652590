"""The interface every sparse backend implements, and the output buffers the backends share.

A backend computes the three label-major products of one chunk of rows [l0, l1) of an ELLPACK weight
(values and indices (chunk, k)); xmcfit.sparse.torch_backend and xmcfit.sparse.triton_backend are
modules that satisfy `SparseBackend`, and the chunked loss's dense ops a class that does. `dispatch`
picks one by device; the backends import nothing from it.
"""

from __future__ import annotations

from typing import Protocol

import torch


class SparseBackend(Protocol):
    """Label-major products of one chunk: x (batch, d), grad_t (chunk, batch), out_t (d, batch)."""

    def transposed_pattern(self, indices: torch.Tensor, in_features: int) -> object | None:
        """What add_grad_input_t needs beyond the indices (cached per chunk until they change), or None."""
        ...

    def logits_t(self, x: torch.Tensor, values: torch.Tensor, indices: torch.Tensor,
                 bias: torch.Tensor | None) -> torch.Tensor:
        """(chunk, batch) = W_chunk @ x^T + bias, accumulated in at least fp32."""
        ...

    def grad_values(self, grad_t: torch.Tensor, x: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """(chunk, k): (grad_t @ x) sampled at the chunk's pattern."""
        ...

    def add_grad_input_t(self, grad_t: torch.Tensor, values: torch.Tensor, indices: torch.Tensor,
                         out_t: torch.Tensor, pattern: object | None = None) -> None:
        """out_t (d, batch) += W_chunk^T @ grad_t, in place."""
        ...


# Tests set this to True: outputs are then filled with NaN before kernels write them, so an element a
# kernel forgets to write shows up as NaN instead of stale memory that happens to look plausible.
POISON_OUTPUTS = False


def new_output(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """torch.empty, or NaN-filled when POISON_OUTPUTS is set."""
    if POISON_OUTPUTS:
        return torch.full(shape, float("nan"), dtype=dtype, device=device)
    return torch.empty(shape, dtype=dtype, device=device)
