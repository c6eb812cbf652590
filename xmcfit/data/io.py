"""Opening (optionally gzip/xz/bz2 compressed) text files as streams of lines."""

from __future__ import annotations

import bz2
import gzip
import lzma
from pathlib import Path
from typing import IO

from xmcfit.errors import XmcfitError

COMPRESSED_SUFFIXES = (".gz", ".xz", ".bz2")


def open_text(path: Path) -> IO[str]:
    """Text-mode UTF-8 stream over `path`, decompressing by suffix; missing files fail in one line."""
    opener = {".gz": gzip.open, ".xz": lzma.open, ".bz2": bz2.open}.get(path.suffix)
    try:
        if opener is not None:
            return opener(path, "rt", encoding="utf-8")  # type: ignore[operator,return-value]
        return open(path, encoding="utf-8")
    except OSError as exc:
        raise XmcfitError(f"{path}: cannot open ({exc.strerror or exc})") from exc


def strip_compression(name: str) -> str:
    """File name without a trailing compression suffix: 'a_train.txt.gz' -> 'a_train.txt'."""
    for suffix in COMPRESSED_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def read_error(path: Path, line_no: int, problem: str) -> XmcfitError:
    """The one-line error for a bad record: file, 1-based line number, problem."""
    return XmcfitError(f"{path}:{line_no}: {problem}")
