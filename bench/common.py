"""What every benchmark script shares: the checkout's root, byte units and the seed. Importing it puts
the checkout first on sys.path, so a script run as `python bench/NAME.py` measures this tree's xmcfit
even where another one is installed."""

from __future__ import annotations

import sys
from pathlib import Path

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
