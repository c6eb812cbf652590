"""Sparse classifier engine: FixedFanInLinear (fixed fan-in, ELLPACK), the chunked loss, SET rewiring,
and a pure-bf16 optimizer; torch and Triton backends chosen by `dispatch`."""

from xmcfit.sparse import dispatch
from xmcfit.sparse.layer import FixedFanInLinear
from xmcfit.sparse.loss import chunked_loss
from xmcfit.sparse.rewire import RewireStats, SETRewirer
from xmcfit.workspace import loss_workspace_bytes, rewire_workspace_bytes

__all__ = [
    "FixedFanInLinear",
    "RewireStats",
    "SETRewirer",
    "chunked_loss",
    "loss_workspace_bytes",
    "rewire_workspace_bytes",
]
