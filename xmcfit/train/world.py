"""This process's place in a label-sharded run, read from torchrun's environment (RANK, WORLD_SIZE,
LOCAL_RANK), and the checks that the processes fit the plan. Pure Python, no torch: the CLI and API read
it before deciding whether to load torch at all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping

from xmcfit.errors import XmcfitError
from xmcfit.workspace import label_range

if TYPE_CHECKING:
    from xmcfit.plan.schema import Plan


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


def check_processes(plan: "Plan", world: World, *, nproc: int | None = None, auto_recover: bool = False,
                    device: str = "auto") -> None:
    """One XmcfitError line, before anything is written, unless the processes fit the plan: as many as its
    n_devices, each with labels to hold, on a device torchrun can assign."""
    n = plan.n_devices
    if nproc is not None and world.distributed:
        raise XmcfitError("--nproc starts torchrun itself; under torchrun leave it out")
    procs = nproc if nproc is not None else world.size
    if procs != n:
        if procs == 1:
            raise XmcfitError(f"the plan is for {n} devices (n_devices={n}): start {n} processes with "
                              f"{launch_hint(n)}, or re-plan with `xmcfit plan --devices 1`")
        raise XmcfitError(f"the plan is for {n} device(s) (n_devices={n}) but {procs} processes were started; "
                          f"start {n}, or re-plan with `xmcfit plan --devices {procs}`")
    if n == 1:
        return
    if auto_recover:
        raise XmcfitError("--auto-recover works on one device only: a label-sharded run cannot shrink one "
                          "rank's micro-batch; re-plan with a smaller `xmcfit plan --micro-batch` instead")
    if device.startswith("cuda:"):
        raise XmcfitError(f"--device {device}: each process takes the GPU of its LOCAL_RANK; use --device "
                          "cuda (or auto), and CUDA_VISIBLE_DEVICES to choose the GPUs")
    n_labels = plan.classifier.n_labels
    lo, hi = label_range(n_labels, n, n - 1)
    if lo >= hi:
        raise XmcfitError(f"n_labels={n_labels} over {n} devices leaves the last rank without labels "
                          f"({-(-n_labels // n)} per rank); use fewer devices")
