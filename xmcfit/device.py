"""The torch device a command runs on; train, eval and predict share the rule.

torch is imported inside pick_device: the command line checks device names while registering commands,
and `xmcfit plan` must not load torch.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from xmcfit.errors import XmcfitError

if TYPE_CHECKING:
    import torch

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
DEVICE_COMPLETIONS = ("auto", "cpu", "cuda", "cuda:0", "cuda:1")
"""What shell completion offers for --device (any cuda:N is accepted)."""
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def check_device_name(requested: str | None) -> None:
    """One XmcfitError line unless `requested` is auto, cpu, cuda or cuda:N (pure: no torch call)."""
    if requested is not None and (not isinstance(requested, str) or not _DEVICE.match(requested)):
        raise XmcfitError(f"--device {requested}: must be {DEVICE_CHOICES}")


def pick_device(requested: str | None) -> "torch.device":
    """`cuda` when available (or asked for), else the CPU; asking for an absent CUDA, a GPU index that is
    not there, or a device type xmcfit does not train on is a user error."""
    import torch

    check_device_name(requested)
    if requested in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise XmcfitError(f"--device {requested}: no CUDA device is visible; use --device cpu")
        index = int(requested.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise XmcfitError(f"--device {requested}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    return torch.device(requested)
