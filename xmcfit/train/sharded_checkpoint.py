"""Checkpoints of a label-sharded run: rank 0 writes the replicated state to `checkpoint/` as a one-process
run would, rank r its classifier rows and TF-IDF side rows, their optimizer state and its generators to
`checkpoint/shard-r-of-N/`; a resume loads the newest step every root verifies, and the final weights
concatenate the shards' rows in label order.

The side's values are updated by the encoder-side AdamW (xmcfit.train.optim), whose state dict numbers
every parameter it holds; the side's entries of that state go to the shard, the rest to rank 0's root."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from xmcfit.errors import XmcfitError
from xmcfit.train.checkpoint import CHECKPOINT_DIR, Progress, checkpoint_folders, read_checkpoint, rng_state, \
    set_rng_state, verify_checkpoint, write_checkpoint
from xmcfit.train.setup import TrainParts
from xmcfit.train.world import World, launch_hint

log = logging.getLogger(__name__)

KEEP_CHECKPOINTS = 2
"""Checkpoints each root keeps: ranks that crash between their writes still share the step before."""
_SHARDED = ("classifier.", "tfidf.layer.")
"""Model state keys of the label-sharded rows: the classifier and the TF-IDF side's values and pattern."""


def _sharded(key: str) -> bool:
    return key.startswith(_SHARDED)


def _side_state_ids(parts: TrainParts) -> set[int]:
    """The numbers the encoder-side optimizer's state dict gives the TF-IDF side's values (torch numbers
    parameters 0, 1, ... through the groups in order)."""
    side = {id(p) for p in parts.model.parts().tfidf}
    params = [p for group in parts.optimizers.encoder.param_groups for p in group["params"]]
    return {i for i, p in enumerate(params) if id(p) in side}


def shard_root(run_dir: Path, rank: int, world_size: int) -> Path:
    return run_dir / CHECKPOINT_DIR / f"shard-{rank}-of-{world_size}"


def _steps(root: Path) -> set[int]:
    """Steps with a checkpoint folder under `root` that verifies (every file of its manifest intact)."""
    return {int(p.name[5:]) for p in checkpoint_folders(root) if verify_checkpoint(p) is None}


def save_sharded_state(run_dir: Path, parts: TrainParts, progress: Progress, world: World, keep: int) -> None:
    """Checkpoint `progress.step`: rank 0 the replicated state, every rank its shard; returns when all wrote.
    Each root keeps at least KEEP_CHECKPOINTS steps, whatever `keep` says."""
    model_state = parts.model.state_dict()
    opt = parts.optimizers.state_dict()
    side_ids = _side_state_ids(parts)
    enc_state = opt["enc_opt"]["state"]
    shard: dict[str, Any] = {"model": {k: v for k, v in model_state.items() if _sharded(k)},
                             "cls_opt": opt["cls_opt"], "rng": rng_state(),
                             "side_opt_state": {i: s for i, s in enc_state.items() if i in side_ids}}
    if parts.rewirer is not None:
        shard["rewirer_rng"] = parts.rewirer.generator.get_state()
    keep = max(keep, KEEP_CHECKPOINTS)
    write_checkpoint(shard_root(run_dir, world.rank, world.size), progress.step, shard, keep)
    if world.rank == 0:
        enc_opt = {**opt["enc_opt"], "state": {i: s for i, s in enc_state.items() if i not in side_ids}}
        replicated = {"model": {k: v for k, v in model_state.items() if not _sharded(k)},
                      "enc_opt": enc_opt, "scaler": opt["scaler"]}
        write_checkpoint(run_dir / CHECKPOINT_DIR, progress.step,
                         {"train": replicated, "progress": vars(progress), "world_size": world.size}, keep)
    dist.barrier()


def load_sharded_state(run_dir: Path, parts: TrainParts, world: World) -> Progress:
    """Restore the newest step that the replicated root and every shard root hold; one line when the run
    was written by another number of processes or has no such step."""
    root = run_dir / CHECKPOINT_DIR
    shard_dirs = sorted(p.name for p in root.glob("shard-*-of-*")) if root.is_dir() else []
    if shard_dirs and not shard_dirs[0].endswith(f"-of-{world.size}"):
        written_by = shard_dirs[0].rsplit("-of-", 1)[1]
        raise XmcfitError(f"{run_dir}: checkpoints were written by {written_by} processes, this run has "
                          f"{world.size}; resume with {launch_hint(int(written_by))}")
    common = _steps(root)
    for r in range(world.size):
        common &= _steps(shard_root(run_dir, r, world.size))
    if not common:
        raise XmcfitError(f"{run_dir}: no checkpoint step that every rank completed; nothing to resume from")
    step = max(common)
    name = f"step-{step:09d}"
    replicated = read_checkpoint(root / name)
    shard = read_checkpoint(shard_root(run_dir, world.rank, world.size) / name)
    train = replicated["train"]
    parts.model.load_state_dict({**train["model"], **shard["model"]}, strict=True)
    enc_opt = train["enc_opt"]
    enc_opt = {**enc_opt, "state": {**enc_opt["state"], **shard.get("side_opt_state", {})}}
    parts.optimizers.load_state_dict({"enc_opt": enc_opt, "cls_opt": shard["cls_opt"], "scaler": train["scaler"]})
    if parts.rewirer is not None:
        parts.rewirer.generator.set_state(shard["rewirer_rng"])
    set_rng_state(shard["rng"])
    log.info("rank %d resumed from %s", world.rank, name)
    return Progress(**replicated["progress"])


def merged_weights(run_dir: Path, parts: TrainParts, step: int, world: World) -> dict[str, torch.Tensor]:
    """The whole model's state dict: the replicated weights of this rank and the classifier rows of every
    shard's checkpoint at `step`, concatenated in rank order."""
    name = f"step-{step:09d}"
    shards = [read_checkpoint(shard_root(run_dir, r, world.size) / name)["model"] for r in range(world.size)]
    weights = {k: v for k, v in parts.model.state_dict().items() if not _sharded(k)}
    for key in shards[0]:
        weights[key] = torch.cat([s[key] for s in shards])  # (L, ...) rows in label order
    return weights
