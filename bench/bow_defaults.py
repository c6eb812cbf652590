"""The bag-of-words datasets with the planner's defaults, as a user runs them: `xmcfit plan --data D
--gpu-mem 16G --epochs 10` and nothing else pinned (the "planner" row: fan-in 32 with the 4096-wide
intermediate layer, where bag-of-words input starts), beside the dense baseline (`--classifier dense`) and
the memory move a smaller GPU would force next, `--classifier-optimizer sgd_momentum`. Not in the default
--configs: `--classifier-dtype bfloat16` (the pure-bf16 rung), `--classifier sparse` (on bag-of-words input
the same plan as the planner's), `--fan-in 32` (the same again, pinned) and `--fan-in 256` (the ladder's
top, which was the sparse start before fan-in 32 was).
Each over several seeds, through the CLI (xmcfit_runs).

    python bench/bow_defaults.py [--datasets Bibtex,Delicious,citeulike-t] [--configs planner,dense,sgd,...]
                                 [--seeds 0,1,2] [--epochs 10] [--data-root DIR] [--out DIR] [--reuse]

Bibtex and Delicious report on test, citeulike-t on dev (its test split is kept for final checks).
Prints one table (mean +- standard deviation of P@k and PSP@k over the seeds, training seconds), then
`SUMMARY ...` last: each row's mean P@1, each fp32 AdamW row over dense, SGD over the planner's (AdamW) and
bf16 over the planner's (fp32).
Exits 0 with a message when the data is absent.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from common import REPO_ROOT, SHARED_DATA
from xmcfit_runs import Row, describe, describe_recipe, mean_sd, run_seeds

SPLITS = {"Bibtex": "test", "Delicious": "test", "citeulike-t": "dev"}
CONFIGS = {
    "planner": [],
    "dense": ["--classifier", "dense"],
    "sgd": ["--classifier-optimizer", "sgd_momentum"],
    "bf16": ["--classifier-dtype", "bfloat16"],
    "sparse": ["--classifier", "sparse"],
    "fanin32": ["--fan-in", "32"],
    "fanin256": ["--fan-in", "256"],
}
COLUMNS = ("P@1", "P@3", "P@5", "PSP@1", "PSP@5")


def table(dataset: str, results: dict[str, list[Row]]) -> str:
    lines = [f"{dataset} ({SPLITS[dataset]})", "", f"| config | classifier | recipe | {' | '.join(COLUMNS)} | train s |",
             "| --- | --- | --- |" + " ---: |" * (len(COLUMNS) + 1)]
    for name, rows in results.items():
        cells = [f"{mean_sd(rows, c)[0]:.2f} ± {mean_sd(rows, c)[1]:.2f}" for c in COLUMNS]
        plan = rows[0].plan
        batch = plan["inputs"]["target_batch"]
        recipe = f"{plan['precision']}, batch {batch}, {describe_recipe(plan)}"
        lines.append(f"| {name} | {describe(plan)} | {recipe} | {' | '.join(cells)} | "
                     f"{sum(r.train_s for r in rows) / len(rows):.0f} |")
    return "\n".join(lines)


def summary(all_results: dict[str, dict[str, list[Row]]]) -> str:
    parts = []
    for dataset, results in all_results.items():
        p1 = {name: mean_sd(rows, "P@1")[0] for name, rows in results.items()}
        parts += [f"{dataset}.{name}_p1={v:.2f}" for name, v in p1.items()]
        if "dense" in p1:
            parts += [f"{dataset}.{name}_over_dense={v / p1['dense']:.3f}" for name, v in p1.items()
                      if name not in ("dense", "sgd", "bf16")]
        if "planner" in p1 and "sgd" in p1:
            parts.append(f"{dataset}.sgd_over_adamw={p1['sgd'] / p1['planner']:.3f}")
        if "planner" in p1 and "bf16" in p1:
            parts.append(f"{dataset}.bf16_over_fp32={p1['bf16'] / p1['planner']:.3f}")
    return "SUMMARY " + " ".join(parts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=str(SHARED_DATA))
    parser.add_argument("--datasets", default="Bibtex,Delicious")
    parser.add_argument("--configs", default="planner,dense,sgd")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", default=str(REPO_ROOT / "runs" / "bow_defaults"))
    parser.add_argument("--reuse", action="store_true", help="Evaluate finished runs under --out again.")
    args = parser.parse_args(argv)
    root = Path(args.data_root)
    datasets = [d for d in args.datasets.split(",") if d]
    configs = [c for c in args.configs.split(",") if c]
    for name, known in (("--datasets", (datasets, SPLITS)), ("--configs", (configs, CONFIGS))):
        unknown = [v for v in known[0] if v not in known[1]]
        if unknown:
            parser.error(f"{name}: unknown {unknown[0]!r}; known: {', '.join(known[1])}")
    missing = [d for d in datasets if not (root / d).is_dir()]
    if missing:
        print(f"skipped: no {', '.join(missing)} under {root} (pass --data-root DIR)")
        return
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    seeds = [int(s) for s in args.seeds.split(",") if s]
    all_results: dict[str, dict[str, list[Row]]] = {}
    for dataset in datasets:
        out = Path(args.out) / dataset
        out.mkdir(parents=True, exist_ok=True)
        results = all_results.setdefault(dataset, {})
        for name in configs:
            flags = ["--gpu-mem", "16G", *CONFIGS[name]]
            results[name] = run_seeds(name, root / dataset, out, flags, [], SPLITS[dataset], args.epochs, seeds,
                                      args.reuse)
            print(f"{dataset} {name}: P@1 {mean_sd(results[name], 'P@1')[0]:.2f}", flush=True)
        print(table(dataset, results), flush=True)
    print(summary(all_results))


if __name__ == "__main__":
    sys.exit(main())
