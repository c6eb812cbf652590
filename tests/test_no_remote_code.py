"""Code shipped with a model never runs: every transformers load passes trust_remote_code=False, and a
config that would need custom code (auto_map, or a model_type transformers does not ship) is one line
naming the field on every command (plan --encoder DIR, train, eval, predict), with no prompt."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

import xmcfit
from plan_factory import tiny_plan
from xmcfit.cli import app

runner = CliRunner()
N_LABELS = 40
EVIL_CODE = """import pathlib
pathlib.Path(__file__).with_name("RAN").write_text("custom code ran")
from transformers import BertConfig, BertModel
class EvilConfig(BertConfig):
    model_type = "xmcfit-evil"
class EvilModel(BertModel):
    config_class = EvilConfig
"""


def _one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "[y/N]" not in result.output and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def _make_evil(directory: Path, auto_map: bool = True) -> None:
    """Give a model directory's config a custom model type (and an auto_map naming evil.py beside it)."""
    cfg = json.loads((directory / "config.json").read_text())
    cfg["model_type"] = "xmcfit-evil"
    if auto_map:
        cfg["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModel": "evil.EvilModel"}
    (directory / "config.json").write_text(json.dumps(cfg))
    (directory / "evil.py").write_text(EVIL_CODE)


@pytest.fixture(scope="module")
def trained(tiny_encoder_dir, text_run) -> tuple[Path, Path]:
    """The tiny encoder (copy it before changing it), and a finished text run trained with it."""
    return tiny_encoder_dir, text_run


def test_plan_refuses_an_encoder_whose_config_names_custom_code(tmp_path, tiny_encoder_dir):
    encoder = tmp_path / "enc"
    shutil.copytree(tiny_encoder_dir, encoder)
    _make_evil(encoder)
    line = _one_error_line(runner.invoke(app, ["plan", "--encoder", str(encoder), "--labels", "100",
                                               "--gpu-mem", "16G"]))
    assert "auto_map" in line and "never runs" in line
    assert not (encoder / "RAN").exists()


def test_plan_refuses_a_model_type_transformers_does_not_ship(tmp_path, tiny_encoder_dir):
    encoder = tmp_path / "enc"
    shutil.copytree(tiny_encoder_dir, encoder)
    _make_evil(encoder, auto_map=False)
    line = _one_error_line(runner.invoke(app, ["plan", "--encoder", str(encoder), "--labels", "100",
                                               "--gpu-mem", "16G"]))
    assert "model_type='xmcfit-evil'" in line and not (encoder / "RAN").exists()


def test_train_refuses_an_encoder_turned_custom_after_planning(tmp_path, trained, synth_dir):
    encoder = tmp_path / "enc"
    shutil.copytree(trained[0], encoder)
    plan = tmp_path / "plan.json"
    tiny_plan(str(encoder), N_LABELS, epochs=1, aux_clusters=0).save(plan)
    _make_evil(encoder)
    line = _one_error_line(runner.invoke(app, ["train", str(plan), "--data", str(synth_dir), "--out",
                                               str(tmp_path / "run"), "--device", "cpu"]))
    assert "auto_map" in line
    assert not (encoder / "RAN").exists() and not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", ["eval", "predict"])
def test_eval_and_predict_refuse_a_run_whose_encoder_names_custom_code(tmp_path, trained, command):
    run = tmp_path / "run"
    shutil.copytree(trained[1], run)
    _make_evil(run / "encoder")
    args = [command, str(run)] + (["some text"] if command == "predict" else [])
    line = _one_error_line(runner.invoke(app, args))
    assert "auto_map" in line and not (run / "encoder" / "RAN").exists()


def test_a_tokenizer_config_with_auto_map_is_refused_too(tmp_path, trained):
    run = tmp_path / "run"
    shutil.copytree(trained[1], run)
    tok = run / "encoder" / "tokenizer_config.json"
    tok.write_text(json.dumps({**json.loads(tok.read_text()), "auto_map": {"AutoTokenizer": ["evil.T", None]}}))
    line = _one_error_line(runner.invoke(app, ["predict", str(run), "some text"]))
    assert "tokenizer_config.json: auto_map" in line


def test_every_transformers_load_in_xmcfit_passes_trust_remote_code_false():
    package = Path(xmcfit.__file__).parent
    loads = []
    for source in package.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) in ("from_pretrained", "from_config"):
                given = {k.arg: k.value for k in node.keywords}
                loads.append((source.name, node.lineno))
                value = given.get("trust_remote_code")
                assert isinstance(value, ast.Constant) and value.value is False, f"{source}:{node.lineno}"
    assert len(loads) >= 6
