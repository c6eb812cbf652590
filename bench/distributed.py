"""Label-sharded training against one process: the same plan (effective batch, seed, epochs) trained by one
process and by `torchrun --nproc-per-node N` with the classifier split by labels, evaluated alike.

    python bench/distributed.py [--data ../shared/data/Bibtex] [--nproc 2] [--epochs 10] [--seed 0]
                                [--batch 64] [--out runs/bench-distributed] [--reuse]

Both plans come from `xmcfit plan --data DIR --classifier sparse --precision fp32 --gpu-mem 8G` (the
recipe of bench/peers.py's bag-of-words rows), the second with `--devices N`: micro-batch / N per process,
so both walk the same shuffled batches. Prints a table, then one SUMMARY line. `--reuse` evaluates a run
that an earlier invocation (or the same commands typed by hand) finished under --out instead of training it
again; its time is then the one recorded in <run>.train_s, if any.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import REPO_ROOT, SHARED_DATA
from xmcfit_runs import PROPENSITY_FLAGS, xmcfit


def train(plan: Path, data: Path, run_dir: Path, nproc: int) -> float:
    """Train `plan` in one process, or in `nproc` under torchrun (the command a user types); seconds."""
    args = ["train", str(plan), "--data", str(data), "--out", str(run_dir), "--device", "cpu", "--log-every", "50"]
    if nproc == 1:
        cmd = [sys.executable, "-m", "xmcfit", *args]
    else:  # the torchrun script next to this interpreter
        cmd = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc-per-node", str(nproc),
               "-m", "xmcfit", *args]
    # each process its share of the cores, unless OMP_NUM_THREADS says otherwise (a machine busy with other work)
    env = {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // nproc)), **os.environ}
    started = time.perf_counter()
    if subprocess.run(cmd, cwd=REPO_ROOT, env=env).returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}")
    return time.perf_counter() - started


def _train_or_reuse(flags: list[str], plan: Path, data: Path, run_dir: Path, nproc: int, reuse: bool) -> float | None:
    """Plan and train `run_dir` (seconds, also written to <run_dir>.train_s), or with `reuse` take the finished
    run there as it is (the seconds recorded, None if none were)."""
    seconds_file = run_dir.with_suffix(".train_s")
    if reuse and (run_dir / "model.safetensors").exists():
        return float(seconds_file.read_text()) if seconds_file.exists() else None
    xmcfit("plan", *flags, "--devices", str(nproc), "-o", str(plan))
    seconds = train(plan, data, run_dir, nproc)
    seconds_file.write_text(f"{seconds:.1f}\n")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(SHARED_DATA / "Bibtex"))
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=64, help="Effective batch of both runs.")
    parser.add_argument("--out", default="runs/bench-distributed")
    parser.add_argument("--reuse", action="store_true", help="Evaluate finished runs under --out as they are.")
    args = parser.parse_args()
    data, out = Path(args.data), Path(args.out)
    if not data.exists():
        sys.exit(f"{data}: no such dataset")
    out.mkdir(parents=True, exist_ok=True)
    flags = ["--data", str(data), "--classifier", "sparse", "--precision", "fp32", "--gpu-mem", "8G",
             "--batch", str(args.batch), "--epochs", str(args.epochs), "--seed", str(args.seed)]
    rows = []
    for nproc in (1, args.nproc):
        name = f"{nproc}proc-s{args.seed}"
        plan = out / f"{name}.plan.json"
        seconds = _train_or_reuse(flags, plan, data, out / name, nproc, args.reuse)
        [result] = json.loads(xmcfit("eval", str(out / name), "--split", "test", "--json", *PROPENSITY_FLAGS,
                                     capture=True))
        p = json.loads(plan.read_text())
        memory = json.loads((out / name / "memory.json").read_text())
        rows.append((nproc, p, result["metrics"], seconds, memory))
    print(f"{data.name}, test split, {args.epochs} epochs, seed {args.seed}, effective batch {args.batch} (metrics in %)")
    print(f"{'processes':>9} {'micro x accum x dev':>19} {'classifier B/rank':>17} {'P@1':>6} {'P@3':>6} {'P@5':>6} "
          f"{'PSP@1':>6} {'train s':>8}")
    for nproc, p, m, seconds, memory in rows:
        t = p["training"]
        batch = f"{t['micro_batch']} x {t['grad_accum']} x {p['n_devices']}"
        train_s = f"{seconds:8.1f}" if seconds is not None else f"{'-':>8}"
        print(f"{nproc:>9} {batch:>19} {memory['measured_terms_bytes']['classifier_values']:>17,} "
              f"{100 * m['P@1']:6.2f} {100 * m['P@3']:6.2f} {100 * m['P@5']:6.2f} {100 * m['PSP@1']:6.2f} {train_s}")
    one, many = rows[0][2]["P@1"], rows[1][2]["P@1"]
    print(f"SUMMARY dataset={data.name} p1_1proc={100 * one:.2f} p1_{args.nproc}proc={100 * many:.2f} "
          f"diff={100 * (many - one):+.2f}")


if __name__ == "__main__":
    main()
