"""Checkpoints that cannot silently corrupt a run: checksums in a manifest, verified before use; the last N
kept, and a resume that falls back to the newest good one and says so; a full disk is one line."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from plan_factory import tiny_plan
from xmcfit import api
from xmcfit.cli import app
from xmcfit.errors import XmcfitError
from xmcfit.train.checkpoint import (CheckpointPolicy, checkpoint_folders, latest_good_checkpoint, read_checkpoint,
                                     verify_checkpoint, write_checkpoint)
from xmcfit.train.epoch import TrainingPaused

runner = CliRunner()
N_LABELS = 40


def _state(scale: float = 1.0) -> dict:
    return {"w": torch.arange(4096, dtype=torch.float32) * scale, "meta": {"step": 3, "ids": torch.ones(5, dtype=torch.int16)}}


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # inside the last tensor's data: the safetensors header still parses
    path.write_bytes(bytes(data))


def test_a_checkpoint_round_trips_and_its_manifest_holds_each_files_checksum(tmp_path):
    folder = write_checkpoint(tmp_path, 3, _state())
    manifest = json.loads((folder / "manifest.json").read_text())
    assert set(manifest["files"]) == {"tensors.safetensors", "state.json"}
    assert all(len(entry["sha256"]) == 64 for entry in manifest["files"].values())
    assert verify_checkpoint(folder) is None
    back = read_checkpoint(folder)
    assert torch.equal(back["w"], _state()["w"]) and back["meta"]["step"] == 3


def test_flipped_bytes_and_truncation_are_caught_before_any_tensor_is_used(tmp_path):
    flipped = write_checkpoint(tmp_path / "a", 1, _state())
    _flip_last_byte(flipped / "tensors.safetensors")
    assert "SHA-256" in verify_checkpoint(flipped)
    with pytest.raises(XmcfitError, match="fails verification"):
        read_checkpoint(flipped)
    truncated = write_checkpoint(tmp_path / "b", 1, _state())
    tensors = truncated / "tensors.safetensors"
    tensors.write_bytes(tensors.read_bytes()[:100])
    assert "truncated" in verify_checkpoint(truncated)


def test_the_newest_good_checkpoint_is_used_and_the_bad_one_set_aside_with_a_warning(tmp_path, caplog):
    write_checkpoint(tmp_path, 1, _state(1.0))
    newest = write_checkpoint(tmp_path, 2, _state(2.0))
    _flip_last_byte(newest / "tensors.safetensors")
    with caplog.at_level(logging.WARNING):
        good = latest_good_checkpoint(tmp_path)
    assert good.name == "step-000000001"
    assert "step-000000002" in caplog.text and "falling back to step-000000001" in caplog.text
    assert (tmp_path / "step-000000002.corrupt").is_dir()  # kept for a look, never counted again
    assert [p.name for p in checkpoint_folders(tmp_path)] == ["step-000000001"]


def test_only_the_newest_keep_checkpoints_stay(tmp_path):
    for step in range(1, 5):
        write_checkpoint(tmp_path, step, _state(), keep=2)
    assert [p.name for p in checkpoint_folders(tmp_path)] == ["step-000000004", "step-000000003"]
    assert (tmp_path / "latest").read_text().strip() == "step-000000004"


def test_when_no_checkpoint_verifies_it_is_one_line_and_nothing_is_deleted(tmp_path):
    only = write_checkpoint(tmp_path, 1, _state())
    _flip_last_byte(only / "tensors.safetensors")
    with pytest.raises(XmcfitError, match="no checkpoint verifies") as info:
        latest_good_checkpoint(tmp_path)
    assert "\n" not in str(info.value) and only.is_dir()


FULL_DISK = """
import resource, sys, torch
from pathlib import Path
from xmcfit.errors import XmcfitError
from xmcfit.train.checkpoint import write_checkpoint, verify_checkpoint
root = Path(sys.argv[1])
write_checkpoint(root, 1, {"w": torch.zeros(1000)})            # 4 kB: fits
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))   # no file may grow past 200 kB: "disk full"
try:
    write_checkpoint(root, 2, {"w": torch.zeros(1_000_000)})    # 4 MB: cannot be written
except XmcfitError as err:
    print(err)
print(verify_checkpoint(root / "step-000000001"))
"""


def test_a_full_disk_while_checkpointing_is_one_line_and_leaves_no_temporary_files(tmp_path):
    out = subprocess.run([sys.executable, "-c", FULL_DISK, str(tmp_path)], capture_output=True, text=True, check=True)
    error, earlier = out.stdout.strip().splitlines()
    assert "step-000000002: cannot write the checkpoint (" in error and "File too large" in error
    assert "earlier checkpoints are intact" in error and "Traceback" not in out.stderr
    assert earlier == "None"  # the earlier checkpoint still verifies
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step-000000001"]  # no .tmp left


def test_a_corrupted_checkpoint_is_detected_and_the_resume_uses_the_previous_one(tmp_path, tiny_encoder_dir,
                                                                                  synth_dir, caplog):
    plan = tiny_plan(str(tiny_encoder_dir), N_LABELS, epochs=2)
    api.train(plan, synth_dir, tmp_path / "whole", device="cpu")
    every_4 = CheckpointPolicy(every_steps=4, every_minutes=None)
    with pytest.raises(TrainingPaused):
        api.train(plan, synth_dir, tmp_path / "split", device="cpu", max_steps=9, checkpoints=every_4)
    ckpt = tmp_path / "split" / "checkpoint"
    assert [p.name for p in checkpoint_folders(ckpt)] == ["step-000000009", "step-000000008"]
    _flip_last_byte(ckpt / "step-000000009" / "tensors.safetensors")
    with caplog.at_level(logging.WARNING):
        result = api.train(resume=tmp_path / "split", device="cpu", checkpoints=every_4)
    assert "step-000000009" in caplog.text and "falling back to step-000000008" in caplog.text
    assert result.steps == 30
    whole = load_file(str(tmp_path / "whole" / "model.safetensors"))
    split = load_file(str(tmp_path / "split" / "model.safetensors"))
    assert all(torch.equal(whole[name], split[name]) for name in whole)  # the fallback resumed exactly


def test_corrupted_or_truncated_final_weights_are_one_line_in_eval(tmp_path, tiny_encoder_dir, synth_dir):
    plan = tiny_plan(str(tiny_encoder_dir), N_LABELS, epochs=1, aux_clusters=0)
    run = tmp_path / "run"
    api.train(plan, synth_dir, run, device="cpu")
    weights = run / "model.safetensors"
    assert runner.invoke(app, ["eval", str(run), "--json"]).exit_code == 0
    good = weights.read_bytes()
    _flip_last_byte(weights)
    flipped = runner.invoke(app, ["eval", str(run)])
    assert flipped.exit_code == 2 and "SHA-256" in flipped.stderr and len(flipped.stderr.splitlines()) == 1
    weights.write_bytes(good[: len(good) // 2])
    truncated = runner.invoke(app, ["predict", str(run), "some text"])
    assert truncated.exit_code == 2 and "Traceback" not in truncated.output
    assert truncated.stderr.startswith(f"Error: {weights}") and len(truncated.stderr.splitlines()) == 1
