"""The end of a training run: final weights, memory.json, and run.json marked done."""

from __future__ import annotations

import os

import torch
from safetensors.torch import save_file

from xmcfit.rundir import MemoryReport, RunFiles, read_run_info, write_run_info


def write_final_weights(files: RunFiles, model: torch.nn.Module, memory: MemoryReport, *,
                        epochs_done: int, steps: int) -> None:
    """model.safetensors and memory.json (both atomic), then mark the run done in run.json."""
    tmp = files.weights.with_name("model.tmp.safetensors")
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    os.replace(tmp, files.weights)
    memory.save(files.memory)
    info = read_run_info(files.root)
    info.update(status="done", epochs_done=epochs_done, steps=steps)
    write_run_info(files.root, info)
