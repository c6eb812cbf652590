"""`xmcfit plan / gpus / profiles` through typer's CliRunner: outputs, and one-line errors with exit 2."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from xmcfit.cli import app
from xmcfit.plan.schema import Plan

runner = CliRunner()


def _run(*args: str):
    return runner.invoke(app, list(args))


def test_readme_demo_plans_three_million_labels_on_a_t4():
    result = _run("plan", "--labels", "3000000", "--gpu", "T4-16G")
    assert result.exit_code == 0, result.output
    assert "predicted peak" in result.output and "dense classifier would need" in result.output


def test_json_prints_only_a_loadable_plan_and_output_writes_it(tmp_path):
    out = tmp_path / "plan.json"
    result = _run("plan", "--dataset", "Amazon-670K", "--gpu-mem", "24GiB", "--encoder", "bert-base-uncased",
                  "--json", "-o", str(out))
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["classifier"]["fan_in"] >= 16 and data["memory"]["predicted_peak_bytes"] <= 24 * 2**30
    assert Plan.from_json(out) == Plan.from_dict(data)


def test_all_gpus_lists_every_profile():
    result = _run("plan", "--labels", "2812281", "--encoder", "bert-base-uncased", "--all-gpus")
    assert result.exit_code == 0, result.output
    for name in ("T4-16G", "A100-80G", "H200-141G"):
        assert name in result.output


def test_profiles_and_gpus_commands_exit_zero_without_a_gpu():
    assert _run("profiles").exit_code == 0
    result = _run("gpus")
    assert result.exit_code == 0 and len(result.output.strip().splitlines()) >= 1


def test_gpu_mem_accepts_binary_and_decimal_units():
    for text, expected in (("16G", 16 * 2**30), ("16GiB", 16 * 2**30), ("16GB", 16 * 10**9),
                           ("15360M", 15360 * 2**20), ("0.5T", 2**39), ("17179869184", 2**34)):
        result = _run("plan", "--labels", "1000", "--gpu-mem", text, "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["memory"]["budget_bytes"] == expected


@pytest.mark.parametrize("args, needle", [
    (("--labels", "1000", "--gpu", "Z80"), "unknown gpu profile 'Z80'"),
    (("--dataset", "Nope-1K", "--gpu-mem", "16G"), "unknown dataset profile"),
    (("--labels", "1000", "--gpu-mem", "16G", "--encoder", "gpt-9"), "unknown encoder profile"),
    (("--labels", "1000", "--gpu-mem", "16Q"), "--gpu-mem '16Q': not a size"),
    (("--labels", "1000", "--gpu-mem", "-3G"), "--gpu-mem '-3G': not a size"),
    (("--labels", "0", "--gpu-mem", "16G"), "--labels 0: must be >= 1"),
    (("--labels", "-5", "--gpu-mem", "16G"), "--labels -5: must be >= 1"),
    (("--labels", "1000", "--gpu-mem", "16G", "--seq-len", "4096"), "--seq-len 4096"),
    (("--labels", "1000", "--gpu-mem", "16G", "--fan-in", "1000"), "--fan-in 1000: must be between 1 and the input dimension"),
    (("--labels", "3000000", "--gpu-mem", "1G", "--encoder", "bert-large-uncased"), "nothing fits in 1.00 GiB"),
    (("--labels", "1000"), "no GPU to plan for"),
    (("--labels", "1000", "--gpu-mem", "16G", "--precision", "fp8"), "'--precision': 'fp8' is not one of"),
    (("--labels", "1000", "--gpu", "T4-16G", "--precision", "bf16_amp"), "no bf16 support"),
    (("--gpu-mem", "16G",), "give exactly one of --labels"),
])
def test_bad_input_is_one_line_on_stderr_with_exit_2(args, needle):
    result = _run("plan", *args)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and needle in lines[0], result.stderr
    assert "Traceback" not in result.output


def test_plan_path_imports_no_heavy_library():
    import subprocess
    import sys

    code = ("import sys; from xmcfit.cli import app; from typer.testing import CliRunner; "
            "r = CliRunner().invoke(app, ['plan', '--labels', '3000000', '--gpu', 'T4-16G']); "
            "assert r.exit_code == 0, r.output; "
            "print(sorted(m for m in ('torch', 'transformers', 'numpy', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"  # the planner is pure Python: it answers in well under a second


def test_output_creates_folders_and_an_unwritable_path_is_one_line(tmp_path):
    nested = tmp_path / "a" / "b" / "plan.json"
    result = runner.invoke(app, ["plan", "--labels", "1000", "--gpu-mem", "8G", "-o", str(nested)])
    assert result.exit_code == 0, result.output
    assert Plan.from_json(nested).classifier.n_labels == 1000
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = runner.invoke(app, ["plan", "--labels", "1000", "--gpu-mem", "8G", "-o", str(blocker / "plan.json")])
    assert result.exit_code == 2 and "cannot write" in result.output and "Traceback" not in result.output
