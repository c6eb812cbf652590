"""Plans over several devices: --batch is the effective batch everywhere, and a device is priced for what
one rank holds (its classifier shard, the gathered batch, DDP's gradient buckets)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from xmcfit.cli import app
from xmcfit.errors import XmcfitError
from xmcfit.plan import memory
from xmcfit.plan.chooser import Pins, PlanRequest, choose_plan
from xmcfit.plan.phases import DISTRIBUTED
from xmcfit.plan.schema import Plan
from xmcfit.plan.profiles import load_encoder

GIB = 2**30
MINILM = load_encoder("all-MiniLM-L6-v2").to_spec()


def _plan(n_devices: int, batch: int = 128, budget: int = 16 * GIB, **pins) -> Plan:
    return choose_plan(PlanRequest(n_labels=3_000_000, budget_bytes=budget, encoder=MINILM, seq_len=128,
                                   target_batch=batch, n_devices=n_devices, pins=Pins(**pins)))


@pytest.mark.parametrize("n_devices", [1, 2, 4, 8])
@pytest.mark.parametrize("batch", [64, 512])
def test_batch_is_the_effective_batch_whatever_the_device_count(n_devices, batch):
    plan = _plan(n_devices, batch, budget=6 * GIB)  # tight: micro-batches shrink and accumulate
    t = plan.training
    assert t.micro_batch * t.grad_accum * n_devices == plan.effective_batch == batch
    assert plan.inputs.target_batch == batch


def test_plan_command_says_batch_is_micro_batch_x_accumulation_x_devices_and_makes_it_so(tmp_path):
    help_text = " ".join(CliRunner().invoke(app, ["plan", "--help"]).output.split())
    assert "Effective (global) batch per optimizer step = micro-batch x accumulation x devices" in help_text
    out = tmp_path / "plan.json"
    result = CliRunner().invoke(app, ["plan", "--labels", "3000000", "--gpu-mem", "16G", "--batch", "128",
                                      "--devices", "4", "-o", str(out)])
    assert result.exit_code == 0, result.output
    t = json.loads(out.read_text())["training"]
    assert t["micro_batch"] * t["grad_accum"] * 4 == 128
    assert "x 4 device(s) = 128" in " ".join(result.output.split())


@pytest.mark.parametrize("args,message", [
    (["--batch", "130", "--devices", "4"], "--batch 130: must be a multiple of --devices 4"),
    (["--batch", "128", "--devices", "4", "--micro-batch", "64"],
     "--micro-batch 64: must be between 1 and the per-device batch 32"),
])
def test_a_batch_the_devices_cannot_share_evenly_is_refused_in_one_line(args, message):
    result = CliRunner().invoke(app, ["plan", "--labels", "3000000", "--gpu-mem", "16G", *args])
    assert result.exit_code == 2 and message in result.output and result.output.count("\n") == 1


def test_a_device_is_priced_for_its_classifier_shard_the_gathered_batch_and_ddp_buckets():
    one = _plan(1, fan_in=128, value_dtype="float32", optimizer="adamw")
    four = _plan(4, fan_in=128, value_dtype="float32", optimizer="adamw")
    t1, t4 = one.memory.terms_bytes, four.memory.terms_bytes
    layout = memory.Layout.from_plan(four)
    assert layout.rows_per_device == 750_000 and t4["classifier_values"] == 750_000 * 128 * 4
    assert t4["classifier_optimizer_state"] * 4 == t1["classifier_optimizer_state"]
    gathered = four.training.micro_batch * 4
    assert t4["gathered_features"] == 3 * gathered * four.classifier.in_features * 4
    assert t4["ddp_gradient_buckets"] == MINILM.n_params * 4  # one fp32 copy of the encoder's gradients
    chunk = four.classifier.loss_chunk_size
    assert four.tfidf.enabled and t4["tfidf_grads"] == 750_000 * four.tfidf.fan_in * 4  # the side's rows, sharded
    assert t4["loss_workspace"] == memory.workspace.loss_workspace_bytes(
        gathered, chunk, 128, four.classifier.in_features) + memory.workspace.extra_term_workspace_bytes(
        chunk, four.tfidf.fan_in)
    assert "ddp_gradient_buckets" in four.memory.peak_terms
    assert four.memory.predicted_peak_bytes == sum(t4[n] for n in four.memory.peak_terms)
    assert not set(DISTRIBUTED) & set(t1)  # a one-device plan is what it always was
    assert four.memory.predicted_peak_bytes < one.memory.predicted_peak_bytes


def test_a_multi_device_plan_round_trips_and_an_older_plan_without_its_peak_loads():
    four = _plan(4)
    raw = json.loads(four.to_json())
    assert Plan.from_dict(raw) == four
    del raw["memory"]["peak_phase"], raw["memory"]["peak_terms"]
    assert Plan.from_dict(raw) == four


def test_request_rejects_devices_that_do_not_divide_the_batch():
    with pytest.raises(XmcfitError, match="--batch 100: must be a multiple of --devices 8"):
        _plan(8, 100)
