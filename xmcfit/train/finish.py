"""The end of a training run: final weights, memory.json, and run.json marked done."""

from __future__ import annotations

import json
import os
from typing import Any

import torch
from safetensors.torch import save_file

from xmcfit.atomic import atomic_write_text
from xmcfit.rundir import RunFiles, read_run_info, write_run_info


def write_final_weights(files: RunFiles, model: torch.nn.Module, memory: dict[str, Any], *,
                        epochs_done: int, steps: int) -> None:
    """model.safetensors and memory.json (both atomic), then mark the run done in run.json."""
    tmp = files.weights.with_name("model.tmp.safetensors")
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    os.replace(tmp, files.weights)
    atomic_write_text(files.memory, json.dumps(memory, indent=2) + "\n")
    info = read_run_info(files.root)
    info.update(status="done", epochs_done=epochs_done, steps=steps)
    write_run_info(files.root, info)
