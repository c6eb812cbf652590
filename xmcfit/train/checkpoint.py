"""Recipe part 4, checkpointing: what a training checkpoint holds, written atomically.

A checkpoint is the model, the optimizers and loss scaler, the rewirer's generator, the loop's Progress
and every RNG, so a resumed run ends with the same weights as one left alone. Tensors go to safetensors,
everything else to JSON, one folder per save: written to `checkpoint/step-N.tmp/`, renamed to
`checkpoint/step-N/` once complete, and only then named in `checkpoint/latest` (replaced atomically). A
crash at any moment leaves the previous checkpoint intact and `latest` pointing at a complete folder.
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
from safetensors.torch import load_file, save_file

from xmcfit.atomic import atomic_write_text
from xmcfit.errors import XmcfitError
from xmcfit.train.setup import TrainParts

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoint"
_TENSORS = "tensors.safetensors"
_META = "state.json"
_TENSOR_MARK = "__tensor__"


def flatten_state(prefix: str, state: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Move every tensor of a nested dict/list into `tensors` under a dotted key; return the JSON rest."""
    if isinstance(state, torch.Tensor):
        tensors[prefix] = state.detach().to("cpu").contiguous().clone()
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


def save_checkpoint(run_dir: Path, step: int, state: dict[str, Any], keep: int = 1) -> Path:
    """write_checkpoint into the run's `checkpoint/` folder."""
    return write_checkpoint(run_dir / CHECKPOINT_DIR, step, state, keep)


def write_checkpoint(root: Path, step: int, state: dict[str, Any], keep: int = 1) -> Path:
    """Write `state` (nested dicts of tensors and JSON values) as `root/step-N/`; keep the newest `keep`.
    A label-sharded run calls it once per rank with that rank's own root (xmcfit.train.distributed)."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:09d}"
    tmp = root / f"step-{step:09d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    tensors: dict[str, torch.Tensor] = {}
    meta = flatten_state("s", state, tensors)
    save_file(tensors, str(tmp / _TENSORS))
    atomic_write_text(tmp / _META, json.dumps(meta))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    atomic_write_text(root / "latest", final.name + "\n")
    complete = sorted(p for p in root.glob("step-*") if p.is_dir() and not p.name.endswith(".tmp"))
    for old in complete[: -max(1, keep)]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The folder `checkpoint/latest` names, or None when the run has no complete checkpoint."""
    pointer = run_dir / CHECKPOINT_DIR / "latest"
    if not pointer.exists():
        return None
    folder = run_dir / CHECKPOINT_DIR / pointer.read_text().strip()
    return folder if (folder / _META).exists() and (folder / _TENSORS).exists() else None


def load_checkpoint(folder: Path) -> dict[str, Any]:
    """Read a checkpoint folder back into the nested state that save_checkpoint was given."""
    try:
        tensors = load_file(str(folder / _TENSORS))
        meta = json.loads((folder / _META).read_text())
    except (OSError, ValueError) as err:
        raise XmcfitError(f"{folder}: unreadable checkpoint ({err})") from None
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


def save_training_state(run_dir: Path, parts: TrainParts, progress: Progress) -> Path:
    """Checkpoint `progress.step`: model, optimizers, rewirer generator, progress and RNGs."""
    train: dict[str, Any] = {"model": parts.model.state_dict(), **parts.optimizers.state_dict()}
    if parts.rewirer is not None:
        train["rewirer_rng"] = parts.rewirer.generator.get_state()
    return save_checkpoint(run_dir, progress.step, {"train": train, "progress": vars(progress), "rng": rng_state()})


def load_training_state(run_dir: Path, parts: TrainParts) -> Progress:
    """Restore the latest checkpoint into `parts` and the global RNGs; the Progress it was saved at."""
    folder = latest_checkpoint(run_dir)
    if folder is None:
        raise XmcfitError(f"{run_dir}: no complete checkpoint to resume from")
    state = load_checkpoint(folder)
    parts.model.load_state_dict(state["train"]["model"], strict=True)
    parts.optimizers.load_state_dict(state["train"])
    if parts.rewirer is not None:
        parts.rewirer.generator.set_state(state["train"]["rewirer_rng"])
    progress = Progress(**state["progress"])
    set_rng_state(state["rng"])
    log.info("resumed from %s at step %d", folder.name, progress.step)
    return progress
