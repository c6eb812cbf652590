"""Size strings for --gpu-mem: `16G`, `16GiB`, `16GB`, `15360M`, `0.5T`, plain bytes -> integer bytes.

Binary (powers of 1024): K, M, G, T and KiB, MiB, GiB, TiB. Decimal (powers of 1000): KB, MB, GB, TB.
"""

from __future__ import annotations

import re

from xmcfit.errors import XmcfitError

GIB = 2**30
"""Bytes per GiB (display only: memory is carried as integer bytes)."""

_UNITS_BYTES = {
    "": 1, "b": 1,
    "k": 2**10, "kib": 2**10, "m": 2**20, "mib": 2**20, "g": 2**30, "gib": 2**30, "t": 2**40, "tib": 2**40,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*$")

BARE_NUMBER_MIN_BYTES = 2**20
"""A unit-less size below 1 MiB is refused with a hint: no device memory is that small, and `--gpu-mem 16`
almost always means 16 GiB."""

SIZE_HELP = ("G/GiB, M/MiB, K/KiB, T/TiB are binary (2**30 ...); GB, MB, KB, TB are decimal (10**9 ...); "
             "a plain number is bytes")


def parse_size(text: str, flag: str = "--gpu-mem") -> int:
    """Integer bytes of a size string; raises XmcfitError naming `flag` when malformed or not positive."""
    match = _SIZE.match(text)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS_BYTES:
        raise XmcfitError(f"{flag} {text!r}: not a size; use e.g. 16G, 16GiB, 16GB, 15360M or bytes ({SIZE_HELP})")
    size_bytes = int(float(match.group(1)) * _UNITS_BYTES[unit])
    if size_bytes < 1:
        raise XmcfitError(f"{flag} {text!r}: must be at least 1 byte")
    if unit in ("", "b") and size_bytes < BARE_NUMBER_MIN_BYTES:
        number = match.group(1)
        raise XmcfitError(f"{flag} {text!r} is {size_bytes} bytes; did you mean {number}G ({number} GiB)? "
                          "A number without a unit is bytes")
    return size_bytes


def gib(n_bytes: int) -> float:
    """Bytes as GiB (2**30), for display."""
    return n_bytes / GIB
