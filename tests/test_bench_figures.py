"""bench/figures.py's data part (the planner sweeps behind the README's figures; drawing is not tested):
every memory term has a family in the stacked figure, the bars add up to the plan's peak, and the plan
beats the plain dense baseline where the dense one no longer fits."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from xmcfit.plan import phases

BENCH = Path(__file__).resolve().parents[1] / "bench"
GIB = 2**30


def _bench_module(name: str, file: str):
    """A bench/ script imported as a module (bench/ on sys.path while it is in use), then dropped again."""
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(name, BENCH / file)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # its dataclasses look their module up while the body runs
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(name, None)
        sys.path.remove(str(BENCH))


@pytest.fixture(scope="module")
def figures():
    yield from _bench_module("bench_figures", "figures.py")


def test_every_memory_term_is_in_exactly_one_family(figures):
    every_term = set(phases.RESIDENT + phases.BACKWARD + phases.STEP + phases.REWIRING + phases.RESERVES)
    grouped = [t for terms in figures.TERM_GROUPS.values() for t in terms]
    assert sorted(grouped) == sorted(set(grouped)), "a term in two families"
    assert set(grouped) == every_term


def test_fan_in_bars_add_up_to_the_plans_peak_and_skip_what_does_not_fit(figures):
    points = figures.fan_in_sweep(3_000_000, (32, 128, 1024), "16G")
    assert [p.fan_in for p in points] == [32, 128]  # fan-in 1024 fits nowhere in 16 GiB
    for p in points:
        assert sum(p.group_bytes.values()) == p.peak_bytes <= 16 * GIB
    assert points[0].peak_bytes < points[1].peak_bytes


def test_labels_sweep_plans_sparse_under_budget_where_dense_is_over(figures):
    small, large = figures.labels_sweep([10_000, 3_000_000], "16G")
    assert small.kind == "dense" and small.peak_bytes < 16 * GIB
    assert large.kind == "sparse" and large.peak_bytes <= 16 * GIB < large.dense_peak_bytes


@pytest.fixture(scope="module")
def runs():
    yield from _bench_module("bench_xmcfit_runs", "xmcfit_runs.py")


def test_a_reused_run_is_kept_only_while_its_plan_trains_the_same(runs, tmp_path):
    """bench --reuse: a pin the planner picks anyway, or a record of how the plan was made, keeps the run; a
    knob that trains differently sets it aside (never deleted)."""
    from xmcfit.plan.chooser import Pins, PlanRequest, choose_plan
    from xmcfit.plan.profiles import load_encoder

    def plan(**pins) -> dict:  # as plan.json holds it
        return json.loads(choose_plan(PlanRequest(n_labels=5000, budget_bytes=16 * GIB, encoder=enc, seq_len=32,
                                                  pins=Pins(**pins))).to_json())

    enc = load_encoder("all-MiniLM-L6-v2").to_spec()
    plain = plan()
    pinned, other = plan(encoder_lr=plain["training"]["encoder_lr"]), plan(encoder_lr=3e-4)
    recorded = {**plain, "inputs": {**plain["inputs"], "train_points": 1234}}
    assert pinned["inputs"]["pinned"] != plain["inputs"]["pinned"]
    assert runs.what_trains(pinned) == runs.what_trains(plain) == runs.what_trains(recorded)
    assert runs.what_trains(other) != runs.what_trains(plain)
    run = tmp_path / "cfg-s0"
    run.mkdir()
    (tmp_path / "cfg-s0.train_s").write_text("12.0\n")
    (tmp_path / "cfg-s0.outdated-1").mkdir()
    aside = runs.set_aside(run)
    assert aside.name == "cfg-s0.outdated-2" and aside.is_dir() and not run.exists()
    assert (tmp_path / "cfg-s0.outdated-2.train_s").read_text() == "12.0\n"
