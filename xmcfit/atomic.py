"""Atomic file writes: a temporary file beside the target, flushed to disk, then renamed over it, so a
crash or a full disk never leaves half a file where a complete one was (plans, run info, checkpoints)."""

from __future__ import annotations

import os
from pathlib import Path

from xmcfit.errors import XmcfitError


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `text` to `path` (parent folders created); an OS error becomes one XmcfitError line."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as err:
        raise XmcfitError(f"{path}: cannot write ({err.strerror})") from None
