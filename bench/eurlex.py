"""EURLEX57K end to end through the CLI: a head on frozen encoder features, end-to-end dense, and the
sparse classifier at the planner's fan-in and at fan-in 32, each over several seeds; trained on train and
reported on dev (the test split is withheld in ../shared/data).

Each configuration runs as a user would run it: `xmcfit plan` (flags below), `xmcfit train` and `xmcfit
eval --json`, each in its own process, so the measured peak memory (CUDA max allocated, or peak RSS on the
CPU) belongs to that run alone. Every row uses the planner's recipe (learning rates, loss, probe epochs,
dropout, rewiring); only the classifier and, for the frozen row, the end-to-end epochs differ:

  planner       nothing pinned: the planner's classifier, precision, batch and TF-IDF side
  frozen        --probe-epochs P+E --epochs 0: the heads (and the TF-IDF side) alone on the pretrained
                encoder's features, for as many epochs as the end-to-end runs make in all
  dense         --classifier dense: linear-probe warm start (P epochs), then E end-to-end epochs
  sparse        --classifier sparse: the fan-in the planner picks for the budget
  sparse-k32    --fan-in 32 (the planner adds its remedy, the intermediate layer)
  encoder-lr-2e-5  --encoder-lr 2e-5: the encoder moved less (a fifth of MiniLM's default), beside the side

    python bench/eurlex.py [--setting cpu|gpu] [--seeds 0,1,2] [--configs planner,frozen,dense,sparse,sparse-k32]
                           [--data-root DIR] [--out DIR] [--epochs E] [--probe-epochs P] [--limit N]
                           [--results-json FILE] [--reuse]

Settings:
  cpu  titles only, 32 tokens, the embedded all-MiniLM-L6-v2, the planner's precision and batch, the first 12,000 of the
       45,000 training documents (--limit 0: all), the planner's probe epochs + 3 end-to-end epochs.
  gpu  title + header + recitals + main body, 256 tokens, all-MiniLM-L6-v2, bf16 AMP, batch 64, 10 epochs,
       the whole training set.

Prints one table (mean +- standard deviation over the seeds of P@k and PSP@k, training time, peak memory),
then `SUMMARY ...` last: each row's mean P@1, end-to-end minus frozen, and each sparse row over dense.
Exits 0 with a message when the data is absent.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from common import GIB, REPO_ROOT, SHARED_DATA
from xmcfit_runs import Row, describe, describe_recipe, mean_sd, run_seeds

COLUMNS = ("P@1", "P@3", "P@5", "nDCG@5", "PSP@1", "PSP@5")

SETTINGS = {
    "cpu": dict(fields=["title"], seq_len=32, epochs=3, gpu_mem="16G", encoder="all-MiniLM-L6-v2", limit=12_000),
    "gpu": dict(fields=["title", "header", "recitals", "main_body"], seq_len=256, precision="bf16_amp", batch=64,
                epochs=10, gpu_mem="16G", encoder="all-MiniLM-L6-v2", limit=0),
}
CONFIGS = {
    "planner": [],
    "frozen": [],
    "dense": ["--classifier", "dense"],
    "sparse": ["--classifier", "sparse"],
    "sparse-k32": ["--fan-in", "32"],
    "encoder-lr-2e-5": ["--encoder-lr", "2e-5"],
}


def planned_probe_epochs(data: Path, plan_common: list[str]) -> int:
    """The probe epochs the planner picks for this setting (the frozen row trains P + E epochs)."""
    from xmcfit_runs import xmcfit

    plan = json.loads(xmcfit("plan", "--data", str(data), *plan_common, "--json", capture=True))
    return int(plan["training"].get("probe_epochs", 0))


def table(results: dict[str, list[Row]], device: str) -> str:
    header = ["run", "classifier", "schedule", *COLUMNS, "train s", "peak GiB"]
    lines = []
    for name, rows in results.items():
        cells = [f"{m:.2f} +- {sd:.2f}" for m, sd in (mean_sd(rows, c) for c in COLUMNS)]
        train_s = sum(r.train_s for r in rows) / len(rows)
        peak = max(r.memory["measured_peak_bytes"] for r in rows) / GIB
        lines.append([name, describe(rows[0].plan), describe_recipe(rows[0].plan), *cells, f"{train_s:.0f}",
                      f"{peak:.2f}"])
    widths = [max(len(x) for x in col) for col in zip(header, *lines)]
    fmt = lambda cells: "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    rule = "-" * len(fmt(header))
    peak_note = ("peak = CUDA max allocated" if device != "cpu" else
                 "peak = process peak RSS (Python, libraries and data included)")
    return "\n".join([f"EURLEX57K dev, metrics in % (mean +- sd over seeds; {peak_note})", rule, fmt(header), rule,
                      *(fmt(line) for line in lines), rule])


def summary(results: dict[str, list[Row]]) -> str:
    p1 = {name: mean_sd(rows, "P@1")[0] for name, rows in results.items()}
    parts = [f"{name}_p1={value:.2f}" for name, value in p1.items()]
    if "dense" in p1 and "frozen" in p1:
        parts.append(f"end_to_end_minus_frozen_p1={p1['dense'] - p1['frozen']:.2f}")
    if "dense" in p1:
        parts += [f"{name}_over_dense_p1={value / p1['dense']:.3f}" for name, value in p1.items()
                  if name.startswith("sparse")]
    return "SUMMARY " + " ".join(parts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="cpu")
    parser.add_argument("--seeds", default="0,1,2", help="Comma-separated seeds; each configuration runs once per seed.")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"Comma-separated subset of {', '.join(CONFIGS)}.")
    parser.add_argument("--data-root", default=str(SHARED_DATA))
    parser.add_argument("--out", default=str(REPO_ROOT / "runs" / "bench-eurlex"))
    parser.add_argument("--epochs", type=int, help="End-to-end epochs (default: the setting's).")
    parser.add_argument("--probe-epochs", type=int, help="Pin the probe epochs (default: the planner's).")
    parser.add_argument("--limit", type=int, help="Train on the first N points only (0: all; default: the setting's).")
    parser.add_argument("--results-json", help="Write the rows here (bench/peers.py --xmcfit-results reads it).")
    parser.add_argument("--reuse", action="store_true",
                        help="Keep --out and reuse the runs an earlier invocation finished there (same names), so "
                             "seeds and configurations can be added a few at a time.")
    args = parser.parse_args(argv)
    data = Path(args.data_root) / "EURLEX57K"
    if not data.is_dir():
        print(f"skipped: no EURLEX57K at {data} (pass --data-root DIR)")
        return
    configs = [c for c in args.configs.split(",") if c]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        parser.error(f"--configs: unknown {unknown[0]!r}; known: {', '.join(CONFIGS)}")
    s = dict(SETTINGS[args.setting])
    if args.epochs is not None:
        s["epochs"] = args.epochs
    if args.limit is not None:
        s["limit"] = args.limit
    limit = s.pop("limit")
    out = Path(args.out) / args.setting
    if out.exists() and not args.reuse:
        sys.exit(f"{out} exists: remove it, pass another --out, or --reuse its finished runs")
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    seeds = [int(x) for x in args.seeds.split(",") if x]
    plan_common = ["--encoder", s["encoder"], "--gpu-mem", s["gpu_mem"], "--seq-len", str(s["seq_len"])]
    plan_common += ["--precision", s["precision"]] if "precision" in s else []
    plan_common += ["--batch", str(s["batch"])] if "batch" in s else []
    plan_common += ["--train-points", str(limit)] if limit else []  # the planner sizes the run's steps from it
    probe_flags = ["--probe-epochs", str(args.probe_epochs)] if args.probe_epochs is not None else []
    probe = planned_probe_epochs(data, plan_common + probe_flags)
    train_flags = [arg for field in s["fields"] for arg in ("--text-field", field)]
    train_flags += ["--limit", str(limit)] if limit else []
    print(f"setting {args.setting}: {s}, probe epochs {probe}, seeds {seeds}"
          + (f", first {limit:,} training points" if limit else ""), flush=True)
    results: dict[str, list[Row]] = {}
    for name in configs:
        flags = plan_common + CONFIGS[name] + (
            ["--probe-epochs", str(probe + s["epochs"]), "--epochs", "0"] if name == "frozen" else probe_flags)
        results[name] = run_seeds(name, data, out, flags, train_flags, "dev", s["epochs"], seeds, args.reuse)
        print(f"{name}: P@1 {mean_sd(results[name], 'P@1')[0]:.2f} +- {mean_sd(results[name], 'P@1')[1]:.2f}",
              flush=True)
    device = next(iter(results.values()))[0].memory["device"]
    print(table(results, device))
    if args.results_json:
        Path(args.results_json).write_text(json.dumps({"dataset": "EURLEX57K", "rows": [
            {"method": f"xmcfit {name} ({describe(rows[0].plan)}; {describe_recipe(rows[0].plan)})",
             "metrics": {k: sum(r.metrics[k] for r in rows) / len(rows) for k in rows[0].metrics},
             "train_s": sum(r.train_s for r in rows) / len(rows), "predict_s": rows[0].predict_s, "model_bytes": 0,
             "note": f"{args.setting} setting: {', '.join(s['fields'])}, {s['seq_len']} tokens, {s['encoder']}, "
                     f"mean of seeds {seeds}" + (f", first {limit:,} training points" if limit else "")}
            for name, rows in results.items()]}, indent=2) + "\n")
    print(summary(results))


if __name__ == "__main__":
    main()
