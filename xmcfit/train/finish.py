"""Recipe part 5, the finish: measured memory beside the plan, final weights, run.json marked done."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import contextlib

import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

from xmcfit.errors import XmcfitError

from xmcfit.plan.schema import Plan
from xmcfit.rundir import MemoryReport, RunFiles, read_run_info, write_run_info
from xmcfit.atomic import atomic_write_text, file_sha256, fsync_path, readable_as_umask_allows
from xmcfit.train.checkpoint import Progress
from xmcfit.train.memory_report import MemoryMeter, memory_report
from xmcfit.train.setup import TrainParts


@dataclass(frozen=True)
class TrainResult:
    """What a finished run did; memory.json's content as `memory`."""

    run_dir: Path
    steps: int
    epochs_done: int
    """End-to-end epochs done (the probe epochs of a linear-probe warm start are counted apart)."""
    skipped_steps: int
    memory: MemoryReport
    final_loss: float
    """The loss of the last step that was not skipped, across resumes (NaN when no step ran, or the run resumed
    from a checkpoint written before checkpoints kept it)."""
    probe_epochs_done: int = 0
    """Epochs of the heads alone on frozen encoder features (training.probe_epochs)."""


def write_final_weights(files: RunFiles, weights: Mapping[str, torch.Tensor], memory: MemoryReport, *,
                        epochs_done: int, steps: int, probe_epochs_done: int = 0) -> None:
    """model.safetensors (the whole model's state dict: a label-sharded run's shards merged) and memory.json
    (both atomic), then mark the run done in run.json with the weights' SHA-256. The weights are fsynced, and
    their SHA-256 is written to model.safetensors.sha256 before they are renamed into place, so loading
    checks them whatever run.json says (a run killed between the rename and run.json). A full disk is one
    line; the last checkpoint still holds the weights."""
    tmp = files.weights.with_name("model.tmp.safetensors")
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in weights.items()}, str(tmp))
        readable_as_umask_allows(tmp)
        fsync_path(tmp)
        digest = file_sha256(tmp)
        atomic_write_text(files.weights_checksum, f"{digest}  {files.weights.name}\n")
        os.replace(tmp, files.weights)
        fsync_path(files.root)
    except (OSError, SafetensorError, XmcfitError) as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        why = err.strerror if isinstance(err, OSError) and err.strerror else str(err).splitlines()[0]
        raise XmcfitError(f"{files.weights}: cannot write the final weights ({why}); the last checkpoint is "
                          f"intact: free space and run `xmcfit train --resume {files.root}`") from None
    memory.save(files.memory)
    info = read_run_info(files.root)
    info.update(status="done", epochs_done=epochs_done, probe_epochs_done=probe_epochs_done, steps=steps,
                weights_sha256=digest)
    write_run_info(files.root, info)


def finish_training(plan: Plan, run_dir: Path, parts: TrainParts, meter: MemoryMeter, progress: Progress,
                    last_loss: float) -> TrainResult:
    """Stop the memory meter, write the final weights and memory.json, and say what the run did."""
    report = memory_report(plan, parts.model, parts.optimizers.all(), meter.stop(), parts.device)
    probe = min(progress.epoch, plan.training.probe_epochs)
    write_final_weights(RunFiles(run_dir), parts.model.state_dict(), report, epochs_done=progress.epoch - probe,
                        steps=progress.step, probe_epochs_done=probe)
    return TrainResult(run_dir, progress.step, progress.epoch - probe, progress.skipped, report, last_loss, probe)
