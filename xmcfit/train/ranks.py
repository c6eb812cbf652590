"""One process of a label-sharded run: its device, joining the process group, the errors that stop one
rank or all of them, the data a rank other than 0 reads, and the one-flag agreement between ranks."""

from __future__ import annotations

import datetime
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from xmcfit.errors import XmcfitError
from xmcfit.model import resolve_encoder_source
from xmcfit.plan.schema import Plan
from xmcfit.rundir import DataOptions
from xmcfit.train.data import TrainData, load_train_data
from xmcfit.train.world import World


class RankError(XmcfitError):
    """A failure of one process only (its device ran out of memory, no GPU for its LOCAL_RANK); every
    other user error of a label-sharded run happens in every process alike and is printed by rank 0 alone
    (xmcfit.cli)."""

    rank_specific = True


def rank_device(requested: str, world: World) -> torch.device:
    """The device of this rank: the CPU (gloo), or the GPU of its LOCAL_RANK (NCCL)."""
    if requested == "cpu" or (requested == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise XmcfitError(f"--device {requested}: no CUDA device is visible; use --device cpu")
    if world.local_rank >= torch.cuda.device_count():
        raise RankError(f"LOCAL_RANK={world.local_rank} but only {torch.cuda.device_count()} GPU(s) are "
                          "visible; start at most that many processes per machine")
    return torch.device("cuda", world.local_rank)


PROCESS_GROUP_TIMEOUT = datetime.timedelta(minutes=60)
"""How long a collective may wait: the other ranks wait while rank 0 reads the data and clusters the
labels (minutes at millions of labels), so longer than NCCL's 10-minute default."""


def init_process_group(world: World, device: torch.device) -> None:
    """Join torchrun's rendezvous (MASTER_ADDR/MASTER_PORT): NCCL on GPUs, gloo on the CPU."""
    if device.type == "cuda":
        torch.cuda.set_device(device)
    try:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=world.rank,
                                world_size=world.size, timeout=PROCESS_GROUP_TIMEOUT)
    except (RuntimeError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise XmcfitError(f"could not join the other {world.size - 1} training process(es) ({first}); "
                          "start the processes with torchrun or `xmcfit train --nproc N`") from None


class SharedError(XmcfitError):
    """Rank 0's failure before training began (a bad plan or data, a finished run), raised again in the
    other ranks so that all stop together; rank 0 prints it (xmcfit.cli)."""

    def __init__(self, message: str, is_error: bool, exit_code: int) -> None:
        super().__init__(message)
        self.is_error, self.exit_code = is_error, exit_code


def rank_data(plan: Plan, run_dir: Path, options: DataOptions, resume: bool) -> TrainData:
    """The training data of a rank other than 0, once rank 0 has written the run's data records (label
    vocabulary and counts, encoder files, clusters): read as a resume reads them, writing nothing; a fresh
    run's pretrained encoder from where rank 0 took it."""
    data = load_train_data(plan, run_dir, options, resume=True)
    if not resume and data.encoder_source is not None:
        data = replace(data, encoder_source=resolve_encoder_source(plan.model.encoder.name))
    return data


def any_rank(flag: bool, device: torch.device) -> bool:
    """True when `flag` is true in any rank (a one-int all-reduce)."""
    t = torch.tensor([int(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def rank_seed(seed: int, rank: int) -> int:
    """Rank r > 0's seed for its dropout masks (rank 0 keeps the plan's seed)."""
    return int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])
