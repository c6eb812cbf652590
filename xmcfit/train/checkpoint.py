"""Recipe part 4, checkpointing: what a training checkpoint holds, written atomically, verified on read.

A checkpoint is the model, the optimizers and loss scaler, the rewirer's generator, the loop's Progress
and every RNG, so a resumed run ends with the same weights as one left alone. Tensors go to safetensors,
everything else to JSON, one folder per save: written to `<root>/step-N.tmp/` with a manifest.json of
each file's size and SHA-256, fsynced, renamed to `<root>/step-N/` once complete, and only then named in
`<root>/latest`. The newest `keep` (default 2) folders are kept. A crash or a full disk at any moment
leaves the previous checkpoints intact.

Reading verifies the manifest first: a flipped byte or a truncated file is caught before any tensor is
used, and a resume falls back to the newest checkpoint that verifies, saying so (the bad folder is
renamed `step-N.corrupt`, never deleted). A folder without a manifest is not trusted: it is skipped like a
corrupted one, and pruning removes only folders with a manifest, so nothing xmcfit did not write is deleted.

The small API a per-rank (sharded) writer calls with its own root folder:
    write_checkpoint(root, step, state, keep)  ->  folder
    latest_good_checkpoint(root)               ->  newest folder that verifies, or None
    read_checkpoint(folder)                    ->  state (verified)
    verify_checkpoint(folder), checkpoint_folders(root)  for agreeing on a step across ranks
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from xmcfit.atomic import atomic_write_text, file_sha256, fsync_path, readable_as_umask_allows
from xmcfit.errors import XmcfitError
from xmcfit.rundir import CHECKPOINT_DIR, checkpoint_folders
from xmcfit.train.setup import TrainParts

log = logging.getLogger(__name__)

DEFAULT_KEEP = 2
"""Checkpoints kept per root: the newest and one to fall back to when the newest fails verification."""
_TENSORS = "tensors.safetensors"
_META = "state.json"
_MANIFEST = "manifest.json"
_MANIFEST_FORMAT = 1
_TENSOR_MARK = "__tensor__"


def flatten_state(prefix: str, state: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Move every tensor of a nested dict/list into `tensors` under a dotted key; return the JSON rest."""
    if isinstance(state, torch.Tensor):
        # No clone: save_file writes synchronously from these tensors, and on a CPU run a clone held a second
        # copy of the whole state while the checkpoint was written (at 10^6+ labels a larger peak than any
        # training step; bench/scale_memory.py). CUDA tensors are copied to the host by .to("cpu") anyway.
        tensors[prefix] = state.detach().to("cpu").contiguous()
        return _TENSOR_MARK
    if isinstance(state, dict):
        return {str(k): flatten_state(f"{prefix}.{k}", v, tensors) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return [flatten_state(f"{prefix}.{i}", v, tensors) for i, v in enumerate(state)]
    return state


def unflatten_state(prefix: str, meta: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of flatten_state. Integer-like dict keys come back as ints (optimizer state ids)."""
    if meta == _TENSOR_MARK:
        return tensors[prefix]
    if isinstance(meta, dict):
        return {_key(k): unflatten_state(f"{prefix}.{k}", v, tensors) for k, v in meta.items()}
    if isinstance(meta, list):
        return [unflatten_state(f"{prefix}.{i}", v, tensors) for i, v in enumerate(meta)]
    return meta


def _key(k: str) -> Any:
    return int(k) if k.isdigit() else k


@dataclass(frozen=True)
class CheckpointPolicy:
    """When a run checkpoints besides each epoch's end, and how many checkpoints it keeps."""

    every_steps: int | None = None
    """Also every this many optimizer steps (None: not by steps)."""
    every_minutes: float | None = 30.0
    """Also when this many minutes passed since the last checkpoint (None: not by time). At Amazon-3M
    scale an epoch is ~13,000 steps, hours on one GPU: a crash should not cost all of them."""
    keep: int = DEFAULT_KEEP
    """Newest checkpoints kept (>= 1; 2 leaves one to fall back to when the newest fails verification)."""

    def __post_init__(self) -> None:
        from xmcfit.plan.schema import check_value

        for value, tp, flag in ((self.every_steps, int, "--save-every-steps"),
                                (self.every_minutes, float, "--save-every-minutes"), (self.keep, int, "--keep-checkpoints")):
            if value is not None:
                check_value(tp, value, flag)
        if self.every_steps is not None and self.every_steps < 1:
            raise XmcfitError(f"--save-every-steps {self.every_steps}: must be >= 1")
        if self.every_minutes is not None and not self.every_minutes > 0:
            raise XmcfitError(f"--save-every-minutes {self.every_minutes}: must be > 0")
        if self.keep < 1:
            raise XmcfitError(f"--keep-checkpoints {self.keep}: must be >= 1")


def write_checkpoint(root: Path, step: int, state: dict[str, Any], keep: int = DEFAULT_KEEP) -> Path:
    """Write `state` (nested dicts of tensors and JSON values) as `root/step-N/` with a checksummed
    manifest, atomically; keep the newest `keep` folders. An OS error (full disk, read-only folder) is one
    XmcfitError line; the partial folder is removed and the earlier checkpoints are untouched."""
    final = root / f"step-{step:09d}"
    tmp = root / f"step-{step:09d}.tmp"
    try:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        tensors: dict[str, torch.Tensor] = {}
        meta = flatten_state("s", state, tensors)
        save_file(tensors, str(tmp / _TENSORS))
        readable_as_umask_allows(tmp / _TENSORS)
        fsync_path(tmp / _TENSORS)
        atomic_write_text(tmp / _META, json.dumps(meta))
        manifest = {"format": _MANIFEST_FORMAT, "step": step,
                    "files": {name: {"bytes": (tmp / name).stat().st_size, "sha256": file_sha256(tmp / name)}
                              for name in (_TENSORS, _META)}}
        atomic_write_text(tmp / _MANIFEST, json.dumps(manifest, indent=1) + "\n")
        old = root / f"step-{step:09d}.old"
        if final.exists():  # the same step again (a resume that fell back past it): swap, then drop the old
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
        fsync_path(root)
        atomic_write_text(root / "latest", final.name + "\n")
    except (OSError, SafetensorError, XmcfitError) as err:
        shutil.rmtree(tmp, ignore_errors=True)
        why = err.strerror if isinstance(err, OSError) and err.strerror else str(err).splitlines()[0]
        raise XmcfitError(f"{final}: cannot write the checkpoint ({why}); the earlier checkpoints are intact") from None
    for stale in [f for f in checkpoint_folders(root) if (f / _MANIFEST).is_file()][max(1, keep):]:
        shutil.rmtree(stale, ignore_errors=True)  # only folders xmcfit wrote (a manifest): never a user's
    return final


def save_checkpoint(run_dir: Path, step: int, state: dict[str, Any], keep: int = DEFAULT_KEEP) -> Path:
    """write_checkpoint into the run's `checkpoint/` folder."""
    return write_checkpoint(run_dir / CHECKPOINT_DIR, step, state, keep)


def verify_checkpoint(folder: Path) -> str | None:
    """None when every file of `folder` has its manifest's size and SHA-256; else why not, in a few words.
    A folder without a manifest is not trusted (nothing proves its bytes are the ones written)."""
    manifest_path = folder / _MANIFEST
    if not manifest_path.is_file():
        return f"no {_MANIFEST} (nothing to verify its files against)"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        entries = manifest["files"]
        if set(entries) != {_TENSORS, _META}:
            return f"the manifest lists {sorted(entries)}, not {_TENSORS} and {_META}"
        for name, entry in entries.items():
            path = folder / name
            if not path.is_file():
                return f"missing {name}"
            if path.stat().st_size != entry["bytes"]:
                return f"{name} has {path.stat().st_size} bytes, the manifest says {entry['bytes']} (truncated)"
            if file_sha256(path) != entry["sha256"]:
                return f"{name} does not match its SHA-256 (corrupted)"
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        return f"unreadable manifest ({type(err).__name__})"
    return None


def latest_good_checkpoint(root: Path, quarantine: bool = True) -> Path | None:
    """The newest folder under `root` that verifies, or None when there is none. Newer folders that fail
    are reported as a warning and, with `quarantine` and a good one to fall back to, renamed to
    `step-N.corrupt` so later saves and prunes never count them."""
    rejected: list[tuple[Path, str]] = []
    for folder in checkpoint_folders(root):
        why = verify_checkpoint(folder)
        if why is None:
            for bad, reason in rejected:
                log.warning("checkpoint %s: %s; falling back to %s", bad, reason, folder.name)
                if quarantine:
                    os.replace(bad, bad.with_name(bad.name + ".corrupt"))
            return folder
        rejected.append((folder, why))
    if rejected:
        details = "; ".join(f"{p.name}: {why}" for p, why in rejected)
        raise XmcfitError(f"{root}: no checkpoint verifies ({details}); move {root} aside to start over")
    return None


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest verified folder of the run's `checkpoint/`, or None when the run has no checkpoint."""
    return latest_good_checkpoint(run_dir / CHECKPOINT_DIR, quarantine=False)


def read_checkpoint(folder: Path) -> dict[str, Any]:
    """Verify a checkpoint folder, then read it back into the nested state write_checkpoint was given."""
    why = verify_checkpoint(folder)
    if why is not None:
        raise XmcfitError(f"{folder}: checkpoint fails verification ({why})")
    try:
        tensors = load_file(str(folder / _TENSORS))
        meta = json.loads((folder / _META).read_text())
    except (OSError, ValueError, SafetensorError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise XmcfitError(f"{folder}: unreadable checkpoint ({first})") from None
    return unflatten_state("s", meta, tensors)


@dataclass
class Progress:
    """Mutable counters of the loop; saved in every checkpoint."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    skipped: int = 0
    bad_in_a_row: int = 0
    moved_total: int = 0
    last_loss: float | None = None
    """The loss of the last step that was not skipped (None before any)."""


def rng_state() -> dict[str, Any]:
    """Python's, NumPy's and torch's (CPU and CUDA) global generators, as JSON values and tensors."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
                             "python_pos": random.getstate()[2], "numpy": np.random.get_state()[1].tolist(),
                             "numpy_pos": int(np.random.get_state()[2])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), state["python_pos"]))
    np.random.set_state(("MT19937", np.array(state["numpy"], dtype=np.uint32), state["numpy_pos"], 0, 0.0))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_training_state(run_dir: Path, parts: TrainParts, progress: Progress, keep: int = DEFAULT_KEEP) -> Path:
    """Checkpoint `progress.step`: model, optimizers, rewirer generator, progress and RNGs."""
    train: dict[str, Any] = {"model": parts.model.state_dict(), **parts.optimizers.state_dict()}
    if parts.rewirer is not None:
        train["rewirer_rng"] = parts.rewirer.generator.get_state()
    return save_checkpoint(run_dir, progress.step, {"train": train, "progress": vars(progress), "rng": rng_state()},
                           keep=keep)


def load_training_state(run_dir: Path, parts: TrainParts) -> Progress:
    """Restore the newest checkpoint that verifies into `parts` and the global RNGs (newer ones that fail
    are set aside with a warning); the Progress it was saved at."""
    folder = latest_good_checkpoint(run_dir / CHECKPOINT_DIR)
    if folder is None:
        raise XmcfitError(f"{run_dir}: no complete checkpoint to resume from")
    state = read_checkpoint(folder)
    parts.model.load_state_dict(state["train"]["model"], strict=True)
    parts.optimizers.load_state_dict(state["train"])
    if parts.rewirer is not None:
        parts.rewirer.generator.set_state(state["train"]["rewirer_rng"])
    progress = Progress(**state["progress"])
    set_rng_state(state["rng"])
    log.info("resumed from %s at step %d", folder.name, progress.step)
    return progress
