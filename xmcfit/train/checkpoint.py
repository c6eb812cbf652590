"""Atomic training checkpoints: tensors in safetensors, everything else in JSON, one folder per save.

A checkpoint is written to `checkpoint/step-N.tmp/`, renamed to `checkpoint/step-N/` once complete, and
only then named in `checkpoint/latest` (replaced atomically). A crash at any moment leaves the previous
checkpoint intact and `latest` pointing at a complete folder.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from xmcfit.atomic import atomic_write_text
from xmcfit.errors import XmcfitError

CHECKPOINT_DIR = "checkpoint"
_TENSORS = "tensors.safetensors"
_META = "state.json"
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


def save_checkpoint(run_dir: Path, step: int, state: dict[str, Any], keep: int = 1) -> Path:
    """Write `state` (nested dicts of tensors and JSON values) as checkpoint `step`; keep the newest `keep`."""
    root = run_dir / CHECKPOINT_DIR
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
