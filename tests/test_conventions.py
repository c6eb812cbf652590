"""Issue 18, "conventions users rely on": choices that completion offers, --json on every listing,
profiles readable at 80 columns, files as readable as the umask allows, one numbering of epochs and an
ETA per phase, headerless svmlight files, encoder-only T5 and decoder-only models, package metadata."""

from __future__ import annotations

import io
import json
import os
import re
import stat
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from xmcfit.cli import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _complete(words: str) -> list[str]:
    """What bash completion offers after `words` (typer's completion protocol, as the shell calls it)."""
    cword = len(words.split()) - (0 if words.endswith(" ") else 1)
    result = runner.invoke(app, [], prog_name="xmcfit", env={"_XMCFIT_COMPLETE": "complete_bash",
                                                            "COMP_WORDS": words, "COMP_CWORD": str(cword)})
    assert result.exit_code == 0, result.output
    return result.stdout.split()


@pytest.mark.parametrize("words, offered", [
    ("xmcfit plan --precision ", ["bf16_amp", "fp16_amp", "fp32"]),
    ("xmcfit plan --classifier ", ["sparse", "dense"]),
    ("xmcfit plan --classifier-optimizer ", ["adamw", "sgd_momentum", "sgd"]),
    ("xmcfit plan --classifier-dtype ", ["float32", "bfloat16"]),
    ("xmcfit plan --loss ", ["squared_hinge", "bce"]),
    ("xmcfit plan --loss-reduction ", ["mean", "sum_over_labels"]),
    ("xmcfit plan --input-weighting ", ["raw", "tfidf"]),
    ("xmcfit plan --pooling ", ["mean", "cls"]),
    ("xmcfit eval --split ", ["dev", "test"]),
    ("xmcfit eval --device ", ["auto", "cpu", "cuda", "cuda:0", "cuda:1"]),
    ("xmcfit predict --device c", ["cpu", "cuda", "cuda:0", "cuda:1"]),
    ("xmcfit train --device ", ["auto", "cpu", "cuda", "cuda:0", "cuda:1"]),
    ("xmcfit train --log-to ", ["tensorboard"]),
    ("xmcfit data stats --split ", ["train", "dev", "test"]),
])
def test_shell_completion_offers_each_choice_flags_values(words, offered):
    assert _complete(words) == offered


def test_a_value_outside_the_choices_is_one_error_line():
    for args in (["eval", "runs/x", "--split", "train"], ["plan", "--labels", "9", "--gpu-mem", "1G", "--loss", "mse"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and result.stdout == ""
        [line] = result.stderr.strip().splitlines()
        assert line.startswith("Error: Invalid value for") and "is not one of" in line


def test_every_listing_command_has_json():
    profiles = json.loads(runner.invoke(app, ["profiles", "--json"]).stdout)
    assert {"T4-16G", "H200-141G"} <= {g["name"] for g in profiles["gpus"]}
    assert "all-MiniLM-L6-v2" in {e["name"] for e in profiles["encoders"]}
    assert "LF-AmazonTitles-1.3M" in {d["name"] for d in profiles["datasets"]}
    result = runner.invoke(app, ["gpus", "--json"])
    assert result.exit_code == 0
    gpus = json.loads(result.stdout)  # [] and a line on stderr on a machine without a driver
    assert isinstance(gpus, list) and all({"index", "name", "total_bytes", "bf16"} <= set(g) for g in gpus)


def test_profiles_keep_every_name_whole_at_80_columns():
    from xmcfit.plan.profiles import profile_names

    result = runner.invoke(app, ["profiles"], env={"COLUMNS": "80"})
    assert result.exit_code == 0 and "…" not in result.stdout
    assert max(map(len, result.stdout.splitlines())) <= 80
    for kind in ("gpus", "encoders", "datasets"):
        for name in profile_names(kind):
            assert re.search(rf"^{re.escape(name)}\s", result.stdout, re.M), name


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_weights_and_checkpoints_are_as_readable_as_the_umask_allows(tmp_path, umask):
    import torch

    from xmcfit.rundir import MemoryReport, RunFiles, write_run_info
    from xmcfit.train.checkpoint import write_checkpoint
    from xmcfit.train.finish import write_final_weights

    old = os.umask(umask)
    try:
        folder = write_checkpoint(tmp_path / "checkpoint", 7, {"model": {"w": torch.ones(3)}, "step": 7})
        write_run_info(tmp_path, {"status": "running"})
        report = MemoryReport(device="cpu", predicted_peak_bytes=1, dense_predicted_peak_bytes=1,
                              predicted_terms_bytes={}, measured_terms_bytes={}, measured_peak_bytes=1, note="")
        write_final_weights(RunFiles(tmp_path), {"w": torch.ones(3)}, report, epochs_done=1, steps=7)
    finally:
        os.umask(old)
    expected = 0o666 & ~umask
    files = [RunFiles(tmp_path).weights, RunFiles(tmp_path).memory, *folder.iterdir()]
    assert {f.name: _mode(f) for f in files} == {f.name: expected for f in files}


def _stats(step: int, total: int, epoch: int, probe_steps: int):
    from xmcfit.train.epoch import StepStats

    return StepStats(step, total, epoch, 0.5, 0.5, 0.0, 0.0, 1.0, 0, 10.0, 2**30, 0, probe_steps)


def test_the_eta_knows_the_probe_phase_is_faster_than_the_end_to_end_one():
    from xmcfit.report import PhaseClock

    clock, now, lefts = PhaseClock(), 0.0, {}
    for step in range(1, 21):  # 10 probe steps of 0.1 s, then 10 end-to-end steps of 5 s
        now += 0.1 if step <= 10 else 5.0
        lefts[step] = clock.remaining_s(_stats(step, 20, 1 + (step - 1) // 5, probe_steps=10), now)
    assert lefts[1] is None and lefts[5] == pytest.approx(0.5)  # the probe's own pace, over its own steps
    assert lefts[11] is None  # a new phase is not guessed from the old one's pace
    assert lefts[12] == pytest.approx(40.0) and lefts[20] == pytest.approx(0.0)


def test_progress_lines_and_bars_count_epochs_from_1_per_phase(monkeypatch):
    from xmcfit.report import TrainProgress

    out = io.StringIO()
    with TrainProgress(1e-5, 1e-2, stream=out, line_every_s=0) as progress:
        for step in range(1, 5):
            progress.update(_stats(step, 4, 1 + (step - 1) // 2, probe_steps=2))
    lines = out.getvalue().splitlines()
    assert [line.split("  ")[:3] for line in lines[:1]] == [["step 1/4", "epoch 1", "probe 1/2"]]
    assert lines[2].startswith("step 3/4  epoch 2  end-to-end 1/2")

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setenv("COLUMNS", "100")
    screen = Tty()
    with TrainProgress(1e-5, 1e-2, stream=screen) as progress:
        for step in range(1, 5):
            progress.update(_stats(step, 4, 1 + (step - 1) // 2, probe_steps=2))
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue())
    assert "probe epoch 1" in text and "end-to-end epoch 2" in text and "2/2" in text


def test_train_log_counts_epochs_from_1_and_names_the_phase(tmp_path, tiny_encoder_dir, synth_dir):
    from plan_factory import tiny_plan, train_plan

    plan = tiny_plan(str(tiny_encoder_dir), 40, epochs=1, probe_epochs=1, micro_batch=60, aux_clusters=0)
    train_plan(plan, tmp_path / "run", synth_dir, log_every=1)
    records = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [(r["step"], r["epoch"], r["phase"]) for r in records] == [
        (1, 1, "probe"), (2, 1, "probe"), (3, 1, "probe"), (4, 1, "probe"),
        (5, 2, "end_to_end"), (6, 2, "end_to_end"), (7, 2, "end_to_end"), (8, 2, "end_to_end")]


def _dump_svmlight(path: Path, features, labels: list[list[int]], n_labels: int) -> None:
    import numpy as np

    sklearn_io = pytest.importorskip("sklearn.datasets")
    indicator = np.zeros((len(labels), n_labels), dtype=np.int64)
    for i, ids in enumerate(labels):
        indicator[i, ids] = 1
    sklearn_io.dump_svmlight_file(features, indicator, str(path), multilabel=True)  # zero-based, no header


def test_headerless_svmlight_files_are_read_with_the_header_inferred(tmp_path):
    import numpy as np
    import scipy.sparse as sp

    from xmcfit.data import load_split

    rng = np.random.default_rng(0)
    train_x = sp.random(30, 12, density=0.3, format="csr", random_state=1, dtype=np.float64)
    train_y = [sorted(rng.choice(7, 2, replace=False).tolist()) for _ in range(30)]
    train_y[3] = []  # a point without labels
    _dump_svmlight(tmp_path / "toy_train.txt", train_x, train_y, 7)
    test_x = sp.random(5, 12, density=0.3, format="csr", random_state=2)[:, :8]  # reaches neither F nor L
    _dump_svmlight(tmp_path / "toy_test.txt", test_x, [[0], [1, 2], [0], [2], [1]], 3)
    assert ":" in (tmp_path / "toy_train.txt").read_text().splitlines()[0]  # really no `N F L` line

    train = load_split(tmp_path, "train")
    assert (train.n_points, train.n_features, train.n_labels) == (30, 12, 7)
    assert np.allclose(train.features.toarray(), train_x.toarray())
    assert [sorted(train.labels[i].indices.tolist()) for i in range(30)] == train_y
    test = load_split(tmp_path, "test")  # widened to the training split's sizes
    assert (test.n_points, test.n_features, test.n_labels) == (5, 12, 7)
    result = runner.invoke(app, ["data", "stats", str(tmp_path), "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["n_labels"] == 7


def test_a_headerless_file_still_names_the_bad_line(tmp_path):
    from xmcfit.data import load_split
    from xmcfit.errors import XmcfitError

    (tmp_path / "x_train.txt").write_text("0,1 1:0.5\n2 0:1 3:-2\n1 5:x\n")
    with pytest.raises(XmcfitError, match=r"x_train.txt:3: malformed record"):
        load_split(tmp_path, "train")


def _config_dir(tmp_path: Path, name: str, cfg: dict) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


T5_ENCODER = {"architectures": ["T5EncoderModel"], "model_type": "t5", "d_model": 512, "d_ff": 2048, "d_kv": 64,
              "num_layers": 6, "num_heads": 8, "vocab_size": 32128, "is_encoder_decoder": True,
              "relative_attention_num_buckets": 32}


def test_a_t5_encoder_is_refused_in_words_that_say_why(tmp_path):
    folder = _config_dir(tmp_path, "sentence-t5", T5_ENCODER)
    result = runner.invoke(app, ["plan", "--labels", "1000", "--gpu-mem", "16G", "--encoder", str(folder)])
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("Error: ") and "T5EncoderModel" in line and "max_position_embeddings" in line
    assert "missing field" not in line and "BERT-family" in line


QWEN2 = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 64, "intermediate_size": 128,
         "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 1000,
         "max_position_embeddings": 512}


def test_a_decoder_only_model_is_planned_with_a_warning(tmp_path, caplog):
    folder = _config_dir(tmp_path, "qwen2", QWEN2)
    with caplog.at_level("WARNING"):
        result = runner.invoke(app, ["plan", "--labels", "1000", "--gpu-mem", "16G", "--encoder", str(folder), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["model"]["encoder"]["hidden_size"] == 64
    [warning] = [r.getMessage() for r in caplog.records if "decoder-only" in r.getMessage()]
    assert "Qwen2ForCausalLM" in warning and "mean pooling" in warning


@pytest.mark.parametrize("cfg, expected", [
    ({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}, "architectures 'GPT2LMHeadModel'"),
    ({"model_type": "qwen2"}, "model_type 'qwen2'"),
    ({"model_type": "bert", "is_decoder": True}, "is_decoder is true"),
    ({"model_type": "bert", "architectures": ["BertModel"]}, None),
    ({"model_type": "roberta", "architectures": ["RobertaForMaskedLM"]}, None),
])
def test_decoder_only_models_are_recognised(cfg, expected):
    from xmcfit.plan.profiles import decoder_only_reason

    assert decoder_only_reason(cfg) == expected


def test_package_metadata_has_a_license_classifiers_and_keywords():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "the xmcfit authors" in text
    classifiers = project["classifiers"]
    assert not [c for c in classifiers if c.startswith("License ::")]  # PEP 639: the expression says it
    assert "Programming Language :: Python :: 3.11" in classifiers and "Typing :: Typed" in classifiers
    assert "extreme multi-label classification" in project["keywords"]
