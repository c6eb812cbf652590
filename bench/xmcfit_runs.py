"""Run xmcfit from benchmark scripts exactly as a user does: `xmcfit plan`, `xmcfit train`, `xmcfit eval
--json`, each in its own process (so a CPU run's peak RSS belongs to that run alone)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
GIB = 2**30
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


def run_config(name: str, data: Path, out: Path, plan_flags: list[str], train_flags: list[str], split: str,
               epochs: int) -> Row:
    """Plan (with `plan_flags`), train and evaluate one configuration under out/<name>."""
    run_dir, plan_path = out / name, out / f"{name}.plan.json"
    xmcfit("plan", "--data", str(data), "--epochs", str(epochs), *plan_flags, "-o", str(plan_path))
    started = time.perf_counter()
    xmcfit("train", str(plan_path), "--data", str(data), "--out", str(run_dir), "--log-every", "50", *train_flags)
    train_s = time.perf_counter() - started
    started = time.perf_counter()
    [result] = json.loads(xmcfit("eval", str(run_dir), "--split", split, "--json", *PROPENSITY_FLAGS, capture=True))
    predict_s = time.perf_counter() - started
    return Row(name, json.loads(plan_path.read_text()), result["metrics"], train_s, epochs,
               json.loads((run_dir / "memory.json").read_text()), predict_s)


def describe(plan: dict) -> str:
    """The classifier in a few words: dense L x d, or fan-in k of d (+ intermediate layer)."""
    c = plan["classifier"]
    if c["kind"] == "dense":
        return f"dense {c['n_labels']}x{c['in_features']}"
    inter = plan["model"]["intermediate_dim"]
    return f"fan-in {c['fan_in']}/{c['in_features']}" + (f" (+{inter} intermediate)" if inter else "")
