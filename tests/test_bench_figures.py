"""bench/figures.py's data part (the planner sweeps behind the README's figures; drawing is not tested):
every memory term has a family in the stacked figure, the bars add up to the plan's peak, and the plan
beats the plain dense baseline where the dense one no longer fits."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from xmcfit.plan import phases

BENCH = Path(__file__).resolve().parents[1] / "bench"
GIB = 2**30


@pytest.fixture(scope="module")
def figures():
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("bench_figures", BENCH / "figures.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # its dataclasses look their module up while the body runs
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("bench_figures", None)
        sys.path.remove(str(BENCH))


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
