"""Transient workspace of the sparse engine, in bytes: the one statement of each formula.

The engine (xmcfit.sparse: chunked_loss, SETRewirer) allocates these buffers and derives them in its
module docstrings; the memory model (xmcfit.plan.memory) and the chooser price them through these
functions. Pure arithmetic, no torch, so the planner can import it. label_range is the one statement of
which classifier rows a rank holds (the label-sharded layout, read by the process checks and the shards).
"""

from __future__ import annotations

FP32_BYTES = 4
SPARSE_LOSS_BYTES_PER_CONNECTION = 16
"""Per connection of a loss chunk: int32 column ids, the sampled fp32 value gradient and fp32 copies of
16-bit values (the buffer list is in xmcfit.sparse.loss's docstring)."""
CSR_ROW_POINTER_BYTES = 4
"""int32 row pointers of the CSR pattern sampled_addmm builds per chunk: (chunk + 1) of them."""


def loss_workspace_per_label_bytes(batch: int, fan_in: int | None, in_features: int) -> int:
    """Workspace one label row adds to a chunk of xmcfit.sparse.chunked_loss (fp32 accumulation):
    its logits and loss/margin buffer (2·batch fp32) + its connections (fan_in x 16) and one CSR row
    pointer; `fan_in=None` is a dense nn.Linear, whose weight-gradient row is in_features fp32."""
    logits = 2 * batch * FP32_BYTES
    if fan_in is None:
        return logits + in_features * FP32_BYTES
    return logits + fan_in * SPARSE_LOSS_BYTES_PER_CONNECTION + CSR_ROW_POINTER_BYTES


def loss_workspace_bytes(batch: int, chunk_rows: int, fan_in: int | None, in_features: int) -> int:
    """Transient bytes of one chunk of chunked_loss: 2·b·c·4 + c·k·16 + (c + 1)·4 for the sparse layer,
    2·b·c·4 + c·d·4 for a dense nn.Linear (`fan_in=None`)."""
    extra_pointer = 0 if fan_in is None else CSR_ROW_POINTER_BYTES
    return chunk_rows * loss_workspace_per_label_bytes(batch, fan_in, in_features) + extra_pointer


def extra_term_workspace_bytes(chunk_rows: int, fan_in: int) -> int:
    """What a second fixed fan-in term over its own input (chunked_loss's `extra`, the TF-IDF side) adds to
    a chunk: its connections (fan_in x 16) and CSR row pointers, c·k'·16 + (c + 1)·4."""
    return chunk_rows * fan_in * SPARSE_LOSS_BYTES_PER_CONNECTION + (chunk_rows + 1) * CSR_ROW_POINTER_BYTES


def rewire_workspace_bytes(chunk_rows: int, in_features: int, fan_in: int, value_bytes: int = 4) -> int:
    """Upper bound on the transient bytes of one SET rewiring chunk of r rows: r·(117·k + 288 + value_bytes·k)
    (derived in xmcfit.sparse.rewire's docstring). `in_features` is kept for the signature's sake: the
    sampling's workspace no longer depends on it."""
    del in_features
    return chunk_rows * (117 * fan_in + 288 + value_bytes * fan_in)


def label_range(n_labels: int, world_size: int, rank: int) -> tuple[int, int]:
    """Rows [lo, hi) of the classifier that `rank` holds: ceil(n_labels / world_size) per rank, the last
    rank fewer. Empty (lo == hi) when there are fewer labels than that layout needs."""
    rows = -(-n_labels // world_size)
    lo = min(n_labels, rank * rows)
    return lo, min(n_labels, lo + rows)
