"""Recipe part 5, the finish: measured memory beside the plan, final weights, run.json marked done."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from xmcfit.plan.schema import Plan
from xmcfit.rundir import MemoryReport, RunFiles, read_run_info, write_run_info
from xmcfit.train.checkpoint import Progress
from xmcfit.train.memory_report import MemoryMeter, memory_report
from xmcfit.train.setup import TrainParts


@dataclass(frozen=True)
class TrainResult:
    """What a finished run did; memory.json's content as `memory`."""

    run_dir: Path
    steps: int
    epochs_done: int
    skipped_steps: int
    memory: MemoryReport
    final_loss: float
    """The loss of the last step that was not skipped (NaN when none ran in this attempt)."""


def write_final_weights(files: RunFiles, weights: Mapping[str, torch.Tensor], memory: MemoryReport, *,
                        epochs_done: int, steps: int) -> None:
    """model.safetensors (the whole model's state dict) and memory.json, both atomic, then mark the run
    done in run.json."""
    tmp = files.weights.with_name("model.tmp.safetensors")
    save_file({k: v.detach().cpu().contiguous() for k, v in weights.items()}, str(tmp))
    os.replace(tmp, files.weights)
    memory.save(files.memory)
    info = read_run_info(files.root)
    info.update(status="done", epochs_done=epochs_done, steps=steps)
    write_run_info(files.root, info)


def finish_training(plan: Plan, run_dir: Path, parts: TrainParts, meter: MemoryMeter, progress: Progress,
                    last_loss: float) -> TrainResult:
    """Stop the memory meter, write the final weights and memory.json, and say what the run did."""
    report = memory_report(plan, parts.model, parts.optimizers.all(), meter.stop(), parts.device)
    write_final_weights(RunFiles(run_dir), parts.model.state_dict(), report, epochs_done=progress.epoch,
                        steps=progress.step)
    return TrainResult(run_dir, progress.step, progress.epoch, progress.skipped, report, last_loss)
