"""What a user of the installed package meets first: profiles inside the wheel, a Python floor that matches
the code, --version, -h, shell completion, choices in the help, output as wide as the terminal."""

from __future__ import annotations

import ast
import io
import json
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

import xmcfit
from xmcfit.cli import app

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(xmcfit.__file__).resolve().parent
runner = CliRunner()

# Standard-library modules newer than 3.10 that the code may import, with the version that added them.
NEWER_STDLIB = {"tomllib": (3, 11)}


def _min_python() -> tuple[int, int]:
    spec = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    major, minor = re.fullmatch(r">=\s*(\d+)\.(\d+)", spec).groups()
    return int(major), int(minor)


def test_requires_python_covers_every_standard_library_module_the_code_imports():
    needed = {(3, 8)}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            needed |= {NEWER_STDLIB[n.split(".")[0]] for n in names if n.split(".")[0] in NEWER_STDLIB}
    assert _min_python() >= max(needed)


def test_profiles_live_inside_the_package():
    from xmcfit.plan.profiles import load_gpu, profile_names

    assert (PACKAGE / "plan" / "profiles_data" / "gpus" / "T4-16G.toml").is_file()
    assert not (ROOT / "profiles").exists()  # one copy, the one the wheel carries
    assert "T4-16G" in profile_names("gpus") and load_gpu("T4-16G").memory_bytes > 0


@pytest.mark.slow
def test_the_wheel_carries_the_profiles_and_the_python_floor(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path), str(ROOT)], check=True, capture_output=True)
    [wheel] = tmp_path.glob("xmcfit-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {Path(n).stem for n in names if n.startswith("xmcfit/plan/profiles_data/") and n.endswith(".toml")}
    assert {"T4-16G", "all-MiniLM-L6-v2", "Amazon-3M"} <= shipped
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert f"Requires-Python: >={'.'.join(map(str, _min_python()))}" in metadata
    assert f"Version: {xmcfit.__version__}" in metadata
    assert "License-Expression: MIT" in metadata and "License-File: LICENSE" in metadata
    assert "Classifier: Programming Language :: Python :: 3.11" in metadata and "Keywords: " in metadata
    assert any(n.endswith("licenses/LICENSE") for n in names)
    assert "xmcfit/docs/accuracy.md" in names  # the document the planner's reasons cite


def test_version_and_short_help():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"xmcfit {xmcfit.__version__}"
    for args in (["-h"], ["plan", "-h"], ["train", "-h"], ["data", "synth", "-h"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0 and "Usage:" in result.stdout, args
    assert "--install-completion" in runner.invoke(app, ["-h"]).stdout


def test_plan_help_shows_choices_and_says_what_every_option_does():
    text = runner.invoke(app, ["plan", "-h"], env={"COLUMNS": "200"}).stdout
    assert "<bf16_amp|fp16_amp|fp32>" in text and "<adamw|sgd_momentum|sgd>" in text
    assert "<str>" not in re.sub(r"--(dataset|gpu|gpu-mem|encoder) <str>", "", text)
    for option in ("--epochs", "--seed"):
        line = next(line for line in text.splitlines() if line.strip().startswith(option))
        assert len(line.split(None, 2)) == 3, line  # option, metavar, help text


def test_tables_fit_the_terminal_and_pipes_get_a_fixed_width(monkeypatch):
    from xmcfit import report

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdout", Tty())
    monkeypatch.setenv("COLUMNS", "80")
    assert report.console().width == 80  # measured from the terminal (rich reads $COLUMNS there too)
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    assert report.console().width == 80  # a pipe with $COLUMNS set
    monkeypatch.delenv("COLUMNS")
    assert report.console().width == report.PIPE_WIDTH


def test_progress_without_a_terminal_prints_plain_lines_as_it_goes():
    from xmcfit.report import TrainProgress
    from xmcfit.train.epoch import StepStats

    out = io.StringIO()
    progress = TrainProgress(1e-5, 1e-2, stream=out, line_every_s=3600)
    with progress:
        for step in range(1, 6):
            progress.update(StepStats(step, 5, 1, 0.5, 0.5, 0.0, 0.0, 1.0, 0, 10.0, 2**30, 0))
            if step == 1:
                assert out.getvalue().startswith("step 1/5")  # already there, not at the end
    lines = out.getvalue().splitlines()
    assert [line.split()[1] for line in lines] == ["1/5", "5/5"]  # the first, then the last (1 h apart)
    assert "\x1b" not in out.getvalue()  # no cursor control in logs


def test_a_pinned_aux_clusters_above_the_labels_is_capped_and_the_reason_says_so():
    result = runner.invoke(app, ["plan", "--labels", "159", "--gpu-mem", "16G", "--aux-clusters", "500", "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["aux"]["n_clusters"] == 159
    [reason] = [r for r in plan["reasons"] if r.startswith("auxiliary objective")]
    assert reason == ("auxiliary objective on, 159 clusters: --aux-clusters 500 capped at the 159 labels "
                      "(one cluster per label at most)") and "pinned by flag" not in reason


def test_a_profile_with_a_bad_field_names_it(tmp_path):
    bad = tmp_path / "gpu.toml"
    bad.write_text('name = "X"\nmemory_bytes = "16G"\ncompute_capability = "8.0"\nbf16 = true\nfp8 = false\n')
    result = runner.invoke(app, ["plan", "--labels", "1000", "--gpu", str(bad)])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"Error: {bad}: memory_bytes='16G': must be an integer"
    bad.write_text('name = "X"\nmemory_bytes = 1\n')
    assert "compute_capability: missing field" in runner.invoke(app, ["plan", "--labels", "9", "--gpu", str(bad)]).stderr


def test_the_progress_bar_fits_an_80_column_terminal_and_redraws_in_place(monkeypatch):
    from xmcfit.report import TrainProgress
    from xmcfit.train.epoch import StepStats

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setenv("COLUMNS", "80")
    out = Tty()
    with TrainProgress(1e-5, 1e-2, stream=out) as progress:
        for step in range(1, 4):
            progress.update(StepStats(step, 300, 1, 0.5, 0.5, 0.0, 0.0, 1.0, 12345, 10.0, 2**30, 0))
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())
    lines = [line for line in screen.replace("\r", "\n").split("\n") if line.strip()]
    assert max(map(len, lines)) <= 80 and "epoch 1" in lines[-1] and "loss 0.5000" in lines[-1]
