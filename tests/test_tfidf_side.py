"""The TF-IDF side: a fixed fan-in scorer over the input's words, its scores added to the classifier's."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from safetensors.torch import load_file

from plan_factory import tiny_plan
from plan_factory import train_plan as _train
from xmcfit.data.words import (WordVocab, label_centroids, label_word_pattern, label_word_values, smooth_idf,
                                tfidf_rows)
from xmcfit.errors import XmcfitError
from xmcfit.sparse import FixedFanInLinear, chunked_loss


@pytest.mark.parametrize("side_bias", [False, True])
def test_chunked_loss_with_a_tfidf_term_matches_the_dense_reference(side_bias):
    torch.manual_seed(0)
    batch, d, n_words, n_labels = 5, 6, 40, 11
    x = torch.randn(batch, d, dtype=torch.float64, requires_grad=True)
    words = torch.rand(batch, n_words, dtype=torch.float64) * (torch.rand(batch, n_words) < 0.2)
    cls = FixedFanInLinear(d, n_labels, 3, seed=1, dtype=torch.float64)
    side = FixedFanInLinear(n_words, n_labels, 7, bias=side_bias, seed=2, dtype=torch.float64)
    if side_bias:
        with torch.no_grad():
            side.bias.normal_()
    positives = torch.tensor([[0, 1], [1, 4], [2, 10], [4, 0], [4, 3]])
    loss = chunked_loss(x, cls, positives, chunk_size=4, reduction="sum_over_labels", extra=(words, side))
    loss.backward()

    w, ws = cls.to_dense().requires_grad_(), side.to_dense().requires_grad_()
    xr = x.detach().clone().requires_grad_()
    y = -torch.ones(batch, n_labels, dtype=torch.float64)
    y[positives[:, 0], positives[:, 1]] = 1.0
    side_b = side.bias.detach().clone().requires_grad_() if side_bias else torch.zeros(n_labels, dtype=torch.float64)
    z = xr @ w.t() + cls.bias.detach() + words @ ws.t() + side_b
    ref = (torch.clamp(1 - y * z, min=0) ** 2).sum() / batch
    ref.backward()
    assert torch.allclose(loss, ref)
    assert torch.allclose(x.grad, xr.grad)
    assert torch.allclose(side.values.grad, ws.grad.gather(1, side.indices.long()))
    assert torch.allclose(cls.values.grad, w.grad.gather(1, cls.indices.long()))
    if side_bias:
        assert torch.allclose(side.bias.grad, side_b.grad)


def test_label_word_pattern_keeps_each_labels_heaviest_words_and_fills_distinct_ones():
    counts = sp.csr_matrix(np.array([[3, 0, 1, 0, 0, 0], [0, 2, 0, 0, 0, 0], [1, 0, 0, 0, 0, 5]], dtype=np.float32))
    labels = sp.csr_matrix(np.array([[1, 0], [1, 0], [0, 0]], dtype=np.float32))  # label 1 has no document
    pattern = label_word_pattern(label_centroids(tfidf_rows(counts, smooth_idf(counts)), labels), fan_in=3, seed=0)
    assert pattern.shape == (2, 3)
    assert set(pattern[0]) == {0, 1, 2}  # every word of label 0's documents, nothing random
    for row in pattern:
        assert list(row) == sorted(set(row)) and len(set(row)) == 3 and row.max() < 6


def test_label_word_values_start_each_label_at_its_scaled_normalised_centroid():
    counts = sp.csr_matrix(np.array([[3, 0, 1, 0, 0, 0], [0, 2, 0, 0, 0, 0], [1, 0, 0, 0, 0, 5]], dtype=np.float32))
    labels = sp.csr_matrix(np.array([[1, 0], [1, 0], [0, 1]], dtype=np.float32))
    rows = tfidf_rows(counts, smooth_idf(counts))
    pattern = label_word_pattern(label_centroids(rows, labels), fan_in=3, seed=0)
    values = label_word_values(label_centroids(rows, labels), pattern, scale=3.0)
    centroid = (labels.T @ rows).toarray()
    centroid /= np.linalg.norm(centroid, axis=1, keepdims=True)
    assert values.dtype == np.float32
    np.testing.assert_allclose(values, 3.0 * np.take_along_axis(centroid, pattern, axis=1), rtol=1e-6)
    assert (values[1] > 0).sum() == 2  # label 1's third word is a random filler: it starts at 0


def test_the_side_learns_at_its_own_rate_and_starts_at_the_centroids(tmp_path, bow_dir):
    """The planner lowers the classifier's rate beside the side; the trainer gives the side its own AdamW
    group and starts its values at the labels' scaled TF-IDF centroids."""
    from xmcfit.api import plan
    from xmcfit.rundir import DataOptions
    from xmcfit.train.data import load_train_data
    from xmcfit.train.setup import setup_training

    assert plan(labels=5000, gpu_mem="16G").classifier.lr == pytest.approx(0.003)
    assert plan(labels=5000, gpu_mem="16G", tfidf=False).classifier.lr == pytest.approx(0.01)
    assert plan(labels=5000, gpu_mem="16G", classifier_lr=0.02).classifier.lr == 0.02  # a pin stays
    the_plan = tiny_plan("bow", 6, bow_features=30, kind="dense", aux_clusters=0, micro_batch=8, tfidf_fan_in=10)
    (tmp_path / "run").mkdir()
    data = load_train_data(the_plan, tmp_path / "run", DataOptions(str(bow_dir)), resume=False)
    parts = setup_training(the_plan, data, torch.device("cpu"), resume=False)
    side = parts.model.tfidf.layer.values
    [group] = [g for g in parts.optimizers.encoder.param_groups if any(p is side for p in g["params"])]
    assert group["lr"] == the_plan.tfidf.lr and len(group["params"]) == 1
    rows = tfidf_rows(data.words, smooth_idf(data.words))
    expected = label_word_values(label_centroids(rows, data.dataset.labels), parts.model.tfidf.layer.indices.numpy(), 3.0)
    np.testing.assert_allclose(side.detach().numpy(), expected, rtol=1e-6)


def test_word_vocabulary_keeps_frequent_words_and_round_trips(tmp_path):
    texts = ["Fishing rights in the Baltic", "fishing quotas, Baltic sea", "a rare word", "the sea"]
    vocab = WordVocab.fit(texts, max_words=3, min_df=2)
    assert set(vocab.words) == {"fishing", "baltic", "the"} or len(vocab) == 3
    counts = vocab.counts(["baltic baltic fishing unknown"])
    assert counts.shape == (1, 3) and counts.sum() == 3.0
    vocab.save(tmp_path / "v.json")
    assert WordVocab.load(tmp_path / "v.json") == vocab
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(XmcfitError, match="not a TF-IDF vocabulary"):
        WordVocab.load(tmp_path / "bad.json")


def test_a_text_run_with_the_tfidf_side_trains_saves_and_scores(tmp_path, tiny_encoder_dir, synth_dir):
    from xmcfit.inference import load_run, predict_texts

    plan = tiny_plan(str(tiny_encoder_dir), 40, epochs=1, probe_epochs=1, tfidf_fan_in=16)
    _train(plan, tmp_path / "run", synth_dir)
    assert json.loads((tmp_path / "run" / "tfidf_vocab.json").read_text())["words"]
    state = load_file(str(tmp_path / "run" / "model.safetensors"))
    assert state["tfidf.layer.values"].shape == (40, 16) and state["tfidf.layer.values"].abs().sum() > 0
    assert not torch.equal(state["tfidf.idf"], torch.ones(200))
    memory = json.loads((tmp_path / "run" / "memory.json").read_text())
    for term in ("tfidf_weights", "tfidf_optimizer_state"):  # persistent tensors priced to the byte
        assert memory["measured_terms_bytes"][term] == memory["predicted_terms_bytes"][term]
    run = load_run(tmp_path / "run")
    ids, scores = predict_texts(run, ["some text", ""], k=3)
    assert ids.shape == (2, 3) and np.isfinite(scores).all()


def test_a_bag_of_words_run_trains_its_tfidf_side_on_the_features(tmp_path, bow_dir):
    """The scorer reads a bag-of-words batch's own features, and on its own ranks the training labels."""
    from xmcfit.data import load_split
    from xmcfit.data.torch_data import csr_rows_batch
    from xmcfit.inference import load_run, predict_topk
    from xmcfit.metrics import ranking_metrics

    plan = tiny_plan("bow", 6, bow_features=30, kind="dense", epochs=30, aux_clusters=0, micro_batch=8,
                     tfidf_fan_in=10)
    _train(plan, tmp_path / "run", bow_dir)
    run = load_run(tmp_path / "run")
    train = load_split(bow_dir, "train")
    scorer = run.model.tfidf
    with torch.no_grad():
        alone = scorer.layer(scorer.inputs(csr_rows_batch(train.features, range(train.n_points), "feat")))
    p1 = ranking_metrics(train.labels, alone.topk(5, dim=1).indices.numpy(), ks=(1,))["P@1"]
    assert p1 > 0.5  # 6 labels, 2 per point: chance is 1/3
    ids, _ = predict_topk(run, train, 5)
    assert ranking_metrics(train.labels, ids, ks=(1,))["P@1"] >= p1 - 0.1


def test_planner_prices_and_explains_the_tfidf_side():
    from xmcfit.api import plan

    on = plan(labels=50_000, gpu_mem="16G")
    assert on.tfidf.enabled and on.tfidf.fan_in == 64
    assert {"tfidf_weights", "tfidf_optimizer_state", "tfidf_grads", "tfidf_inputs"} <= set(on.memory.terms_bytes)
    assert on.memory.terms_bytes["tfidf_inputs"] == on.training.micro_batch * on.tfidf.n_words * 4
    assert any(r.startswith("TF-IDF side on") for r in on.reasons)
    off = plan(labels=50_000, gpu_mem="16G", tfidf=False)
    assert not off.tfidf.enabled and "tfidf_weights" not in off.memory.terms_bytes
    assert off.memory.predicted_peak_bytes < on.memory.predicted_peak_bytes
    two = plan(labels=50_000, gpu_mem="16G", devices=2, batch=on.inputs.target_batch)  # a label shard of the side
    assert two.tfidf.enabled and two.training.micro_batch * 2 == on.training.micro_batch
    assert any("split over the 2 devices" in r for r in two.reasons)
    terms_one, terms_two = on.memory.terms_bytes, two.memory.terms_bytes
    assert terms_two["tfidf_optimizer_state"] * 2 == terms_one["tfidf_optimizer_state"]  # 25,000 rows each
    assert terms_two["tfidf_grads"] * 2 == terms_one["tfidf_grads"]
    # its own micro-batch's rows and every device's, all-gathered: the same rows one device holds, and more
    assert terms_two["tfidf_inputs"] == (two.training.micro_batch * 3) * two.tfidf.n_words * 4


def test_the_sides_rate_is_its_budget_over_the_runs_steps(bow_dir):
    """60 over the optimizer steps the plan makes (epochs x points / batch), within 0.005-0.05; --train-points
    (a run on part of the data) changes the steps; an unknown size keeps 0.03; the reason line says which."""
    from xmcfit.api import plan
    from xmcfit.plan.defaults import DEFAULTS

    from_data = plan(data=str(bow_dir), gpu_mem="16G", epochs=10)  # 60 points
    big = plan(data=str(bow_dir), gpu_mem="16G", epochs=10, train_points=15_000)
    steps = 10 * -(-15_000 // 32)
    assert big.tfidf.lr == pytest.approx(60 / steps) and big.inputs.target_batch == 32
    assert any(f"60 over the run's {steps:,} steps" in r for r in big.reasons)
    assert from_data.tfidf.lr == DEFAULTS.tfidf_lr_range[1]  # a few hundred points: few steps, the ceiling
    assert plan(data=str(bow_dir), gpu_mem="16G", epochs=10, train_points=10_000_000).tfidf.lr == DEFAULTS.tfidf_lr_range[0]
    unknown = plan(labels=50_000, gpu_mem="16G")
    assert unknown.tfidf.lr == DEFAULTS.tfidf_lr_unknown_steps
    assert any("size is unknown" in r for r in unknown.reasons)
    with pytest.raises(XmcfitError, match="--train-points"):
        plan(data=str(bow_dir), gpu_mem="16G", train_points=0)


def test_the_side_starts_at_the_centroids_only_where_labels_have_several_points(bow_dir):
    """The toy data has 20 points per label: centroids x3; --train-points 1 leaves a third of a point per
    label: zeros; labels alone (unknown): centroids, as before the rule. The reason line says which."""
    from xmcfit.api import plan
    from xmcfit.plan.defaults import DEFAULTS

    many = plan(data=str(bow_dir), gpu_mem="16G")
    assert many.tfidf.init_scale == DEFAULTS.tfidf_init_scale == 3.0
    assert any("centroid x3 (20.0 training points per label)" in r for r in many.reasons)
    few = plan(data=str(bow_dir), gpu_mem="16G", train_points=1)
    assert few.tfidf.init_scale == 0.0 and any("starting from zeros" in r for r in few.reasons)
    assert plan(labels=50_000, gpu_mem="16G").tfidf.init_scale == 3.0


def test_a_plan_written_before_the_tfidf_side_loads_with_it_off(tmp_path):
    from xmcfit.api import plan
    from xmcfit.plan.schema import Plan

    data = json.loads(plan(labels=1000, gpu_mem="16G", tfidf=False).to_json())
    del data["tfidf"]
    (tmp_path / "old.json").write_text(json.dumps(data))
    assert not Plan.from_json(tmp_path / "old.json").tfidf.enabled


def test_training_on_another_number_of_points_than_planned_is_said(bow_dir, caplog):
    """--limit trains on fewer points than the plan's batch and side's rate were sized for: a warning naming
    --train-points; the plan records the points it was sized for."""
    import logging

    from xmcfit.api import plan
    from xmcfit.train.data import warn_if_sized_for_other_points

    made = plan(data=str(bow_dir), gpu_mem="16G")
    assert made.inputs.train_points == 60
    with caplog.at_level(logging.WARNING, logger="xmcfit.train.data"):
        warn_if_sized_for_other_points(made, 50)
        assert not caplog.records
        warn_if_sized_for_other_points(made, 12)
    [record] = caplog.records
    assert "sized for 60 training points" in record.getMessage() and "--train-points 12" in record.getMessage()
    assert plan(data=str(bow_dir), gpu_mem="16G", train_points=12).inputs.train_points == 12


def test_where_nothing_else_fits_the_side_keeps_fewer_words_per_label_before_none():
    """The chain's last accuracy moves lower the side's words per label 64 -> 32 -> 16 (each label's
    heaviest), before the side goes off; a pinned --tfidf-fan-in is never lowered."""
    from xmcfit.plan.chooser import Pins, PlanRequest, _chain, _layout, choose_plan
    from xmcfit.plan.memory import predict
    from xmcfit.plan.profiles import load_encoder

    req = PlanRequest(n_labels=3_000_000, budget_bytes=2**40, encoder=load_encoder("all-MiniLM-L6-v2").to_spec(),
                      seq_len=128)
    chain = list(_chain(req, "bf16_amp"))
    caps = [k.tfidf_cap for k in chain]
    assert caps.index(32) < caps.index(16) and caps[-1] == 16
    assert chain[caps.index(32)].micro_batch == 128  # before the speed moves that would save nothing
    for cap, fan_in in ((32, 32), (16, 16)):
        peak = predict(_layout(req, "bf16_amp", chain[caps.index(cap)])).predicted_peak_bytes
        plan = choose_plan(replace(req, budget_bytes=peak, pins=Pins(precision="bf16_amp")))
        assert plan.tfidf.enabled and plan.tfidf.fan_in == fan_in
        assert plan.classifier.optimizer == "sgd" and plan.training.micro_batch == 128
        assert any(f"{fan_in} words per label (thinned: nothing else fits with 64)" in r
                   for r in plan.reasons)
        assert plan.memory.predicted_peak_bytes <= peak
    pinned = replace(req, pins=Pins(tfidf_fan_in=64))
    assert {k.tfidf_cap for k in _chain(pinned, "bf16_amp")} == {0}
