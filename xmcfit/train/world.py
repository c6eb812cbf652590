"""This process's place in a label-sharded run, read from torchrun's environment (RANK, WORLD_SIZE,
LOCAL_RANK). Pure Python, no torch: the CLI and API read it before deciding whether to load torch at all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

from xmcfit.errors import XmcfitError


@dataclass(frozen=True)
class World:
    """This process's place in the run: torchrun's RANK, WORLD_SIZE and LOCAL_RANK (one process: 0, 1, 0)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "World":
        env = os.environ if env is None else env
        if "WORLD_SIZE" not in env:
            return cls()
        try:
            world = cls(int(env.get("RANK", "0")), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", "0")))
        except ValueError:
            raise XmcfitError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (torchrun sets them)") from None
        if not 0 <= world.rank < world.size:
            raise XmcfitError(f"RANK={world.rank}: must be in [0, WORLD_SIZE={world.size})")
        return world

    @property
    def distributed(self) -> bool:
        return self.size > 1


def launch_hint(n: int) -> str:
    """The two ways to start `n` processes, for error messages."""
    return f"`xmcfit train --nproc {n} ...` or `torchrun --nproc-per-node {n} -m xmcfit train ...`"
