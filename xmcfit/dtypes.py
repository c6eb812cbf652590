"""Storage dtypes by the names plans use: bytes per element, and the torch dtype of each name.

One table for the memory model (bytes) and the trainer (torch dtypes); a new format (FP8: add
"float8_e4m3fn": 1) joins here. Pure Python: torch is imported only when a torch dtype is asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "int16": 2, "int32": 4}
"""Bytes per element by dtype name (the names are torch's: torch.<name>)."""

AUTOCAST_DTYPE = {"bf16_amp": "bfloat16", "fp16_amp": "float16", "fp32": None}
"""The autocast dtype of each plan precision (None: no autocast)."""

INT16_MAX_COLUMNS = 32767
"""Largest column id an int16 index can hold: DESIGN.md, "int16 when d <= 32767"."""


def index_dtype_name(in_features: int) -> str:
    """Narrowest index dtype that addresses `in_features` columns: "int16" up to 32767, else "int32"."""
    return "int16" if in_features <= INT16_MAX_COLUMNS else "int32"


def torch_dtype(name: str) -> "torch.dtype":
    """torch.<name> for a dtype name of DTYPE_BYTES (float32, bfloat16, float16, int16, int32)."""
    import torch

    if name not in DTYPE_BYTES:
        raise ValueError(f"dtype {name!r}: must be one of {', '.join(DTYPE_BYTES)}")
    return getattr(torch, name)
