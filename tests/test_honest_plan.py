"""Issue 18, "an honest plan": the plain dense baseline, --all-gpus as JSON and to a file, a hand-edited
plan re-validated on load, reasons a wheel user can follow, a hint for a bare --gpu-mem number, CLS pooling."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from xmcfit.cli import app
from xmcfit.plan.chooser import Pins, PlanRequest, choose_plan
from xmcfit.plan.inputs import read_plan
from xmcfit.plan.memory import Layout, predict
from xmcfit.plan.schema import Plan
from xmcfit.plan.profiles import load_encoder

runner = CliRunner()
GIB = 2**30
MINILM = load_encoder("all-MiniLM-L6-v2").to_spec()


def _plan_json(*args: str) -> dict:
    result = runner.invoke(app, ["plan", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_dense_baseline_is_l_by_encoder_width_not_a_dense_layer_over_the_intermediate():
    plan = _plan_json("--labels", "3000000", "--gpu-mem", "16G")
    assert plan["model"]["intermediate_dim"] == 4096  # the sparse plan has the layer ...
    dense = _plan_json("--labels", "3000000", "--gpu-mem", "64G", "--classifier", "dense")
    assert dense["model"]["intermediate_dim"] == 0 and dense["classifier"]["in_features"] == 384
    # ... but its baseline is the plain L x 384 classifier (23.54 GiB), not L x 4096 (242 GiB)
    assert plan["memory"]["dense_predicted_peak_bytes"] == pytest.approx(23.54 * GIB, rel=0.01)
    assert plan["memory"]["dense_predicted_peak_bytes"] < 30 * GIB


def test_dense_baseline_layout_drops_the_intermediate_layer():
    req = PlanRequest(n_labels=100_000, budget_bytes=16 * GIB, encoder=MINILM, seq_len=64,
                      pins=Pins(fan_in=32, intermediate_dim=4096))
    plan = choose_plan(req)
    baseline = Layout.from_plan(plan).dense_baseline()
    assert (baseline.intermediate_dim, baseline.features_dim, baseline.classifier_kind) == (0, 384, "dense")
    assert plan.memory.dense_predicted_peak_bytes == predict(baseline).predicted_peak_bytes


def test_all_gpus_dense_column_uses_the_same_baseline_in_every_row():
    rows = json.loads(runner.invoke(app, ["plan", "--labels", "3000000", "--all-gpus", "--json"]).stdout)
    baselines = {r["dense_predicted_peak_bytes"] for r in rows if r["fits"] and r["plan"]["precision"] == "bf16_amp"}
    assert len(baselines) == 1, baselines  # same precision, same baseline, whatever fan-in or intermediate layer


def test_all_gpus_honours_json_and_output(tmp_path):
    result = runner.invoke(app, ["plan", "--labels", "2812281", "--encoder", "bert-base-uncased", "--all-gpus", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    names = {r["gpu"] for r in rows}
    assert {"T4-16G", "A100-80G", "H200-141G"} <= names
    for row in rows:
        assert row["fits"] == (row["plan"] is not None)
        if row["fits"]:
            assert Plan.from_dict(row["plan"]).memory.predicted_peak_bytes == row["predicted_peak_bytes"]
    out = tmp_path / "rows.json"
    result = runner.invoke(app, ["plan", "--labels", "2812281", "--all-gpus", "-o", str(out)])
    assert result.exit_code == 0 and f"wrote {out}" in result.stdout.replace("\n", "")
    assert {r["gpu"] for r in json.loads(out.read_text())} >= {"T4-16G", "H200-141G"}


def test_reasons_point_to_a_document_shipped_in_the_package():
    from xmcfit.docs import read_doc

    plan = _plan_json("--labels", "3000000", "--gpu-mem", "16G")
    text = " ".join(plan["reasons"])
    assert "bench/" not in text and "RESULTS.md" not in text
    assert "python -m xmcfit.docs" in text
    doc = read_doc()
    for section in re.findall(r'`python -m xmcfit.docs`, "([^"]+)"', text):
        assert f"## {section}" in doc, section


def test_a_bare_gpu_mem_number_that_looks_like_gib_gets_a_hint():
    result = runner.invoke(app, ["plan", "--labels", "3000", "--gpu-mem", "16"])
    assert result.exit_code == 2
    assert result.stderr.strip() == ("Error: --gpu-mem '16' is 16 bytes; did you mean 16G (16 GiB)? "
                                     "A number without a unit is bytes")
    assert _plan_json("--labels", "3000", "--gpu-mem", "17179869184")["memory"]["budget_bytes"] == 16 * GIB


def test_cls_pooling_is_reachable_priced_and_validated():
    mean = _plan_json("--labels", "3000", "--gpu-mem", "16G")
    cls = _plan_json("--labels", "3000", "--gpu-mem", "16G", "--pooling", "cls")
    assert (mean["model"]["pooling"], cls["model"]["pooling"]) == ("mean", "cls")
    # mean pooling keeps its fp32 input for backward; CLS keeps nothing
    assert cls["memory"]["terms_bytes"]["encoder_activations"] < mean["memory"]["terms_bytes"]["encoder_activations"]
    assert "cls pooling: pinned by flag" in cls["reasons"]
    assert "pooling" in cls["inputs"]["pinned"]
    bad = runner.invoke(app, ["plan", "--labels", "3000", "--gpu-mem", "16G", "--pooling", "max"])
    assert bad.exit_code == 2 and bad.stderr.startswith("Error: ") and "'max' is not one of 'mean', 'cls'" in bad.stderr
    with pytest.raises(Exception, match="--pooling cls: applies to text encoders only"):
        from dataclasses import replace
        PlanRequest(n_labels=10, budget_bytes=GIB, encoder=replace(MINILM, kind="bow", n_layers=0, n_heads=0,
                                                                   max_seq_len=0), seq_len=0, pins=Pins(pooling="cls"))


def test_a_hand_edited_plan_has_its_memory_recomputed_on_load_and_says_so(tmp_path, caplog):
    path = tmp_path / "plan.json"
    assert runner.invoke(app, ["plan", "--labels", "300000", "--gpu-mem", "16G", "--fan-in", "256",
                               "-o", str(path)]).exit_code == 0
    with caplog.at_level("WARNING"):
        original = read_plan(path)
    assert not caplog.records and original == Plan.from_json(path)  # an untouched plan loads silently, unchanged
    data = json.loads(path.read_text())
    data["classifier"]["fan_in"], data["model"]["pooling"] = 64, "cls"
    path.write_text(json.dumps(data))
    with caplog.at_level("WARNING"):
        edited = read_plan(path)
    [record] = [r for r in caplog.records if "memory section recomputed" in r.getMessage()]
    assert str(path) in record.getMessage() and "predicted peak" in record.getMessage()
    terms = edited.memory.terms_bytes
    assert terms["classifier_values"] == original.memory.terms_bytes["classifier_values"] // 4  # 64 of 256
    assert terms["encoder_activations"] < original.memory.terms_bytes["encoder_activations"]  # no mean pooling
    assert edited.memory.predicted_peak_bytes == predict(Layout.from_plan(edited)).predicted_peak_bytes
    assert edited.reasons[-1].startswith("memory section recomputed on load")


def test_a_hand_edited_plan_is_reported_by_the_command_line(tmp_path, caplog):
    path = tmp_path / "plan.json"
    runner.invoke(app, ["plan", "--labels", "3000", "--gpu-mem", "16G", "-o", str(path)])
    data = json.loads(path.read_text())
    data["training"]["micro_batch"] = 1
    data["training"]["grad_accum"] = 128
    path.write_text(json.dumps(data))
    with caplog.at_level("WARNING"):  # the command line sends warnings to stderr (logging.basicConfig)
        result = runner.invoke(app, ["train", str(path), "--data", str(tmp_path / "missing"), "--out",
                                     str(tmp_path / "r")])
    assert result.exit_code == 2 and "missing" in result.stderr
    assert sum("memory section recomputed on load" in r.getMessage() for r in caplog.records) == 1  # said once


def test_the_python_api_takes_the_pooling_pin():
    import xmcfit

    plan = xmcfit.plan(labels=1000, gpu_mem="16G", pooling="cls")
    assert plan.model.pooling == "cls" and "pooling" in plan.inputs.pinned
