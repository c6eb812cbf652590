"""Issue 20: the time model's structure (no timing assertions), CPU calibration and its cache, the time fields
of `xmcfit plan`, thread selection, and the step-time file a training run writes."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from cli_checks import one_error_line
from xmcfit.cli import app
from xmcfit.plan.memory import Layout
from xmcfit.plan.schema import Plan
from xmcfit.plan.time_model import (PHASES, DeviceRates, Workload, predict_time, step_work)
from xmcfit.plan.profiles import gpu_rates, load_encoder, load_gpu, profile_names
from xmcfit.threads import LoadWatch, busy_note, intra_op_threads, share_of_cores, threads_when_busy

runner = CliRunner()
RATES = DeviceRates(name="test cpu", kind="cpu", matmul_16bit_flops_per_s=2e11, matmul_fp32_flops_per_s=1e11,
                    memory_bytes_per_s=2.5e10, gather_bytes_per_s=1e11, op_overhead_s=3e-6)
WORK = Workload(n_train_points=10_000)


def _layout(**changes) -> Layout:
    base = Layout(encoder=load_encoder("all-MiniLM-L6-v2").to_spec(), seq_len=32, precision="fp32",
                  gradient_checkpointing=False, micro_batch=32, grad_accum=1, pooling="mean", intermediate_dim=0,
                  classifier_kind="sparse", n_labels=50_000, fan_in=64, value_dtype="float32", optimizer="adamw",
                  weight_decay=1e-4, update_rounding="none", loss_chunk_size=8192, bias=True, aux_enabled=False,
                  n_clusters=1, rewiring_enabled=True, rewiring_chunk_rows=4096, device="cpu")
    return replace(base, **changes)


def _step_s(layout: Layout, rates: DeviceRates = RATES) -> float:
    return predict_time(layout, rates, WORK, epochs=1).step_seconds


def test_checkpointing_adds_one_encoder_forward():
    plain, ckpt = step_work(_layout()).phases, step_work(_layout(gradient_checkpointing=True)).phases
    assert plain["encoder_recompute"].flops == 0
    assert ckpt["encoder_recompute"] == ckpt["encoder_forward"] == plain["encoder_forward"]
    assert _step_s(_layout(gradient_checkpointing=True)) > _step_s(_layout())


def test_fixed_fan_in_does_fewer_flops_than_dense():
    def classifier_flops(layout: Layout) -> float:
        phases = step_work(layout).phases
        return phases["classifier_forward"].flops + phases["classifier_backward"].flops

    sparse = _layout(fan_in=32, device="cuda")
    dense = sparse.as_dense()
    assert classifier_flops(sparse) * 384 / 32 == pytest.approx(classifier_flops(dense))  # the same products, k of d
    on_cpu = replace(sparse, device="cpu")
    assert classifier_flops(on_cpu) < classifier_flops(replace(dense, device="cpu"))


@pytest.mark.parametrize("knob", ["n_labels", "fan_in", "micro_batch", "seq_len"])
def test_more_of_anything_takes_more_time(knob):
    small = _layout()
    bigger = replace(small, **{knob: getattr(small, knob) * 2})
    assert _step_s(bigger) > _step_s(small)


def test_phases_sum_to_the_step_and_the_dominant_phase_is_the_largest():
    est = predict_time(_layout(aux_enabled=True, n_clusters=64, intermediate_dim=1024), RATES, WORK, epochs=3)
    assert tuple(est.phase_seconds) == PHASES
    assert sum(est.phase_seconds.values()) == pytest.approx(est.step_seconds)
    assert est.phase_seconds[est.dominant_phase] == max(est.phase_seconds.values())
    assert est.steps_per_epoch == -(-10_000 // 32) and est.run_seconds == pytest.approx(3 * est.epoch_seconds)


def test_label_shards_add_communication_and_split_the_classifier():
    one = step_work(_layout(tfidf_n_words=0)).phases
    two = step_work(_layout(n_devices=2)).phases
    assert one["communication"].sent_bytes == 0 and two["communication"].sent_bytes > 0
    assert two["classifier_forward"].flops == pytest.approx(one["classifier_forward"].flops, rel=1e-3)  # L/2 rows, 2x batch


def test_rewiring_is_amortised_over_its_interval():
    often = step_work(_layout(), rewiring_interval_steps=100).phases["rewiring"].stream_bytes
    rarely = step_work(_layout(), rewiring_interval_steps=1000).phases["rewiring"].stream_bytes
    assert often == pytest.approx(10 * rarely) and step_work(_layout(rewiring_enabled=False)).phases["rewiring"].n_ops == 0


def test_every_gpu_profile_has_datasheet_rates_and_a_faster_gpu_is_faster():
    for name in profile_names("gpus"):
        assert gpu_rates(load_gpu(name)) is not None, name
    layout = replace(_layout(precision="bf16_amp"), device="cuda")
    assert _step_s(layout, gpu_rates(load_gpu("H100-80G"))) < _step_s(layout, gpu_rates(load_gpu("T4-16G")))


# -- xmcfit plan -------------------------------------------------------------------------------------------


def test_all_gpus_shows_hours_per_epoch_for_every_profile_and_a_cost_given_a_price():
    result = runner.invoke(app, ["plan", "--labels", "3000000", "--all-gpus", "--json",
                                 "--price-per-hour", "H100-80G=2.5"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert {r["gpu"] for r in rows} == set(profile_names("gpus"))
    for row in rows:
        if row["fits"]:
            assert row["predicted_epoch_hours"] > 0 and row["plan"]["time"]["dominant_phase"] in PHASES
    h100 = next(r for r in rows if r["gpu"] == "H100-80G")
    assert h100["predicted_run_usd"] == pytest.approx(h100["predicted_run_hours"] * 2.5)
    shown = runner.invoke(app, ["plan", "--labels", "3000000", "--all-gpus"]).stdout
    assert "h/epoch" in shown and "one per label" in shown


def test_plan_json_carries_the_time_section_and_loads_back(tmp_path):
    result = runner.invoke(app, ["plan", "--labels", "100000", "--gpu", "A100-80G", "--train-points", "50000",
                                 "--epochs", "3", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    time = data["time"]
    assert time["n_train_points"] == 50000 and time["assumed"] == []
    assert time["epoch_seconds"] == pytest.approx(time["step_seconds"] * time["steps_per_epoch"])
    path = tmp_path / "plan.json"
    path.write_text(result.stdout)
    assert Plan.from_json(path).time.step_seconds == time["step_seconds"]


def test_a_plan_without_a_profile_has_no_time_and_says_why():
    result = runner.invoke(app, ["plan", "--labels", "1000", "--gpu-mem", "8G", "--json"])
    assert json.loads(result.stdout)["time"] is None
    assert "No time prediction" in runner.invoke(app, ["plan", "--labels", "1000", "--gpu-mem", "8G"]).stdout


def test_threads_without_the_cpu_device_is_one_error_line():
    assert "--device cpu" in one_error_line(runner.invoke(app, ["plan", "--labels", "1000", "--gpu", "T4-16G",
                                                                "--threads", "2"]))


@pytest.mark.parametrize("price", ["H100-80G", "H100-80G=cheap", "H100-80G=-1", "NoSuchGPU=2"])
def test_a_bad_price_is_one_error_line(price):
    line = one_error_line(runner.invoke(app, ["plan", "--labels", "1000", "--all-gpus", "--price-per-hour", price]))
    assert "--price-per-hour" in line


# -- calibration -------------------------------------------------------------------------------------------


def test_calibrate_writes_the_cache_and_plan_reuses_it(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    line = one_error_line(runner.invoke(app, ["plan", "--labels", "1000", "--gpu-mem", "8G", "--device", "cpu",
                                              "--threads", "1"]))
    assert "xmcfit calibrate --threads 1" in line
    result = runner.invoke(app, ["calibrate", "--threads", "1", "--seconds", "0.1", "--json"])
    assert result.exit_code == 0, result.output
    measured = json.loads(result.stdout)
    assert (tmp_path / "xmcfit" / "cpu_rates.json").is_file() and measured["rates"]["matmul_fp32_flops_per_s"] > 0
    planned = runner.invoke(app, ["plan", "--labels", "1000", "--gpu-mem", "8G", "--device", "cpu", "--threads", "1",
                                  "--json"])
    assert planned.exit_code == 0, planned.output
    assert json.loads(planned.stdout)["time"]["device"] == measured["rates"]["name"]


def test_a_corrupt_cache_is_ignored_and_rewritten(tmp_path):
    from xmcfit.calibrate import cached_calibration, calibrate_cpu, save_calibration

    path = tmp_path / "cpu_rates.json"
    path.write_text("{not json")
    assert cached_calibration(1, path) is None
    calibration = calibrate_cpu(1, 0.05)
    save_calibration(calibration, path)
    assert cached_calibration(1, path) == calibration


# -- threads -----------------------------------------------------------------------------------------------


def test_threads_come_from_the_flag_then_omp_then_a_share_of_the_allowed_cores():
    assert intra_op_threads(8, requested=3, env={"OMP_NUM_THREADS": "2"}) == 3
    assert intra_op_threads(8, env={"OMP_NUM_THREADS": "2"}) == 2
    assert intra_op_threads(8, env={}) == 8
    assert intra_op_threads(8, env={"LOCAL_WORLD_SIZE": "4"}) == 2
    assert intra_op_threads(2, env={"LOCAL_WORLD_SIZE": "4", "OMP_NUM_THREADS": "zero"}) == 1
    assert share_of_cores(2, 2) == 1 and share_of_cores(1, 3) == 1


def test_a_machine_with_more_runnable_threads_than_cpus_is_busy():
    assert busy_note(2.2, 2) == "" and "load 3.9 on 2 CPUs" in busy_note(3.9, 2)


def test_a_busy_run_gives_threads_back_in_proportion_and_never_takes_more():
    assert threads_when_busy(2, 4.0, 2) == 1 and threads_when_busy(8, 16.0, 8) == 4
    assert threads_when_busy(2, 2.3, 2) == 2 and threads_when_busy(1, 9.0, 2) == 1
    watch = LoadWatch(n_cpus=2, threads=2, every_s=0.0)
    watch.check(0.0)
    assert 1 <= watch.threads <= 2


# -- the step-time file ------------------------------------------------------------------------------------


def test_training_writes_measured_step_times_beside_the_prediction(text_run):
    report = json.loads((text_run / "step_time.json").read_text())
    assert report["device"] == "cpu" and report["threads"] >= 1
    assert report["n_steps_timed"] + report["warmup_steps_dropped"] == 15
    assert 0 < report["measured_p10_s"] <= report["measured_median_s"] <= report["measured_p90_s"]
    # without a calibration of this CPU the prediction is absent and the file says how to get one
    assert (report["predicted_step_s"] is None) == ("xmcfit calibrate" in report["rates"])
    assert (report["predicted_run_s"] is None) == (report["predicted_step_s"] is None)
    # the whole loop ran in one piece: its wall time is at least the timed steps' and the error follows
    assert report["measured_run_s"] >= report["measured_median_s"] * report["n_steps_timed"]
    if report["predicted_run_s"] is not None:
        assert report["run_error_pct"] == pytest.approx(
            100 * (report["predicted_run_s"] - report["measured_run_s"]) / report["measured_run_s"])


def test_the_load_watch_reads_the_runnable_threads_now_not_the_lagging_average(monkeypatch):
    import xmcfit.threads as threads

    now = threads.runnable_threads()
    assert now is not None and now >= 0.0  # Linux: /proc/stat procs_running, less the reading thread
    monkeypatch.setattr(threads, "runnable_threads", lambda: 4.0)  # a second 2-thread run beside this one
    watch = threads.LoadWatch(n_cpus=2, threads=2)
    assert "machine busy: load 4.0 on 2 CPUs; threads 2 -> 1" == watch.check(0.0) and watch.threads == 1
    monkeypatch.setattr(threads, "runnable_threads", lambda: 0.0)
    assert watch.check(10.0) == "" and watch.threads == 1  # threads given back are not taken again
