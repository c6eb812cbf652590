"""The planner's memory model as pictures (no training, no torch; a few seconds): PNG figures for the README.

    python bench/figures.py [--out docs/figures] [--gpu-mem 16G]

1. memory_vs_labels.png: the predicted peak of the plan xmcfit picks for a GPU budget (`xmcfit plan
   --labels L --gpu-mem 16G`) against the number of labels, beside the plain dense baseline the same plan
   prices (memory.dense_predicted_peak_bytes: a dense L x h classifier on the encoder's output), with
   the budget as a line.
2. memory_by_term.png: at 3M labels, that plan's peak stacked by term family, one bar per fan-in pinned
   through xmcfit.plan(fan_in=k) (the chooser picks the rest; a fan-in for which nothing fits is left out).

Every number is a prediction of xmcfit.plan.memory, not a measurement (bench/RESULTS.md has those).
The data part (labels_sweep, fan_in_sweep) needs only xmcfit; drawing needs matplotlib (`pip install
'xmcfit[bench]'`); without it the script says so and exits 0.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from common import GIB, REPO_ROOT

import xmcfit
from xmcfit.plan import phases

LABELS = tuple(int(round(10 ** (e / 4))) for e in range(16, 29))
"""10^4 .. 10^7 labels, four points per decade."""
FAN_IN_LABELS = 3_000_000
FAN_INS = (8, 16, 32, 64, 128, 256, 384, 512)
DPI = 110
DTYPE_SHORT = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}

TERM_GROUPS: dict[str, tuple[str, ...]] = {
    "encoder + heads: weights, grads": (
        "encoder_weights", "encoder_grads", "encoder_amp_weight_copies", "intermediate_weights",
        "intermediate_grads", "aux_weights", "aux_grads"),
    "encoder + heads: optimizer state": (
        "encoder_optimizer_state", "intermediate_optimizer_state", "aux_optimizer_state"),
    "activations": ("encoder_activations", "head_activations", "gathered_features"),
    "classifier values + bias": ("classifier_values", "classifier_bias"),
    "classifier indices": ("classifier_indices", "classifier_pattern_cache"),
    "classifier grads": ("classifier_grads",),
    "classifier optimizer state": ("classifier_optimizer_state",),
    "logits / loss workspace": ("loss_workspace", "aux_logits"),
    "TF-IDF side": phases.TFIDF,
    "step / rewiring workspace": ("optimizer_step_workspace", "rewiring_workspace", "ddp_gradient_buckets"),
    "CUDA context + fragmentation": phases.RESERVES,
}
"""Every memory term (xmcfit.plan.phases names them) in one family of the stacked figure; "heads" are the
intermediate layer and the auxiliary head."""


@dataclass(frozen=True)
class LabelPoint:
    """The plan picked for n_labels: its classifier and peak, and the plain dense baseline's peak."""

    n_labels: int
    kind: str
    """"dense" or "sparse" (the plan's classifier)."""
    fan_in: int
    peak_bytes: int
    dense_peak_bytes: int


@dataclass(frozen=True)
class FanInPoint:
    """The plan picked with fan_in pinned: its peak split into TERM_GROUPS (bytes per family, in order)."""

    fan_in: int
    config: str
    """What else the chooser picked, one per line: intermediate layer width, value dtype, optimizer."""
    group_bytes: dict[str, int]
    peak_bytes: int
    peak_phase: str


def labels_sweep(labels: Sequence[int], gpu_mem: str) -> list[LabelPoint]:
    """xmcfit.plan at each label count for the budget `gpu_mem` ("16G")."""
    points = []
    for n_labels in labels:
        plan = xmcfit.plan(labels=n_labels, gpu_mem=gpu_mem)
        points.append(LabelPoint(n_labels, plan.classifier.kind, plan.classifier.fan_in,
                                 plan.memory.predicted_peak_bytes, plan.memory.dense_predicted_peak_bytes))
    return points


def fan_in_sweep(n_labels: int, fan_ins: Sequence[int], gpu_mem: str) -> list[FanInPoint]:
    """xmcfit.plan with each fan-in pinned, its peak's terms summed by TERM_GROUPS; the fan-ins for which
    nothing fits the budget are left out."""
    points = []
    for fan_in in fan_ins:
        try:
            plan = xmcfit.plan(labels=n_labels, gpu_mem=gpu_mem, fan_in=fan_in)
        except xmcfit.XmcfitError:
            continue
        mem = plan.memory
        groups = {name: sum(mem.terms_bytes[t] for t in mem.peak_terms if t in terms)
                  for name, terms in TERM_GROUPS.items()}
        c = plan.classifier
        inter = plan.model.intermediate_dim
        config = f"{f'inter {inter}' if inter else 'no inter'}\n{DTYPE_SHORT.get(c.value_dtype, c.value_dtype)}\n{c.optimizer}"
        points.append(FanInPoint(fan_in, config, groups, mem.predicted_peak_bytes, mem.peak_phase))
    return points


def _budget_gib(gpu_mem: str) -> float:
    return xmcfit.plan(labels=LABELS[0], gpu_mem=gpu_mem).memory.budget_bytes / GIB


def plot_memory_vs_labels(points: list[LabelPoint], budget_gib: float, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.6, 4.2))
    x = [p.n_labels for p in points]
    ax.plot(x, [p.dense_peak_bytes / GIB for p in points], "o--", color="tab:gray", ms=4,
            label="plain dense baseline (dense L x h on the encoder)")
    ax.plot(x, [p.peak_bytes / GIB for p in points], "-", color="tab:blue", label="xmcfit's plan (its TF-IDF side included where on)")
    for kind, marker in (("dense", "s"), ("sparse", "o")):
        sel = [p for p in points if p.kind == kind]
        ax.plot([p.n_labels for p in sel], [p.peak_bytes / GIB for p in sel], marker, color="tab:blue", ms=5,
                ls="none", label=f"  {kind} classifier" + (" (fan-in shown)" if kind == "sparse" else ""))
        for p in sel if kind == "sparse" else ():
            ax.annotate(str(p.fan_in), (p.n_labels, p.peak_bytes / GIB), textcoords="offset points",
                        xytext=(0, -12), ha="center", fontsize=7, color="tab:blue")
    ax.axhline(budget_gib, color="tab:red", lw=1)
    ax.text(x[0], budget_gib * 1.08, f"{budget_gib:g} GiB budget", color="tab:red", fontsize=8)
    ax.set(xscale="log", yscale="log", xlabel="labels", ylabel="predicted peak GPU memory (GiB)",
           title=f"xmcfit plan --labels L --gpu-mem {budget_gib:g}G (all-MiniLM-L6-v2, seq 128)")
    ticks = [2.0**e for e in range(1, 8)]
    ax.set_yticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def plot_memory_by_term(points: list[FanInPoint], n_labels: int, budget_gib: float, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9.0, 4.6))
    x = range(len(points))
    bottom = [0.0] * len(points)
    colors = plt.get_cmap("tab20").colors
    for i, name in enumerate(TERM_GROUPS):
        heights = [p.group_bytes[name] / GIB for p in points]
        if any(heights):
            ax.bar(x, heights, bottom=bottom, color=colors[i % len(colors)], label=name, width=0.7)
            bottom = [b + h for b, h in zip(bottom, heights)]
    ax.axhline(budget_gib, color="tab:red", lw=1)
    ax.text(-0.4, budget_gib * 1.01, f"{budget_gib:g} GiB budget", color="tab:red", fontsize=8, va="bottom")
    ax.set_xticks(list(x), [f"{p.fan_in}\n{p.config}" for p in points], fontsize=8)
    ax.set(xlabel="fan-in (pinned; the chooser picks the rest)", ylabel="predicted peak GPU memory (GiB)",
           title=f"xmcfit's plan at {n_labels:,} labels, by term (peak of a training step)")
    ax.set_ylim(0, max(budget_gib, max(bottom)) * 1.12)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def summary(labels: list[LabelPoint], fan_ins: list[FanInPoint], gpu_mem: str) -> str:
    three_m = labels_sweep([FAN_IN_LABELS], gpu_mem)[0]
    last = labels[-1]
    switch = next((p.n_labels for p in labels if p.kind == "sparse"), 0)
    return (f"SUMMARY plan_gib_at_{three_m.n_labels}={three_m.peak_bytes / GIB:.2f} "
            f"dense_gib_at_{three_m.n_labels}={three_m.dense_peak_bytes / GIB:.2f} "
            f"plan_gib_at_{last.n_labels}={last.peak_bytes / GIB:.2f} dense_gib_at_{last.n_labels}="
            f"{last.dense_peak_bytes / GIB:.2f} sparse_from_labels={switch} "
            f"fan_ins_that_fit={','.join(str(p.fan_in) for p in fan_ins)}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO_ROOT / "docs" / "figures"), help="folder for the PNG files")
    parser.add_argument("--gpu-mem", default="16G", help="the GPU memory budget the plans fit (default 16G)")
    args = parser.parse_args(argv)
    labels = labels_sweep(LABELS, args.gpu_mem)
    fan_ins = fan_in_sweep(FAN_IN_LABELS, FAN_INS, args.gpu_mem)
    print(f"{'labels':>10} {'classifier':>10} {'fan-in':>6} {'plan GiB':>9} {'dense GiB':>9}")
    for p in labels:
        print(f"{p.n_labels:>10} {p.kind:>10} {p.fan_in:>6} {p.peak_bytes / GIB:>9.2f} {p.dense_peak_bytes / GIB:>9.2f}")
    print(f"\n{'fan-in':>6} {'config':>22} {'peak GiB':>9} {'phase':>9}")
    for p in fan_ins:
        print(f"{p.fan_in:>6} {p.config.replace(chr(10), ', '):>22} {p.peak_bytes / GIB:>9.2f} {p.peak_phase:>9}")
    try:
        import matplotlib
    except ImportError:
        print(f"matplotlib is not installed (pip install 'xmcfit[bench]'): no figures drawn\n{summary(labels, fan_ins, args.gpu_mem)}")
        return 0
    matplotlib.use("Agg")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    budget_gib = _budget_gib(args.gpu_mem)
    plot_memory_vs_labels(labels, budget_gib, out / "memory_vs_labels.png")
    plot_memory_by_term(fan_ins, FAN_IN_LABELS, budget_gib, out / "memory_by_term.png")
    print(f"wrote {out / 'memory_vs_labels.png'} and {out / 'memory_by_term.png'}")
    print(summary(labels, fan_ins, args.gpu_mem))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
