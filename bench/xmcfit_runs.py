"""Run xmcfit from benchmark scripts exactly as a user does: `xmcfit plan`, `xmcfit train`, `xmcfit eval
--json`, each in its own process (so a CPU run's peak RSS belongs to that run alone)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from common import REPO_ROOT
from xmcfit.plan.schema import Plan

# Jain et al. defaults, given explicitly so xmcfit's PSP@k uses the same propensities as the peers.
PROPENSITY_FLAGS = ["--propensity-a", "0.55", "--propensity-b", "1.5"]


@dataclass
class Row:
    """One trained and evaluated xmcfit configuration."""

    method: str
    plan: dict
    metrics: dict
    train_s: float
    epochs: int
    memory: dict
    predict_s: float


def xmcfit(*args: str, capture: bool = False) -> str:
    """Run the xmcfit CLI in a fresh process; stop the benchmark with its command line when it fails."""
    cmd = [sys.executable, "-m", "xmcfit.cli", *args]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, text=True, stdout=subprocess.PIPE if capture else None)
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}")
    return proc.stdout or ""


def finished_train_s(run_dir: Path) -> float | None:
    """The training time of a finished earlier run in run_dir (status done and its time recorded), else None."""
    timing = run_dir.with_name(run_dir.name + ".train_s")
    run_json = run_dir / "run.json"
    if not (timing.is_file() and run_json.is_file()) or json.loads(run_json.read_text()).get("status") != "done":
        return None
    return float(timing.read_text())


PLAN_NOTES = ("reasons", "memory", "time", "xmcfit_version")
"""Plan fields that do not change what trains: a reused run's plan may differ from today's in these."""
INPUT_NOTES = ("pinned", "data_path", "train_points")
"""Fields of the plan's inputs that record how it was made: what they changed shows in the other sections."""


def what_trains(plan: dict) -> dict:
    """The plan without PLAN_NOTES and INPUT_NOTES: equal for two plans that train the same model the same way
    (a flag that pins what the planner picks anyway changes nothing). Read through the schema first, so a
    field an older plan lacks compares as the default it loads with."""
    plan = Plan.from_dict(plan).to_dict()
    inputs = {k: v for k, v in plan["inputs"].items() if k not in INPUT_NOTES}
    return {**{k: v for k, v in plan.items() if k not in PLAN_NOTES}, "inputs": inputs}


def set_aside(run_dir: Path) -> Path:
    """Move a finished run that no longer matches its plan, with its plan and timing, to <name>.outdated-N
    (the first N free): its training time is not thrown away by a re-run."""
    n = 1
    while run_dir.with_name(f"{run_dir.name}.outdated-{n}").exists():
        n += 1
    aside = run_dir.with_name(f"{run_dir.name}.outdated-{n}")
    for suffix in ("", ".plan.json", ".train_s"):
        source = run_dir.with_name(run_dir.name + suffix)
        if source.exists():
            source.rename(aside.with_name(aside.name + suffix))
    return aside


def run_config(name: str, data: Path, out: Path, plan_flags: list[str], train_flags: list[str], split: str,
               epochs: int, reuse: bool = False) -> Row:
    """Plan (with `plan_flags`), train and evaluate one configuration under out/<name>. `epochs` is the
    plan's end-to-end epochs unless plan_flags give --epochs themselves. With `reuse`, a run that an earlier
    invocation finished under the same name is evaluated again instead of retrained (its plan is kept) when
    the planner, asked again, writes a plan that trains the same (what_trains); else it is set aside
    (set_aside) and trained again."""
    run_dir, plan_path = out / name, out / f"{name}.plan.json"
    epoch_flags = [] if "--epochs" in plan_flags else ["--epochs", str(epochs)]
    train_s = finished_train_s(run_dir) if reuse else None
    if train_s is not None:
        fresh = out / f"{name}.replan.json"
        xmcfit("plan", "--data", str(data), *epoch_flags, *plan_flags, "-o", str(fresh), capture=True)
        if what_trains(json.loads(fresh.read_text())) != what_trains(json.loads(plan_path.read_text())):
            print(f"{name}: the planner now writes a different plan; the run is set aside in "
                  f"{set_aside(run_dir)} and trained again", flush=True)
            train_s = None
        fresh.unlink()
    if train_s is None:
        if reuse and run_dir.exists():
            print(f"{name}: an unfinished earlier run in {run_dir} is started again", flush=True)
            shutil.rmtree(run_dir)
        xmcfit("plan", "--data", str(data), *epoch_flags, *plan_flags, "-o", str(plan_path))
        started = time.perf_counter()
        xmcfit("train", str(plan_path), "--data", str(data), "--out", str(run_dir), "--log-every", "50",
               *train_flags)
        train_s = time.perf_counter() - started
        run_dir.with_name(name + ".train_s").write_text(f"{train_s:.1f}\n")
    else:
        print(f"{name}: reusing the finished run in {run_dir}", flush=True)
    started = time.perf_counter()
    [result] = json.loads(xmcfit("eval", str(run_dir), "--split", split, "--json", *PROPENSITY_FLAGS, capture=True))
    predict_s = time.perf_counter() - started
    return Row(name, json.loads(plan_path.read_text()), result["metrics"], train_s, epochs,
               json.loads((run_dir / "memory.json").read_text()), predict_s)


def run_seeds(name: str, data: Path, out: Path, plan_flags: list[str], train_flags: list[str], split: str,
              epochs: int, seeds: list[int], reuse: bool = False) -> list[Row]:
    """run_config once per seed (`--seed S` in the plan), under out/<name>-s<S>."""
    return [run_config(f"{name}-s{seed}", data, out, [*plan_flags, "--seed", str(seed)], train_flags, split, epochs,
                       reuse) for seed in seeds]


def mean_sd(rows: list[Row], metric: str) -> tuple[float, float]:
    """Mean and (population) standard deviation of `metric` over the rows, in %."""
    values = [100 * r.metrics[metric] for r in rows]
    mean = sum(values) / len(values)
    return mean, (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5


def describe(plan: dict) -> str:
    """The classifier in a few words: dense L x d, or fan-in k of d (+ intermediate layer)."""
    c = plan["classifier"]
    if c["kind"] == "dense":
        return f"dense {c['n_labels']}x{c['in_features']}"
    inter = plan["model"]["intermediate_dim"]
    return f"fan-in {c['fan_in']}/{c['in_features']}" + (f" (+{inter} intermediate)" if inter else "")


def describe_recipe(plan: dict) -> str:
    """The training schedule in a few words: probe and end-to-end epochs, learning rates."""
    t, c = plan["training"], plan["classifier"]
    probe = t.get("probe_epochs", 0)
    phases = (f"{probe} probe + {t['epochs']} end-to-end epochs" if probe and t["epochs"] else
              f"{probe} epochs on frozen features" if probe else f"{t['epochs']} epochs")
    return f"{phases}, encoder lr {t['encoder_lr']:g}, {c['optimizer']} lr {c['lr']:g}"
