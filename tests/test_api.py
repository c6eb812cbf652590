"""The Python API for notebooks and scripts: xmcfit.plan / train / evaluate / load(...).predict, a light
`import xmcfit`, scores that say what they are, and TensorBoard event files when asked."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace

import pytest
from typer.testing import CliRunner

import xmcfit
from plan_factory import tiny_plan
from xmcfit.cli import app
from xmcfit.plan.memory import reprice

runner = CliRunner()
N_LABELS = 40


def test_import_xmcfit_and_planning_load_no_torch():
    code = ("import sys, xmcfit; p = xmcfit.plan(labels=3_000_000, gpu_mem='16G'); "
            "print(p.classifier.n_labels, sorted(m for m in ('torch', 'numpy', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "3000000 []"


def test_plan_train_and_evaluate_are_callable_whatever_was_imported_before():
    import xmcfit.evaluate  # noqa: F401  (binds the module to xmcfit.evaluate)
    import xmcfit.plan.schema  # noqa: F401
    import xmcfit.train.loop  # noqa: F401

    plan = xmcfit.plan(labels=1000, gpu_mem="8G", precision="fp32", fan_in=64)
    assert isinstance(plan, xmcfit.Plan) and plan.classifier.fan_in == 64 and plan.precision == "fp32"
    assert callable(xmcfit.train) and callable(xmcfit.evaluate)
    with pytest.raises(xmcfit.XmcfitError, match="unknown option 'fan_out'"):
        xmcfit.plan(labels=1000, gpu_mem="8G", fan_out=3)


@pytest.fixture(scope="module")
def bce_run(tmp_path_factory, tiny_encoder_dir, synth_dir):
    plan = tiny_plan(str(tiny_encoder_dir), N_LABELS, epochs=1, aux_clusters=0)
    plan = reprice(replace(plan, classifier=replace(plan.classifier, loss="bce")))
    run = tmp_path_factory.mktemp("api") / "run"
    result = xmcfit.train(plan, data=synth_dir, out=run, device="cpu", log_to=("tensorboard",), log_every=5)
    assert result.steps == 15 and math.isfinite(result.final_loss)
    return run


def test_train_evaluate_load_and_predict_from_python(bce_run, synth_dir):
    metrics = xmcfit.evaluate(bce_run).metrics
    assert set(metrics) >= {"P@1", "nDCG@5", "PSP@5"} and 0.0 <= metrics["P@1"] <= 1.0
    model = xmcfit.load(bce_run)
    assert model.score_kind == "logit"
    [labels] = model.predict("some words about a topic", k=3, probabilities=True)
    assert len(labels) == 3 and [lab.score for lab in labels] == sorted((lab.score for lab in labels), reverse=True)
    for lab in labels:
        assert lab.probability == pytest.approx(1 / (1 + math.exp(-lab.score)), rel=1e-6)
    assert model.evaluate().metrics == metrics


def test_predict_says_what_scores_are_and_offers_probabilities_only_where_the_loss_allows(bce_run, tmp_path,
                                                                                     tiny_encoder_dir, synth_dir):
    out = runner.invoke(app, ["predict", str(bce_run), "a text", "--top-k", "2", "--json", "--probabilities"])
    assert out.exit_code == 0, out.output
    row = json.loads(out.stdout)
    assert row["score_kind"] == "logit" and all(0 < lab["probability"] < 1 for lab in row["labels"])
    hinge = tmp_path / "hinge"
    xmcfit.train(tiny_plan(str(tiny_encoder_dir), N_LABELS, epochs=1, aux_clusters=0), synth_dir, hinge, device="cpu")
    table = runner.invoke(app, ["predict", str(hinge), "a text"], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "margin" in table.stdout and "not a probability" in table.stdout
    refused = runner.invoke(app, ["predict", str(hinge), "a text", "--probabilities"])
    assert refused.exit_code == 2 and "margins, not probabilities" in refused.stderr


def test_json_lines_never_carry_nan():
    from xmcfit.commands.eval import _json_label

    label = _json_label({"index": 3, "name": None, "score": float("nan"), "probability": None}, probabilities=False)
    assert json.loads(json.dumps(label, allow_nan=False)) == {"index": 3, "name": None, "score": None}


def test_tensorboard_event_files_hold_the_logged_steps(bce_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(bce_run / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("loss/total")] == [5, 10, 15]  # the steps train_log.jsonl keeps
    assert {"schedule/encoder_lr", "memory/bytes", "rewiring/connections_moved"} <= set(events.Tags()["scalars"])


def test_tensorboard_without_its_package_is_one_line_before_anything_runs(tmp_path, monkeypatch, synth_dir,
                                                                          tiny_encoder_dir):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if `tensorboard` were not installed
    plan = tmp_path / "plan.json"
    tiny_plan(str(tiny_encoder_dir), N_LABELS, epochs=1).save(plan)
    result = runner.invoke(app, ["train", str(plan), "--data", str(synth_dir), "--out", str(tmp_path / "run"),
                                 "--log-to", "tensorboard"])
    assert result.exit_code == 2 and not (tmp_path / "run").exists()
    assert result.stderr.strip() == ("Error: --log-to tensorboard needs the tensorboard package: "
                                     "pip install 'xmcfit[tensorboard]' (or pip install tensorboard)")


def test_a_config_only_mpnet_encoder_trains_end_to_end(tmp_path, tiny_encoder_dir, synth_dir):
    import shutil

    import transformers

    encoder = tmp_path / "mpnet"
    transformers.MPNetConfig(vocab_size=30527, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                             intermediate_size=64, max_position_embeddings=66).save_pretrained(encoder)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (tiny_encoder_dir / name).exists():
            shutil.copy(tiny_encoder_dir / name, encoder / name)
    plan = xmcfit.plan(data=synth_dir, encoder=str(encoder), gpu_mem="4G", precision="fp32", batch=16, seq_len=24,
                       epochs=1, fan_in=8, probe_epochs=0)
    result = xmcfit.train(plan, synth_dir, tmp_path / "run", device="cpu")
    assert result.steps == 15 and math.isfinite(result.final_loss)
    assert result.memory.measured_terms_bytes["encoder_weights"] == plan.memory.terms_bytes["encoder_weights"]
