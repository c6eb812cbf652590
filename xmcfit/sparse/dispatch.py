"""Backend choice for the sparse products: Triton on CUDA when importable, torch otherwise.

`XMCFIT_SPARSE_BACKEND=torch|triton` forces one; triton on a CPU tensor is allowed only under Triton's
interpreter (TRITON_INTERPRET=1, set before triton is first imported). The env var is read on every
call so tests can switch backends in one process.
"""

import importlib
import logging
import os
from typing import cast

import torch

from xmcfit.sparse.backend import SparseBackend

logger = logging.getLogger(__name__)

BACKEND_ENV = "XMCFIT_SPARSE_BACKEND"


def _triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def backend_name(device: torch.device) -> str:
    """'torch' or 'triton' for tensors on `device`, honouring XMCFIT_SPARSE_BACKEND."""
    forced = os.environ.get(BACKEND_ENV, "").strip().lower()
    if forced not in ("", "torch", "triton"):
        raise ValueError(f"{BACKEND_ENV}={forced!r}: must be 'torch' or 'triton'")
    if forced == "torch":
        return "torch"
    if forced == "triton":
        if not _triton_available():
            raise ValueError(f"{BACKEND_ENV}=triton: triton is not installed (pip install 'xmcfit[triton]')")
        if device.type != "cuda" and not _interpreting():
            raise ValueError(f"{BACKEND_ENV}=triton on device {device}: needs CUDA or TRITON_INTERPRET=1")
        return "triton"
    return "triton" if device.type == "cuda" and _triton_available() else "torch"


def get_backend(device: torch.device) -> SparseBackend:
    """The backend module (a SparseBackend: logits_t, grad_values, add_grad_input_t, transposed_pattern)
    for `device`; imported on first use, so triton loads only when it is chosen."""
    if backend_name(device) == "triton":
        return cast(SparseBackend, importlib.import_module("xmcfit.sparse.triton_backend"))
    return cast(SparseBackend, importlib.import_module("xmcfit.sparse.torch_backend"))

