"""The command line is a shell over the Python API: its modules import only the API, the report renderer
and the errors, and a command gives what the API call with the same inputs gives."""

from __future__ import annotations

import json

from typer.testing import CliRunner

import xmcfit
from test_import_graph import _imported, _module_files
from xmcfit.cli import app

PUBLIC = {"xmcfit", "xmcfit.api", "xmcfit.report", "xmcfit.errors"}
"""What a CLI module may import of xmcfit besides the other CLI modules."""

runner = CliRunner()


def test_the_cli_modules_import_only_the_api_the_report_and_the_errors():
    modules = _module_files()
    cli_modules = {name for name in modules if name == "xmcfit.cli" or name.startswith("xmcfit.commands")}
    reached = {name: _imported(name, modules[name], modules) - PUBLIC - cli_modules for name in sorted(cli_modules)}
    assert not any(reached.values()), {name: sorted(found) for name, found in reached.items() if found}


def test_the_walk_sees_an_internal_import(tmp_path):
    modules = _module_files()
    assert "xmcfit.plan.chooser" in _imported("xmcfit.api", modules["xmcfit.api"], modules)


def test_the_cli_and_the_api_choose_the_same_plan_for_the_same_inputs():
    args = ["--labels", "670091", "--gpu-mem", "16G", "--encoder", "all-MiniLM-L6-v2", "--seq-len", "64",
            "--batch", "64", "--epochs", "5", "--seed", "3", "--fan-in", "64", "--pooling", "cls", "--no-tfidf"]
    shown = runner.invoke(app, ["plan", *args, "--json"])
    assert shown.exit_code == 0, shown.output
    api_plan = xmcfit.plan(labels=670091, gpu_mem="16G", encoder="all-MiniLM-L6-v2", seq_len=64, batch=64,
                           epochs=5, seed=3, fan_in=64, pooling="cls", tfidf=False)
    assert xmcfit.Plan.from_dict(json.loads(shown.stdout)) == api_plan


def test_the_cli_and_the_api_give_the_same_rows_for_every_gpu():
    shown = runner.invoke(app, ["plan", "--labels", "3000000", "--all-gpus", "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout) == json.loads(xmcfit.api.all_gpus_json(xmcfit.api.plan_all_gpus(labels=3_000_000)))


def test_the_cli_and_the_api_give_the_same_metrics_and_predictions(text_run):
    shown = runner.invoke(app, ["eval", str(text_run), "--json", "--device", "cpu"])
    assert shown.exit_code == 0, shown.output
    [row] = json.loads(shown.stdout)
    assert row["metrics"] == xmcfit.evaluate(text_run, device="cpu").metrics
    lines = runner.invoke(app, ["predict", str(text_run), "a text", "another one", "-k", "3", "--json"])
    ids = [[label["index"] for label in json.loads(line)["labels"]] for line in lines.stdout.splitlines()]
    assert ids == xmcfit.predict(text_run, ["a text", "another one"], k=3).ids.tolist()


def test_no_function_in_the_package_is_over_60_lines():
    import ast

    too_long = [f"{path.name}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
                for path in _module_files().values() for node in ast.walk(ast.parse(path.read_text()))
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                and node.end_lineno - node.lineno + 1 > 60]
    assert not too_long, too_long


def test_xmcfit_plan_names_every_pin_in_its_signature():
    import dataclasses
    import inspect

    from xmcfit.plan.chooser import Pins

    parameters = inspect.signature(xmcfit.api.plan).parameters
    assert {f.name for f in dataclasses.fields(Pins)} <= set(parameters)
    assert parameters["fan_in"].kind is inspect.Parameter.KEYWORD_ONLY
