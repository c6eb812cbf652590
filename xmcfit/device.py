"""The torch device a command runs on; train, eval and predict share the rule."""

from __future__ import annotations

import torch

from xmcfit.errors import XmcfitError


def pick_device(requested: str | None) -> torch.device:
    """`cuda` when available (or asked for), else the CPU; asking for an absent CUDA is a user error."""
    if requested in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise XmcfitError(f"--device {requested}: no CUDA device is visible; use --device cpu")
    return torch.device(requested)
