"""The training recipe's accuracy knobs: linear-probe warm start, loss reduction, TF-IDF bag-of-words
input, and the plan flags that pin them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from plan_factory import tiny_plan
from plan_factory import train_plan as _train
from xmcfit.cli import app
from xmcfit.errors import XmcfitError
from xmcfit.model import BowEncoder, build_model, inverse_document_frequency
from xmcfit.seed import seed_everything
from xmcfit.sparse import FixedFanInLinear, chunked_loss
from xmcfit.train.loop import TrainingStopped
from xmcfit.train.setup import Schedule

N_LABELS = 40


@pytest.mark.parametrize("dense", [False, True])
def test_sum_over_labels_is_n_labels_times_the_mean(dense):
    torch.manual_seed(0)
    layer = torch.nn.Linear(16, 50) if dense else FixedFanInLinear(16, 50, 4, seed=0)
    x = torch.randn(6, 16, requires_grad=True)
    positives = torch.tensor([[0, 3], [1, 7], [5, 49], [2, 0]])
    grads = []
    for reduction in ("mean", "sum_over_labels"):
        x.grad = None
        loss = chunked_loss(x, layer, positives, chunk_size=16, reduction=reduction)
        loss.backward()
        grads.append((loss.detach(), x.grad.clone()))
    (mean, g_mean), (summed, g_sum) = grads
    torch.testing.assert_close(summed, 50 * mean)
    torch.testing.assert_close(g_sum, 50 * g_mean)


def test_chunked_loss_rejects_an_unknown_reduction():
    with pytest.raises(ValueError, match="reduction='sum'"):
        chunked_loss(torch.randn(2, 8), torch.nn.Linear(8, 3), torch.zeros(0, 2, dtype=torch.long), reduction="sum")


def test_tfidf_bow_encoder_weights_by_idf_and_normalises_each_row():
    features = sp.csr_matrix(np.array([[1, 0, 2], [0, 0, 3], [1, 1, 0]], dtype=np.float32))
    idf = inverse_document_frequency(features, 3)
    np.testing.assert_allclose(idf.numpy(), np.log(4 / (1 + np.array([2, 1, 2]))) + 1, rtol=1e-6)
    enc = BowEncoder(3, 5, tfidf=True)
    enc.set_idf(idf)
    with torch.no_grad():
        enc.embedding.weight.copy_(torch.eye(3, 5))  # feature f -> unit vector f: the output is the weights
    indices, offsets = torch.tensor([0, 2, 2, 0, 1]), torch.tensor([0, 2, 3])
    out = enc(indices, offsets, torch.tensor([1.0, 2.0, 3.0, 1.0, 1.0]))  # (3, 5)
    rows = torch.tensor([[1 * idf[0], 0, 2 * idf[2]], [0, 0, 3 * idf[2]], [idf[0], idf[1], 0]])
    torch.testing.assert_close(out[:, :3], rows / rows.norm(dim=1, keepdim=True))
    assert "idf" in enc.state_dict()


def test_tfidf_bow_run_prices_its_idf_and_predicts_from_the_saved_weights(tmp_path, bow_dir):
    plan = tiny_plan("bow", 6, bow_features=30, fan_in=4, epochs=1, aux_clusters=2, input_weighting="tfidf")
    _train(plan, tmp_path / "run", bow_dir)
    memory = json.loads((tmp_path / "run" / "memory.json").read_text())
    assert memory["measured_terms_bytes"]["encoder_weights"] == (30 * 32 + 32 + 30) * 4
    assert memory["measured_terms_bytes"]["encoder_weights"] == memory["predicted_terms_bytes"]["encoder_weights"]
    state = load_file(str(tmp_path / "run" / "model.safetensors"))
    assert not torch.equal(state["encoder.idf"], torch.ones(30))  # set from the training split


def test_the_schedule_gives_the_probe_and_end_to_end_phases_their_own_warm_up_and_cosine():
    plan = tiny_plan("bow", 6, bow_features=30, epochs=2, probe_epochs=3)
    s = Schedule.from_plan(plan, n_points=160)  # 10 steps an epoch
    assert (s.probe_steps, s.total_steps) == (30, 50)
    assert s.lr_multiplier(0) == pytest.approx(1 / 3)  # probe warm-up: 3 steps
    assert s.lr_multiplier(29) < 0.01  # the probe's cosine ends ...
    assert s.lr_multiplier(30) == pytest.approx(1 / 2)  # ... and the end-to-end warm-up (2 steps) starts
    assert s.lr_multiplier(49) < 0.01


def test_probe_phase_trains_the_heads_and_leaves_the_encoder_as_pretrained(tmp_path, tiny_encoder_dir, synth_dir):
    plan = tiny_plan(str(tiny_encoder_dir), N_LABELS, epochs=0, probe_epochs=1)  # a frozen-feature head only
    result = _train(plan, tmp_path / "run", synth_dir)
    assert result.steps == 15  # 240 points / micro-batch 16
    seed_everything(plan.seed)
    pretrained = build_model(plan, str(tiny_encoder_dir)).state_dict()
    after = load_file(str(tmp_path / "run" / "model.safetensors"))
    for name, value in pretrained.items():
        if name.startswith("encoder."):
            assert torch.equal(after[name], value), name
    assert not torch.equal(after["classifier.values"], pretrained["classifier.values"])


def test_an_fp16_run_trains_through_the_probe_phase_where_the_encoder_gets_no_gradient(tmp_path, tiny_encoder_dir,
                                                                                          synth_dir):
    plan = tiny_plan(str(tiny_encoder_dir), N_LABELS, epochs=1, probe_epochs=1, precision="fp16_amp",
                     aux_clusters=0)
    result = _train(plan, tmp_path / "run", synth_dir)
    assert (result.probe_epochs_done, result.epochs_done) == (1, 1) and np.isfinite(result.final_loss)


def test_probe_features_that_run_out_of_memory_are_encoded_again_in_halves(tmp_path, tiny_encoder_dir, synth_dir,
                                                                            monkeypatch):
    from xmcfit.train import setup

    plan = tiny_plan(str(tiny_encoder_dir), N_LABELS, epochs=0, probe_epochs=1)
    real_build, seen = setup.build_model, []

    def build_with_allocator_limit(*args, **kwargs):  # a CPU has no allocator cap: a hook plays one
        model = real_build(*args, **kwargs)

        def hook(module, inputs):
            seen.append(inputs[0].shape[0])
            if inputs[0].shape[0] > 20:
                raise torch.OutOfMemoryError("simulated: CUDA out of memory")

        model.encoder.register_forward_pre_hook(hook)
        return model

    monkeypatch.setattr(setup, "build_model", build_with_allocator_limit)
    reference = _train(plan, tmp_path / "reference", synth_dir)
    assert max(seen) > 20 and seen[-1] <= 20  # the batch was halved until it fit
    monkeypatch.setattr(setup, "build_model", real_build)
    unconstrained = _train(plan, tmp_path / "unconstrained", synth_dir)
    assert reference.final_loss == pytest.approx(unconstrained.final_loss, rel=1e-5)


def test_probe_features_that_do_not_fit_one_point_at_a_time_are_one_line(tmp_path, tiny_encoder_dir, synth_dir,
                                                                          monkeypatch):
    from xmcfit.train import setup

    plan = tiny_plan(str(tiny_encoder_dir), N_LABELS, epochs=0, probe_epochs=1)
    real_build = setup.build_model

    def build_out_of_memory(*args, **kwargs):
        model = real_build(*args, **kwargs)

        def hook(module, inputs):
            raise torch.OutOfMemoryError("simulated: CUDA out of memory")

        model.encoder.register_forward_pre_hook(hook)
        return model

    monkeypatch.setattr(setup, "build_model", build_out_of_memory)
    with pytest.raises(XmcfitError, match="--probe-epochs 0"):
        _train(plan, tmp_path / "run", synth_dir)


def test_zero_epochs_need_probe_epochs():
    with pytest.raises(XmcfitError, match="training.epochs=0: must be >= 1"):
        tiny_plan("bow", 6, bow_features=30, epochs=0)


def test_a_run_resumed_inside_the_probe_phase_ends_with_the_same_weights(tmp_path, tiny_encoder_dir, synth_dir):
    plan = tiny_plan(str(tiny_encoder_dir), N_LABELS, epochs=1, probe_epochs=1)
    _train(plan, tmp_path / "whole", synth_dir)
    with pytest.raises(TrainingStopped):
        _train(plan, tmp_path / "split", synth_dir, max_steps=7)
    result = _train(plan, tmp_path / "split", synth_dir, resume=True)
    assert (result.steps, result.probe_epochs_done, result.epochs_done) == (30, 1, 1)
    whole = load_file(str(tmp_path / "whole" / "model.safetensors"))
    split = load_file(str(tmp_path / "split" / "model.safetensors"))
    for name in whole:
        assert torch.equal(whole[name], split[name]), name


def test_plan_flags_pin_the_recipe_knobs(tmp_path):
    out = tmp_path / "plan.json"
    result = CliRunner().invoke(app, ["plan", "--labels", "5000", "--gpu-mem", "8G", "--encoder-lr", "2e-5",
                                      "--classifier-lr", "0.003", "--loss", "bce", "--loss-reduction",
                                      "sum_over_labels", "--probe-epochs", "3", "--dropout", "0.2", "-o", str(out)])
    assert result.exit_code == 0, result.output
    plan = json.loads(out.read_text())
    assert plan["training"]["encoder_lr"] == 2e-5 and plan["training"]["probe_epochs"] == 3
    assert plan["classifier"]["lr"] == 0.003 and plan["classifier"]["loss"] == "bce"
    assert plan["classifier"]["loss_reduction"] == "sum_over_labels" and plan["model"]["dropout"] == 0.2
    assert {"encoder_lr", "classifier_lr", "loss", "loss_reduction", "probe_epochs", "dropout"} <= set(
        plan["inputs"]["pinned"])


@pytest.mark.parametrize("args,message", [
    (["--input-weighting", "tfidf"], "--input-weighting tfidf: applies to bag-of-words data only"),
    (["--loss-reduction", "sum"], "'--loss-reduction': 'sum' is not one of 'mean', 'sum_over_labels'"),
    (["--probe-epochs", "-1"], "--probe-epochs -1: must be >= 0"),
    (["--dropout", "1.0"], "--dropout 1.0: must be in [0, 1)"),
])
def test_bad_recipe_flags_fail_in_one_line(args, message):
    result = CliRunner().invoke(app, ["plan", "--labels", "5000", "--gpu-mem", "8G", *args])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


def test_a_text_encoder_learns_at_a_fifth_of_its_rate_beside_the_tfidf_side():
    """EURLEX57K titles, 3 seeds: MiniLM at 2e-5 beside the side beat 1e-4 (bench/RESULTS.md); without the side
    1e-4 won, and a bag-of-words projection keeps its head's rate either way."""
    def encoder_lr(*flags):
        out = CliRunner().invoke(app, ["plan", "--labels", "5000", "--gpu-mem", "8G", "--json", *flags])
        assert out.exit_code == 0, out.output
        plan = json.loads(out.output)
        reason = next(r for r in plan["reasons"] if r.startswith("encoder learning rate"))
        return plan["training"]["encoder_lr"], reason

    lr, reason = encoder_lr("--tfidf")
    assert lr == 2e-5 and "x0.2 beside the TF-IDF side" in reason
    assert encoder_lr("--no-tfidf")[0] == 1e-4 and "beside" not in encoder_lr("--no-tfidf")[1]
    assert encoder_lr("--tfidf", "--encoder", "bert-base-uncased")[0] == 1e-5
    assert encoder_lr("--tfidf", "--encoder-lr", "3e-4")[0] == 3e-4
    assert "beside" not in encoder_lr("--tfidf", "--encoder-lr", "3e-4")[1]  # a pinned rate is not scaled
