"""Opening (optionally gzip/xz/bz2 compressed) text files as streams of lines.

Decompression and decoding happen while lines are read, so that is where a truncated download, a file
named .gz that is not gzip, or bytes that are not UTF-8 surface: the stream turns each into one
XmcfitError line naming the file and the line it was reading.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from xmcfit.errors import XmcfitError

COMPRESSED_SUFFIXES = (".gz", ".xz", ".bz2")
_OPENERS = {".gz": gzip.open, ".xz": lzma.open, ".bz2": bz2.open}


class CheckedLines:
    """A text stream's lines (readline, iteration, `with`) whose read errors become one XmcfitError line:
    `file:line: what is wrong` with the 1-based number of the line being read."""

    def __init__(self, path: Path, stream: IO[str]) -> None:
        self.path = path
        self._stream = stream
        self.line_no = 0
        """Lines read so far."""

    def readline(self) -> str:
        try:
            line = self._stream.readline()
        except UnicodeDecodeError as err:
            line_no, byte = _first_bad_utf8_line(self.path)
            raise read_error(self.path, line_no or self.line_no + 1,
                             _why(self.path, err) if byte is None else _not_utf8(byte)) from None
        except (EOFError, OSError, lzma.LZMAError, zlib.error) as err:
            raise read_error(self.path, self.line_no + 1, _why(self.path, err)) from None
        if line:
            self.line_no += 1
        return line

    def __iter__(self) -> Iterator[str]:
        while line := self.readline():
            yield line

    def __enter__(self) -> "CheckedLines":
        return self

    def __exit__(self, *exc: object) -> None:
        self._stream.close()


def _not_utf8(byte: int) -> str:
    return f"not UTF-8 text (byte 0x{byte:02x}); re-encode the file as UTF-8"


def _first_bad_utf8_line(path: Path) -> tuple[int | None, int | None]:
    """(1-based line, offending byte) of the first line of `path` that is not UTF-8, found by re-reading it
    line by line: the text stream decodes ahead in blocks, so the line it was reading is not where the byte
    is. A UTF-8 sequence never holds a newline byte, so lines can be decoded one at a time."""
    try:
        with _OPENERS.get(path.suffix, open)(path, "rb") as raw:  # type: ignore[operator]
            for line_no, line in enumerate(raw, start=1):
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError as err:
                    return line_no, line[err.start]
    except (EOFError, OSError, lzma.LZMAError, zlib.error):
        pass
    return None, None


def _why(path: Path, err: BaseException) -> str:
    if isinstance(err, UnicodeDecodeError):
        return _not_utf8(err.object[err.start])
    if isinstance(err, EOFError):
        return "the compressed file ends early (truncated?); download or compress it again"
    if isinstance(err, gzip.BadGzipFile) or (isinstance(err, OSError) and path.suffix == ".gz"):
        return f"not a valid gzip file ({err}); rename it without .gz if it is plain text"
    if isinstance(err, (lzma.LZMAError, zlib.error)) or path.suffix in (".xz", ".bz2"):
        return f"corrupt {path.suffix[1:]} data ({err})"
    return f"cannot read ({getattr(err, 'strerror', None) or err})"


def open_text(path: Path) -> CheckedLines:
    """Text-mode UTF-8 lines of `path`, decompressing by suffix; missing files, and read, decompression or
    decoding errors while reading, fail in one line."""
    opener = _OPENERS.get(path.suffix)
    try:
        if opener is not None:
            return CheckedLines(path, opener(path, "rt", encoding="utf-8"))  # type: ignore[operator,arg-type]
        return CheckedLines(path, open(path, encoding="utf-8"))
    except OSError as exc:
        raise XmcfitError(f"{path}: cannot open ({exc.strerror or exc})") from exc


def read_text_file(path: Path) -> str:
    """A small UTF-8 file's whole text (label names, label tables); an unreadable or non-UTF-8 file is one
    XmcfitError line naming the line of the first bad byte."""
    with open_text(path) as lines:
        return "".join(lines)


def strip_compression(name: str) -> str:
    """File name without a trailing compression suffix: 'a_train.txt.gz' -> 'a_train.txt'."""
    for suffix in COMPRESSED_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def read_error(path: Path, line_no: int, problem: str) -> XmcfitError:
    """The one-line error for a bad record: file, 1-based line number, problem."""
    return XmcfitError(f"{path}:{line_no}: {problem}")
