"""What every benchmark script shares: the checkout's root, byte units, the seed and the timing loop.
Importing it puts the checkout first on sys.path, so a script run as `python bench/NAME.py` measures this
tree's xmcfit even where another one is installed."""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

GIB = 2**30
"""Bytes in a GiB (2**30: tables say GiB, never "GB")."""
MIB = 2**20
"""Bytes in a MiB."""
SEED = 0
"""The seed of every benchmark's data, initialisation and sampling."""
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
"""The real datasets beside the checkout (DESIGN.md): the default of every --data-root."""


def sync(device: "torch.device") -> None:
    """Wait for `device`'s queued work (CUDA runs asynchronously; the CPU needs no wait)."""
    if device.type == "cuda":
        import torch  # here, not at the top: most scripts that import common never touch torch

        torch.cuda.synchronize(device)


def median_seconds(fn: Callable[[], Any], device: "torch.device", warmup: int, repeats: int) -> float:
    """Median wall seconds of `fn()` over `repeats` runs after `warmup` untimed ones, synced on `device`."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)
