"""Chooser: fits the budget, is monotone in memory, honours pins, fails in one line when nothing fits."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xmcfit.errors import XmcfitError
from xmcfit.plan.chooser import Pins, PlanRequest, choose_plan
from xmcfit.plan.memory import Layout, predict
from xmcfit.plan.schema import EncoderSpec, PlanError
from xmcfit.plan.profiles import load_encoder, load_gpu

GIB = 2**30
MINILM = load_encoder("all-MiniLM-L6-v2").to_spec()
BERT = load_encoder("bert-base-uncased").to_spec()
RANK = {"float32": 1, "bfloat16": 0, "adamw": 2, "sgd_momentum": 1, "sgd": 0}


def _request(budget_bytes: int, n_labels: int = 3_000_000, encoder=MINILM, **over) -> PlanRequest:
    return PlanRequest(n_labels=n_labels, budget_bytes=budget_bytes, encoder=encoder, seq_len=128, **over)


def test_readme_demo_fits_a_t4():
    t4 = load_gpu("T4-16G")
    plan = choose_plan(_request(t4.memory_bytes, bf16_supported=t4.bf16, gpu_name=t4.name))
    assert plan.precision == "fp16_amp"
    assert plan.memory.predicted_peak_bytes <= t4.memory_bytes
    assert plan.memory.dense_predicted_peak_bytes > plan.memory.predicted_peak_bytes


def test_plan_memory_matches_repricing_the_plan():
    plan = choose_plan(_request(12 * GIB))
    assert predict(Layout.from_plan(plan)).predicted_peak_bytes == plan.memory.predicted_peak_bytes


@settings(max_examples=25, deadline=None)
@given(small=st.integers(3, 80), extra=st.integers(0, 80), n_labels=st.integers(1000, 5_000_000),
       bert=st.booleans())
def test_more_memory_never_gives_smaller_fan_in_micro_batch_or_cheaper_classifier(small, extra, n_labels, bert):
    """Along one chain. A budget too small for the TF-IDF side at all walks the chain again without it, which
    may give a richer classifier than a larger budget that keeps the side (the side is worth more: the
    chooser's docstring), so the classifier's knobs are compared between plans that agree on the side."""
    encoder = BERT if bert else MINILM
    plans = []
    for budget_gib in (small, small + extra):
        try:
            plans.append(choose_plan(_request(budget_gib * GIB, n_labels, encoder)))
        except PlanError:
            plans.append(None)
    lo, hi = plans
    if lo is None:
        return
    assert hi is not None
    if lo.tfidf.enabled:  # the side's words per label only go down along the chain
        assert hi.tfidf.enabled and hi.tfidf.fan_in >= lo.tfidf.fan_in
    if hi.tfidf.enabled != lo.tfidf.enabled:
        return
    assert hi.classifier.fan_in >= lo.classifier.fan_in
    assert hi.training.micro_batch >= lo.training.micro_batch
    assert RANK[hi.classifier.value_dtype] >= RANK[lo.classifier.value_dtype]
    assert RANK[hi.classifier.optimizer] >= RANK[lo.classifier.optimizer]
    assert hi.model.gradient_checkpointing <= lo.model.gradient_checkpointing


def test_effective_batch_is_kept_when_micro_batch_shrinks():
    plan = choose_plan(_request(int(2.9 * GIB), n_labels=1000, encoder=BERT))
    assert plan.training.micro_batch < 128
    assert plan.effective_batch == 128


def test_pinned_fan_in_and_optimizer_are_never_overridden():
    plan = choose_plan(_request(16 * GIB, pins=Pins(fan_in=64, optimizer="sgd")))
    assert (plan.classifier.fan_in, plan.classifier.optimizer) == (64, "sgd")
    assert set(plan.inputs.pinned) == {"fan_in", "optimizer"}
    with pytest.raises(PlanError, match="nothing fits"):
        choose_plan(_request(3 * GIB, encoder=BERT, pins=Pins(fan_in=256, value_dtype="float32")))


def test_nothing_fits_names_smallest_budget_and_dominant_term():
    with pytest.raises(PlanError, match=r"nothing fits in 1\.00 GiB: .* needs [0-9.]+ GiB, dominated by \w+"):
        choose_plan(_request(1 * GIB, n_labels=50_000_000))


def test_no_bf16_gpu_gets_fp16_and_fp32_only_when_pinned():
    assert choose_plan(_request(16 * GIB, bf16_supported=False)).precision == "fp16_amp"
    assert choose_plan(_request(16 * GIB)).precision == "bf16_amp"
    assert choose_plan(_request(40 * GIB, pins=Pins(precision="fp32"))).precision == "fp32"


def test_low_fan_in_gets_an_intermediate_layer_when_it_fits():
    roomy = choose_plan(_request(24 * GIB, n_labels=1000, pins=Pins(fan_in=16)))
    assert roomy.model.intermediate_dim == 4096 and roomy.classifier.in_features == 4096
    pinned = choose_plan(_request(24 * GIB, n_labels=1000, pins=Pins(fan_in=16, intermediate_dim=0)))
    assert pinned.model.intermediate_dim == 0


def test_a_lowered_fan_in_is_explained_from_the_sparse_start_and_cites_the_measured_costs():
    plan = choose_plan(_request(6 * GIB, encoder=load_encoder("bert-base-uncased").to_spec()))
    [fan_in] = [r for r in plan.reasons if r.startswith(f"fan-in {plan.classifier.fan_in}:")]
    assert plan.classifier.fan_in < 256 and "lowered from 256" in fan_in  # not from the dense rung's 768
    assert "Accuracy cost of each memory move" in fan_in


def test_fan_in_with_the_intermediate_layer_goes_down_before_the_classifier_goes_bf16():
    """Measured order (bench/RESULTS.md): every lowered fan-in down to 32 with the intermediate layer costs less
    P@1 than a pure-bf16 classifier, so bf16 only comes once fan-in 32 does not fit (measured without the
    TF-IDF side, which the chain thins only after every classifier move: tests/test_tfidf_side.py)."""
    plans = [choose_plan(_request(int(gib * GIB), pins=Pins(tfidf=False))) for gib in (16, 12, 8, 5, 4.5, 4)]
    fp32 = [p for p in plans if p.classifier.value_dtype == "float32"]
    bf16 = [p for p in plans if p.classifier.value_dtype == "bfloat16"]
    assert fp32 and all(p.classifier.fan_in < 256 and p.model.intermediate_dim == 4096 for p in fp32)
    assert bf16 and all(p.classifier.fan_in == 32 and p.classifier.optimizer == "adamw" for p in bf16)


def test_request_rejects_fan_in_above_input_dim_and_seq_len_above_maximum():
    with pytest.raises(XmcfitError, match="--fan-in 512: must be between 1 and the input dimension d=384"):
        _request(16 * GIB, pins=Pins(fan_in=512))
    with pytest.raises(XmcfitError, match="--seq-len 1024"):
        PlanRequest(n_labels=10, budget_bytes=GIB, encoder=MINILM, seq_len=1024)


def test_devices_shard_the_classifier():
    one = choose_plan(_request(16 * GIB, pins=Pins(fan_in=128, value_dtype="float32", optimizer="adamw")))
    four = choose_plan(_request(16 * GIB, n_devices=4, pins=Pins(fan_in=128, value_dtype="float32", optimizer="adamw")))
    assert four.memory.terms_bytes["classifier_values"] * 4 >= one.memory.terms_bytes["classifier_values"]
    assert four.memory.terms_bytes["classifier_values"] < one.memory.terms_bytes["classifier_values"] / 3


def test_dense_baseline_plan_prices_an_l_by_d_adamw_classifier():
    plan = choose_plan(_request(40 * GIB, n_labels=200_000, pins=Pins(classifier="dense", tfidf=False)))
    with_side = choose_plan(_request(40 * GIB, n_labels=200_000, pins=Pins(classifier="dense")))
    # the plain dense baseline is the method's: no TF-IDF side, which a dense plan may still have
    assert with_side.memory.predicted_peak_bytes > with_side.memory.dense_predicted_peak_bytes
    assert with_side.memory.dense_predicted_peak_bytes == plan.memory.dense_predicted_peak_bytes
    c = plan.classifier
    assert (c.kind, c.fan_in, c.value_dtype, c.optimizer) == ("dense", c.in_features, "float32", "adamw")
    assert not plan.rewiring.enabled
    assert plan.memory.predicted_peak_bytes == plan.memory.dense_predicted_peak_bytes
    assert plan.memory.terms_bytes["classifier_values"] == 200_000 * c.in_features * 4
    assert predict(Layout.from_plan(plan)).predicted_peak_bytes == plan.memory.predicted_peak_bytes


def test_dense_baseline_degrades_only_speed_knobs():
    roomy = choose_plan(_request(40 * GIB, n_labels=1_000_000, pins=Pins(classifier="dense")))
    tight = choose_plan(_request(roomy.memory.predicted_peak_bytes - 1, n_labels=1_000_000,
                                 pins=Pins(classifier="dense")))
    assert tight.classifier.kind == "dense" and tight.classifier.value_dtype == "float32"
    assert (tight.model.gradient_checkpointing, -tight.training.micro_batch) > (
        roomy.model.gradient_checkpointing, -roomy.training.micro_batch)


@pytest.mark.parametrize("pin", [{"fan_in": 32}, {"optimizer": "sgd"}, {"value_dtype": "bfloat16"}])
def test_dense_baseline_rejects_sparse_only_pins(pin):
    with pytest.raises(XmcfitError, match="not --classifier dense"):
        _request(40 * GIB, pins=Pins(classifier="dense", **pin))


def test_the_default_batch_is_sized_to_the_training_points():
    from xmcfit.plan.defaults import DEFAULTS

    assert DEFAULTS.batch_for(0) == 128  # unknown data: the method's batch
    assert DEFAULTS.batch_for(1_700_000) == 128
    assert DEFAULTS.batch_for(90_000) == 64
    assert DEFAULTS.batch_for(12_000) == 32 and DEFAULTS.batch_for(500) == 32  # never below 32


def test_plan_on_data_sizes_the_batch_and_says_so_unless_pinned(bow_dir):
    from xmcfit.api import plan

    sized = plan(data=bow_dir, gpu_mem="16G")
    assert sized.inputs.target_batch == 32 and any(r.startswith("batch 32:") for r in sized.reasons)
    pinned = plan(data=bow_dir, gpu_mem="16G", batch=128)
    assert pinned.inputs.target_batch == 128 and not any(r.startswith("batch ") for r in pinned.reasons)


def _checkpointing_is_slow(layout: Layout) -> float:
    """Step seconds of a made-up device where recomputing the encoder costs half a step more than any
    accumulation: the tie-break must then trade checkpointing for a smaller micro-batch where that fits."""
    return 1.0 + 0.5 * layout.gradient_checkpointing + 0.01 * layout.grad_accum


def test_ties_between_speed_moves_go_to_the_faster_by_the_time_model():
    request = _request(4 * GIB, n_labels=1000, encoder=BERT)
    first = choose_plan(request)
    assert first.model.gradient_checkpointing and first.training.micro_batch == 128
    faster = choose_plan(request, _checkpointing_is_slow)
    assert not faster.model.gradient_checkpointing and faster.training.micro_batch < 128
    assert faster.effective_batch == first.effective_batch == 128
    assert faster.memory.predicted_peak_bytes <= request.budget_bytes
    assert (faster.classifier.fan_in, faster.classifier.optimizer) == (first.classifier.fan_in, first.classifier.optimizer)
    assert any(r.startswith(f"checkpointing off, micro-batch {faster.training.micro_batch}: of the speed moves that "
                            "fit, the fastest by the time model") for r in faster.reasons)


def test_the_time_tie_break_keeps_pins_and_the_first_fit_when_no_move_is_faster():
    request = _request(4 * GIB, n_labels=1000, encoder=BERT)
    assert choose_plan(request, lambda layout: 1.0) == choose_plan(request)
    pinned = _request(4 * GIB, n_labels=1000, encoder=BERT, pins=Pins(gradient_checkpointing=True))
    plan = choose_plan(pinned, _checkpointing_is_slow)
    assert plan.model.gradient_checkpointing and plan.training.micro_batch == 128


def _bow(features: int = 20_000, h: int = 512) -> EncoderSpec:
    return EncoderSpec(name="bow", kind="bow", n_params=features * h + h, hidden_size=h, n_layers=0, n_heads=0,
                       intermediate_size=0, vocab_size=features, max_seq_len=0)


def test_bag_of_words_starts_at_fan_in_32_with_the_intermediate_layer_and_text_keeps_dense():
    """Measured (bench/RESULTS.md): beside the TF-IDF side, on every bag-of-words set fan-in 32 + the 4096-wide
    layer is level with dense or above, so bag-of-words input never gets the dense rung; text does where it fits."""
    def knobs(plan):
        c = plan.classifier
        return c.kind, c.fan_in, plan.model.intermediate_dim, c.value_dtype, c.optimizer

    bow = dict(n_labels=52_946, encoder=_bow(), seq_len=0)
    roomy = choose_plan(PlanRequest(budget_bytes=80 * GIB, **bow))
    assert knobs(roomy) == ("sparse", 32, 4096, "float32", "adamw")
    assert any(r.startswith("fan-in 32: where bag-of-words input starts") for r in roomy.reasons)
    assert knobs(choose_plan(PlanRequest(budget_bytes=80 * GIB, pins=Pins(classifier="sparse"), **bow))) == knobs(roomy)
    assert knobs(choose_plan(PlanRequest(budget_bytes=80 * GIB, pins=Pins(fan_in=256), **bow)))[1:3] == (256, 0)
    assert knobs(choose_plan(PlanRequest(budget_bytes=80 * GIB, pins=Pins(intermediate_dim=0), **bow)))[0] == "dense"
    assert knobs(choose_plan(PlanRequest(budget_bytes=80 * GIB, pins=Pins(classifier="dense"), **bow)))[0] == "dense"
    # without the TF-IDF side fan-in 32 was never measured level with dense (citeulike-t collapsed)
    assert knobs(choose_plan(PlanRequest(budget_bytes=80 * GIB, pins=Pins(tfidf=False), **bow)))[0] == "dense"
    # a tight budget walks on from the start: never back up the ladder, never to dense
    tight = choose_plan(PlanRequest(budget_bytes=roomy.memory.predicted_peak_bytes - 1, **bow))
    assert tight.classifier.kind == "sparse" and tight.classifier.fan_in <= 32
    assert choose_plan(_request(80 * GIB, n_labels=52_946)).classifier.kind == "dense"
