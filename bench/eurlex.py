"""EURLEX57K end to end: xmcfit dense vs xmcfit sparse, same encoder and epochs, trained on train and
reported on dev (the test split is withheld in ../shared/data).

Each configuration runs as the user would run it: `xmcfit plan` (dense pinned with --classifier dense;
sparse with fan-in and the rest chosen by the planner for the budget, or --fan-in pinned), `xmcfit train`
and `xmcfit eval --json`, each in its own process so the measured peak memory (CUDA max allocated, or
peak RSS on the CPU) belongs to that run alone.

    python bench/eurlex.py [--setting cpu|gpu] [--data-root DIR] [--out DIR] [--fan-in K ...]
                           [--epochs N] [--limit N] [--results-json FILE]

Settings:
  cpu  titles only, 32 tokens, the embedded all-MiniLM-L6-v2, fp32, batch 32, 2 epochs, the first 12,000
       of the 45,000 training documents: about 25 minutes for dense + sparse on 2 cores (the whole
       training set takes about 40 minutes per configuration there; --limit 0).
  gpu  title + header + recitals + main body, 256 tokens, all-MiniLM-L6-v2, bf16 AMP, batch 64, 10 epochs,
       the whole training set.

Prints one table (P@k, PSP@k, epoch time, peak memory per run), then `SUMMARY ...` with the ratio of
sparse to dense P@1 last. Exits 0 with a message when the data is absent.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from xmcfit_runs import GIB, REPO_ROOT, Row, describe, run_config

COLUMNS = ("P@1", "P@3", "P@5", "nDCG@5", "PSP@1", "PSP@3", "PSP@5")

SETTINGS = {
    "cpu": dict(fields=["title"], seq_len=32, precision="fp32", batch=32, epochs=2, gpu_mem="16G",
                encoder="all-MiniLM-L6-v2", limit=12_000),
    "gpu": dict(fields=["title", "header", "recitals", "main_body"], seq_len=256, precision="bf16_amp", batch=64,
                epochs=10, gpu_mem="16G", encoder="all-MiniLM-L6-v2", limit=0),
}


def table(rows: list[Row], device: str) -> str:
    header = ["run", "classifier", *COLUMNS, "s/epoch", "peak GiB", "predicted GiB"]
    lines = [[r.method, describe(r.plan), *(f"{100 * r.metrics[c]:.2f}" for c in COLUMNS),
              f"{r.train_s / r.epochs:.0f}", f"{r.memory['measured_peak_bytes'] / GIB:.2f}",
              f"{r.plan['memory']['predicted_peak_bytes'] / GIB:.2f}"] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(header, *lines)]
    fmt = lambda cells: "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    rule = "-" * len(fmt(header))
    peak_note = ("peak = CUDA max allocated" if device != "cpu" else
                 "peak = process peak RSS (Python, libraries and data included)")
    return "\n".join([f"EURLEX57K dev, metrics in % ({peak_note})", rule, fmt(header), rule,
                      *(fmt(line) for line in lines), rule])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="cpu")
    parser.add_argument("--data-root", default=str(REPO_ROOT.parent / "shared" / "data"))
    parser.add_argument("--out", default=str(REPO_ROOT / "runs" / "bench-eurlex"))
    parser.add_argument("--fan-in", type=int, action="append", default=[],
                        help="Also run sparse with this fan-in pinned (repeatable); the planner's choice always runs.")
    parser.add_argument("--epochs", type=int, help="Override the setting's epochs.")
    parser.add_argument("--limit", type=int, help="Train on the first N points only (0: all; default: the setting's).")
    parser.add_argument("--results-json", help="Write the rows here (bench/peers.py --xmcfit-results reads it).")
    args = parser.parse_args(argv)
    data = Path(args.data_root) / "EURLEX57K"
    if not data.is_dir():
        print(f"skipped: no EURLEX57K at {data} (pass --data-root DIR)")
        return
    s = dict(SETTINGS[args.setting])
    if args.epochs:
        s["epochs"] = args.epochs
    if args.limit is not None:
        s["limit"] = args.limit
    limit = s.pop("limit")
    out = Path(args.out) / args.setting
    if out.exists():
        sys.exit(f"{out} exists: remove it or pass another --out")
    out.mkdir(parents=True)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    configs = [("dense", ["--classifier", "dense"]), ("sparse", [])]
    configs += [(f"sparse-k{k}", ["--fan-in", str(k)]) for k in args.fan_in]
    plan_common = ["--encoder", s["encoder"], "--gpu-mem", s["gpu_mem"], "--precision", s["precision"],
                   "--batch", str(s["batch"]), "--seq-len", str(s["seq_len"])]
    train_flags = [arg for field in s["fields"] for arg in ("--text-field", field)]
    train_flags += ["--limit", str(limit)] if limit else []
    rows = [run_config(name, data, out, plan_common + flags, train_flags, "dev", s["epochs"])
            for name, flags in configs]
    device = rows[0].memory["device"]
    print(f"setting {args.setting}: {s}, device {device}" + (f", first {limit:,} training points" if limit else ""))
    print(table(rows, device))
    dense = rows[0].metrics["P@1"]
    ratios = " ".join(f"{r.method}_p1_ratio={r.metrics['P@1'] / dense:.3f}" for r in rows[1:])
    if args.results_json:
        Path(args.results_json).write_text(json.dumps({"dataset": "EURLEX57K", "rows": [
            {"method": f"xmcfit {r.method} ({describe(r.plan)})", "metrics": r.metrics, "train_s": r.train_s,
             "predict_s": r.predict_s, "model_bytes": 0,
             "note": f"{args.setting} setting: {', '.join(s['fields'])}, {s['seq_len']} tokens, {s['encoder']}"
                     + (f", first {limit:,} training points" if limit else "")}
            for r in rows]}, indent=2) + "\n")
    print("SUMMARY " + " ".join(f"{r.method}_p1={100 * r.metrics['P@1']:.2f}" for r in rows) + " " + ratios)


if __name__ == "__main__":
    main()
