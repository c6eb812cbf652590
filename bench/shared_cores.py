"""Two `xmcfit train` runs started together: does each keep at least 40 % of its alone-throughput? (issue 20)

On the development machine two trainings once slowed each other 18-fold (2 + 2 compute threads spin-waiting
on 2 cores). xmcfit now picks its threads (xmcfit.threads): a share of the cores it may use, fewer when the
load shows another run. This script measures, on the cores it is given (taskset), the median step time of:

  alone        one run, threads as xmcfit picks them
  together     two runs started at once, threads as xmcfit picks them
  inherited    two runs at once, each started with as many threads as the machine has CPUs (OMP_NUM_THREADS =
               os.cpu_count(), what torch's default gave them before), for contrast; xmcfit's load watch
               still lowers them once the load shows the contention

Each run is `xmcfit train PLAN --data DATA --max-steps N --log-every 1 --device cpu` in its own process; the
step times come from train_log.jsonl (step_seconds), the first WARMUP_STEPS dropped.

    taskset -c 1 python bench/shared_cores.py [--steps 60] [--data ../shared/data/citeulike-t]

Prints a table, then `SUMMARY cores=.. alone_s=.. together_keep_pct=.. inherited_keep_pct=..` last.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import REPO_ROOT

WARMUP_STEPS = 5


def _xmcfit(*args: str) -> list[str]:
    return [sys.executable, "-m", "xmcfit", *args]


def _env(threads: int | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def _median_step_s(run_dir: Path) -> float:
    records = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines() if line.strip()]
    seconds = [r["step_seconds"] for r in records[WARMUP_STEPS:]] or [r["step_seconds"] for r in records]
    return statistics.median(seconds)


def _train_together(plan: Path, data: str, work: Path, name: str, n_runs: int, steps: int,
                    threads: int | None) -> list[float]:
    """Start `n_runs` trainings at once; each one's median step seconds."""
    dirs = [work / f"{name}-{i}" for i in range(n_runs)]
    procs = [subprocess.Popen(_xmcfit("train", str(plan), "--data", data, "--out", str(d), "--max-steps", str(steps),
                                      "--log-every", "1", "--device", "cpu", "--save-every-minutes", "0"),
                              env=_env(threads), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for d in dirs]
    for proc in procs:
        proc.wait()
    return [_median_step_s(d) for d in dirs]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO_ROOT.parent / "shared" / "data" / "citeulike-t"))
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args(argv)
    if not Path(args.data).exists():
        print(f"no data at {args.data}: nothing to measure")
        return 0
    cores = len(os.sched_getaffinity(0))
    work = Path(tempfile.mkdtemp(prefix="xmcfit-shared-cores-"))
    plan = work / "plan.json"
    subprocess.run(_xmcfit("plan", "--data", args.data, "--gpu-mem", "16G", "--precision", "fp32", "--fan-in", "64",
                           "--batch", "64", "--micro-batch", "64", "--no-tfidf", "-o", str(plan), "--json"),
                   env=_env(None), stdout=subprocess.DEVNULL, check=True)
    machine_cpus = os.cpu_count() or 1
    try:
        [alone] = _train_together(plan, args.data, work, "alone", 1, args.steps, None)
        together = _train_together(plan, args.data, work, "together", 2, args.steps, None)
        inherited = _train_together(plan, args.data, work, "inherited", 2, args.steps, machine_cpus)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    keep = [100 * alone / s for s in together]
    keep_inherited = [100 * alone / s for s in inherited]
    print(f"cores {cores} ({os.sched_getaffinity(0)}), {args.steps} steps per run, data {args.data}")
    print("| runs | threads | median s/step per run | throughput kept % |")
    print("|---|---|---|---|")
    print(f"| alone | xmcfit's choice | {alone:.3f} | 100 |")
    print(f"| two together | xmcfit's choice | {' / '.join(f'{s:.3f}' for s in together)} | "
          f"{' / '.join(f'{k:.0f}' for k in keep)} |")
    print(f"| two together | {machine_cpus} each at the start (inherited) | {' / '.join(f'{s:.3f}' for s in inherited)} | "
          f"{' / '.join(f'{k:.0f}' for k in keep_inherited)} |")
    print(f"SUMMARY cores={cores} alone_s={alone:.3f} together_keep_pct={min(keep):.0f} "
          f"inherited_keep_pct={min(keep_inherited):.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
