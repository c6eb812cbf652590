"""Atomic file writes: a temporary file beside the target, flushed to disk, then renamed over it, so a
crash or a full disk never leaves half a file where a complete one was (plans, run info, checkpoints);
and the checksum that later proves a written file is still what was written."""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

from xmcfit.errors import XmcfitError


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `text` to `path` (parent folders created); an OS error becomes one XmcfitError line and
    leaves neither a partial target nor the temporary file behind."""
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
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise XmcfitError(f"{path}: cannot write ({err.strerror or err})") from None


def fsync_path(path: str | Path) -> None:
    """Flush a file's (or a directory's entries') data to disk: a rename is durable only once its folder is."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def readable_as_umask_allows(path: str | Path) -> None:
    """Give a file the mode an ordinary `open()` would (0o666 less the umask, 0o644 under the usual 022).
    safetensors' save_file creates its file 0o600 (a private temporary renamed into place), which on a
    shared cluster hid model.safetensors and checkpoints from teammates while every other file was 0o644."""
    mask = os.umask(0)  # the only way to read the umask; restored at once
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks (about a second per GiB)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
