"""Rich tables shared by plan / train / eval: numbers in, renderables out (bytes shown as GiB, 2**30)."""

from __future__ import annotations

import math
import os
import sys
import time
from typing import TYPE_CHECKING, TextIO

from rich.console import Console, Group
from rich.table import Table

from xmcfit.plan.units import gib

if TYPE_CHECKING:
    from xmcfit.train.epoch import StepStats
    from xmcfit.train.finish import TrainResult
    from xmcfit.plan.hardware import GpuInfo
    from xmcfit.plan.time_model import DeviceRates
    from xmcfit.plan.schema import Plan
    from xmcfit.plan.profiles import DatasetProfile, EncoderProfile, GpuProfile


PIPE_WIDTH = 140
"""Columns when the output is not a terminal and $COLUMNS is unset: wide enough that table rows stay
whole in logs, pipes and tests."""


def _width(stream: TextIO) -> int | None:
    """None (rich measures the terminal) on a terminal; else $COLUMNS, else PIPE_WIDTH."""
    if stream.isatty():
        return None
    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() and int(columns) > 0 else PIPE_WIDTH


def console() -> Console:
    """The console commands print to: stdout, as wide as the terminal (or $COLUMNS, or PIPE_WIDTH)."""
    return Console(width=_width(sys.stdout))


def _gib(n_bytes: int) -> str:
    return f"{gib(n_bytes):.3f}"


def plan_memory_table(plan: "Plan") -> Table:
    """Predicted bytes per term; terms alive at the peak are marked, the rest are transient elsewhere."""
    peak_terms = plan.memory.peak_terms
    table = Table(title="Predicted memory per device (GiB = 2**30 bytes)")
    table.add_column("term")
    table.add_column("GiB", justify="right")
    table.add_column("at peak", justify="center")
    for name, n_bytes in plan.memory.terms_bytes.items():
        if n_bytes:
            table.add_row(name, _gib(n_bytes), "yes" if name in peak_terms else "")
    mem = plan.memory
    table.add_section()
    table.add_row(f"predicted peak ({plan.classifier.kind})", _gib(mem.predicted_peak_bytes), "")
    # the plain baseline: dense L x h on the encoder's output, whatever this plan's intermediate layer
    table.add_row(f"dense classifier would need ({plan.classifier.n_labels:,} x {plan.model.encoder.hidden_size})",
                  _gib(mem.dense_predicted_peak_bytes), "")
    table.add_row("budget", _gib(mem.budget_bytes), "")
    table.add_row("headroom", _gib(mem.headroom_bytes), "")
    return table


def plan_knobs_table(plan: "Plan") -> Table:
    """The chosen knobs, then the chooser's reasons."""
    c, m, t = plan.classifier, plan.model, plan.training
    table = Table(title="Chosen configuration")
    table.add_column("knob")
    table.add_column("value")
    rows = [
        ("encoder", f"{m.encoder.name} (seq {m.seq_len}, {m.pooling} pooling)"),
        ("precision", plan.precision),
        ("fan-in", f"{c.fan_in} of d={c.in_features} ({c.index_dtype} indices)" if c.kind == "sparse"
         else f"dense {c.n_labels} x {c.in_features}"),
        ("classifier", f"{c.value_dtype} values, {c.optimizer} lr {c.lr}, rounding {c.update_rounding}"),
        ("batch", f"{t.micro_batch} x {t.grad_accum} accumulation x {plan.n_devices} device(s) = {plan.effective_batch}"),
        ("gradient checkpointing", "on" if m.gradient_checkpointing else "off"),
        ("intermediate layer", str(m.intermediate_dim or "none")),
        ("loss chunk", f"{c.loss_chunk_size} labels ({c.loss})"),
        ("aux objective", f"{plan.aux.n_clusters} clusters, weight {plan.aux.initial_weight}" if plan.aux.enabled else "off"),
        ("rewiring", f"{plan.rewiring.mode} {plan.rewiring.initial} every {plan.rewiring.interval_steps} steps"
         if plan.rewiring.enabled else "off"),
    ]
    for knob, value in rows:
        table.add_row(knob, value)
    return table


def plan_reasons_table(plan: "Plan") -> Table:
    table = Table(title="Why")
    table.add_column("reason")
    for reason in plan.reasons:
        table.add_row(reason)
    return table


def _duration(seconds: float) -> str:
    """Seconds as the unit that reads best: 0.214 s, 3.5 min, 12.4 h, 3.1 days."""
    if seconds < 60:
        return f"{seconds:.3g} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def plan_time_table(plan: "Plan", price_per_gpu_hour: float | None = None) -> Table:
    """Predicted seconds per phase of a step, then per step, epoch and run (and the run's cost, given a price)."""
    t = plan.time
    assert t is not None
    table = Table(title=f"Predicted time on {t.device} (time model: roofline x fitted efficiency)")
    table.add_column("phase")
    table.add_column("seconds per step", justify="right")
    table.add_column("share", justify="right")
    for name, seconds in t.phase_seconds.items():
        if seconds > 0:
            share = seconds / t.step_seconds if t.step_seconds else 0.0
            table.add_row(name + (" (dominant)" if name == t.dominant_phase else ""), f"{seconds:.4g}", f"{share:.0%}")
    table.add_section()
    table.add_row("step", f"{t.step_seconds:.4g}", "")
    table.add_row(f"epoch ({t.steps_per_epoch:,} steps, {t.n_train_points:,} points)", _duration(t.epoch_seconds), "")
    epochs = plan.training.epochs
    probe = f" + {plan.training.probe_epochs} probe" if plan.training.probe_epochs else ""
    table.add_row(f"run ({epochs} epochs{probe})", _duration(t.run_seconds), "")
    if price_per_gpu_hour is not None:
        cost = t.run_seconds / 3600 * price_per_gpu_hour * plan.n_devices
        table.add_row(f"run cost at {price_per_gpu_hour:g} USD per GPU-hour", f"{cost:,.2f} USD", "")
    for assumption in t.assumed:
        table.add_row(f"assumed: {assumption}", "", "")
    return table


def plan_report(plan: "Plan", price_per_gpu_hour: float | None = None) -> Group:
    """Knobs, memory breakdown (with the terms alive at the peak marked), predicted time, and reasons."""
    time_part = (plan_time_table(plan, price_per_gpu_hour) if plan.time is not None else
                 "No time prediction: no rates for this GPU (plan with --gpu PROFILE, or --device cpu after "
                 "`xmcfit calibrate`).")
    return Group(plan_knobs_table(plan), plan_memory_table(plan), time_part, plan_reasons_table(plan))


def all_gpus_table(rows: list[tuple[str, int, "Plan | None", str]], prices: dict[str, float] | None = None) -> Table:
    """One row per GPU profile: (name, memory bytes, plan or None, note when it does not fit); with its
    predicted hours per epoch and, for the profiles in `prices` (USD per GPU-hour), the run's cost."""
    from xmcfit.plan.inputs import run_cost_usd

    prices = prices or {}
    table = Table(title="Plan per GPU profile")
    columns = ["GPU", "memory GiB", "fits", "fan-in", "precision", "micro-batch", "peak GiB", "dense L x h GiB",
               "h/epoch", "dominant phase"] + (["run USD"] if prices else [])
    for col in columns:
        table.add_column(col)
    for name, memory_bytes, plan, note in rows:
        if plan is None:
            table.add_row(name, _gib(memory_bytes), "no", "", "", "", note, "", "", "", *([""] if prices else []))
            continue
        t = plan.time
        cost = run_cost_usd(plan, prices.get(name))
        table.add_row(name, _gib(memory_bytes), "yes", str(plan.classifier.fan_in), plan.precision,
                      str(plan.training.micro_batch), _gib(plan.memory.predicted_peak_bytes),
                      _gib(plan.memory.dense_predicted_peak_bytes),
                      f"{t.epoch_seconds / 3600:.3g}" if t else "?", t.dominant_phase if t else "",
                      *([f"{cost:,.0f}" if cost is not None else ""] if prices else []))
    if rows and rows[0][2] is not None and rows[0][2].time is not None and rows[0][2].time.assumed:
        table.caption = "assumed: " + "; ".join(rows[0][2].time.assumed)
    return table


def calibration_table(rates: "DeviceRates") -> Table:
    """A CPU's measured rates (xmcfit.calibrate)."""
    table = Table(title=f"Measured rates: {rates.name}")
    table.add_column("rate")
    table.add_column("value", justify="right")
    table.add_row("matrix multiply, fp32", f"{rates.matmul_fp32_flops_per_s / 1e9:.1f} GFLOP/s")
    table.add_row("matrix multiply, bf16", f"{rates.matmul_16bit_flops_per_s / 1e9:.1f} GFLOP/s")
    table.add_row("memory stream (read + write)", f"{rates.memory_bytes_per_s / 1e9:.1f} GB/s")
    table.add_row("embedding-bag gather", f"{rates.gather_bytes_per_s / 1e9:.1f} GB/s")
    table.add_row("one op launch", f"{rates.op_overhead_s * 1e6:.2f} us")
    return table


def gpus_table(gpus: list["GpuInfo"]) -> Table:
    table = Table(title="Visible GPUs")
    for col in ("index", "name", "total GiB", "free GiB", "compute capability"):
        table.add_column(col)
    for g in gpus:
        table.add_row(str(g.index), g.name, _gib(g.total_bytes), _gib(g.free_bytes), g.compute_capability)
    return table


def _count(n: int) -> str:
    """A count in at most 7 characters: 742,507 or 1.72M."""
    return f"{n:,}" if n < 10**6 else f"{n / 1e6:.2f}M"


_LISTING_FOLD_ABOVE = 12
"""Listing cells longer than this (a source path) fold onto more lines; shorter ones (numbers) never break."""


def _listing(title: str, columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> Table:
    """A listing whose first column (the name a flag takes) is never cut: it keeps its full width and the
    other columns fold onto more lines in a narrow terminal (80 columns) instead of ending in '…'."""
    table = Table(title=title, box=None, pad_edge=False, padding=(0, 1, 0, 0))
    for i, col in enumerate(columns):
        widest = max((len(row[i]) for row in rows), default=0)
        whole = i == 0 or widest <= _LISTING_FOLD_ABOVE  # names and numbers keep their width; long text folds
        table.add_column(col, no_wrap=whole, overflow="fold", min_width=widest if whole else _LISTING_FOLD_ABOVE)
    for row in rows:
        table.add_row(*row)
    return table


def profiles_tables(gpus: list["GpuProfile"], encoders: list["EncoderProfile"],
                    datasets: list["DatasetProfile"]) -> Group:
    g = _listing("GPU profiles", ("name", "memory GiB", "compute cap.", "bf16", "fp8", "16-bit TFLOP/s"),
                 [(p.name, _gib(p.memory_bytes), p.compute_capability, str(p.bf16), str(p.fp8),
                   f"{p.peak_16bit_tflops:g}") for p in gpus])
    e = _listing("Encoder profiles", ("name", "params", "hidden", "layers", "heads", "FFN", "vocab", "seq", "source"),
                 [(p.name, f"{p.n_params / 1e6:.1f}M", str(p.hidden_size), str(p.n_layers), str(p.n_heads),
                   str(p.intermediate_size), str(p.vocab_size), str(p.max_seq_len), p.source) for p in encoders])
    d = _listing("Dataset profiles (Extreme Classification Repository)",
                 ("name", "input", "labels", "train", "test", "labels/pt", "seq", "A/B"),
                 [(p.name, p.input, f"{p.n_labels:,}", _count(p.n_train), _count(p.n_test), f"{p.avg_labels_per_point:g}",
                   str(p.typical_seq_len), f"{p.propensity_a:g}/{p.propensity_b:g}") for p in datasets])
    return Group(g, e, d)


# -- eval / predict (numbers gathered by xmcfit.evaluate; these only draw) -------------------------------

if TYPE_CHECKING:
    from xmcfit.evaluate import EvalResult, LabelScore

METRIC_ROWS = ("P@1", "P@3", "P@5", "nDCG@1", "nDCG@3", "nDCG@5", "PSP@1", "PSP@3", "PSP@5",
               "PSnDCG@1", "PSnDCG@3", "PSnDCG@5", "coverage@5")


def _gib_or_dash(n_bytes: int | None) -> str:
    return "-" if n_bytes is None else f"{gib(n_bytes):.2f}"


def _best_of(values: list[float | None], lower_is_better: bool = False) -> float | None:
    present = [v for v in values if v is not None]
    if len(present) < 2:
        return None
    return min(present) if lower_is_better else max(present)


def _highlight_row(values: list[float | None], fmt, lower_is_better: bool = False) -> list[str]:
    best = _best_of(values, lower_is_better)
    return [f"[bold green]{fmt(v)}[/]" if v is not None and v == best else ("-" if v is None else fmt(v))
            for v in values]


def eval_table(results: list["EvalResult"], note: str = "") -> Group:
    """Runs as columns, metrics (in %) as rows, the best value of each row highlighted; notes below."""
    first = results[0]
    same_data = all((r.data_source, r.split) == (first.data_source, first.split) for r in results)
    title = f"{first.split} split of {first.data_source}, {first.n_points:,} points" if same_data else "evaluation"
    table = Table(title=title)
    table.add_column("")
    names = [r.run.name for r in results]
    if len(set(names)) < len(names):  # same folder name in different places: show the paths
        names = [r.run.run_dir for r in results]
    for name in names:
        table.add_column(name, justify="right")
    runs = [r.run for r in results]
    table.add_row("classifier", *(f"{s.classifier_kind}, fan-in {s.fan_in}/{s.in_features}" if s.classifier_kind == "sparse"
                                  else f"dense, {s.in_features} in" for s in runs))
    table.add_row("precision", *(s.precision if s.value_dtype == "float32" else f"{s.precision}, {s.value_dtype} values"
                                 for s in runs))
    table.add_row("encoder", *(s.encoder.rsplit("/", 1)[-1] for s in runs))
    table.add_row("measured peak GiB", *_highlight_row([s.measured_peak_bytes for s in runs],
                                             lambda v: f"{gib(v):.2f}", lower_is_better=True))
    table.add_row("  predicted GiB, device", *(f"{_gib_or_dash(s.predicted_peak_bytes)}, {s.memory_device or '-'}" for s in runs))
    if not same_data:
        table.add_row("data", *(f"{r.split}: {r.data_source} ({r.n_points:,})" for r in results))
    table.add_section()
    for metric in METRIC_ROWS:
        table.add_row(metric, *_highlight_row([r.metrics.get(metric) for r in results], lambda v: f"{100 * v:.2f}"))
    props = sorted({(r.propensity.a, r.propensity.b, r.propensity.source) for r in results})
    captions = [f"Metrics in %. Propensity A={a:g}, B={b:g} ({src})." for a, b, src in props]
    dropped = sum(r.n_dropped_labels for r in results)
    if dropped:
        captions.append(f"{dropped:,} label occurrences unknown to a run were scored as absent.")
    if note:
        captions.append(note)
    return Group(table, *captions)


def predictions_table(inputs: list[str], predictions: list[list["LabelScore"]], score_kind: str = "score") -> Table:
    """One row per (input, rank): the input text (first rank only), label id, name, score (headed by what it
    is: margin or logit) and the probability when the labels carry one."""
    with_p = any(label.probability is not None for labels in predictions for label in labels)
    table = Table(title="predictions", caption=("score: squared-hinge margin (trained towards +1 / -1), not a "
                                                "probability" if score_kind == "margin" else None))
    columns = [("input", "left"), ("rank", "right"), ("label", "right"), ("name", "left"), (score_kind, "right")]
    for name, justify in columns + ([("probability", "right")] if with_p else []):
        table.add_column(name, justify=justify, overflow="fold")
    for text, labels in zip(inputs, predictions):
        shown = text if len(text) <= 60 else text[:57] + "..."
        for rank, label in enumerate(labels, start=1):
            row = [shown if rank == 1 else "", str(rank), str(label.index), label.name or "-", f"{label.score:.4f}"]
            table.add_row(*row, *([f"{label.probability:.4f}"] if with_p else []))
        table.add_section()
    return table


WIDE_PROGRESS_COLUMNS = 150
"""Below this terminal width the progress bar shows only loss, throughput and memory beside the bar."""


def step_figures(stats: "StepStats", encoder_lr: float | None, classifier_lr: float | None) -> str:
    """One step's figures as the progress display shows them."""
    lr = (f"lr {encoder_lr * stats.lr_mult:.1e}/{classifier_lr * stats.lr_mult:.1e}"
          if encoder_lr is not None and classifier_lr is not None else f"lr x{stats.lr_mult:.3f}")
    return (f"loss {stats.loss:.4f} (aux {stats.aux_loss:.3f} x {stats.aux_weight:.2f})  {lr}  "
            f"rewired {stats.connections_moved:,}  {stats.points_per_s:.0f} pts/s  "
            f"mem {gib(stats.memory_bytes):.2f} GiB"
            + (f"  skipped {stats.skipped_steps}" if stats.skipped_steps else "")
            + (f"  [{stats.busy}]" if stats.busy else ""))


PHASE_NAMES = {"probe": "probe", "end_to_end": "end-to-end"}


def _hms(seconds: float) -> str:
    minutes, sec = divmod(int(round(seconds)), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{sec:02d}"


class PhaseClock:
    """Seconds left in the current phase, from that phase's own pace. The linear probe (heads on cached
    features) runs its steps ten to a hundred times faster than the end-to-end phase, so one rate over
    the whole run said "6 s left" at the switch of a run that took 55 s more."""

    def __init__(self) -> None:
        self._phase: str | None = None
        self._start: tuple[float, int] = (0.0, 0)

    def remaining_s(self, stats: "StepStats", now: float) -> float | None:
        """None until the phase has been timed over one step (its first step starts the clock)."""
        if stats.phase != self._phase:
            self._phase, self._start = stats.phase, (now, stats.step)
            return None
        t0, step0 = self._start
        if stats.step <= step0:
            return None
        last = stats.phase_bounds[1]
        return (now - t0) / (stats.step - step0) * (last - stats.step)


class TrainProgress:
    """Training progress on stderr (stdout stays for results), fed by the trainer's on_step callback:
    loss, learning rates, auxiliary weight, connections rewired, throughput and memory.

    On a terminal: a rich progress bar per phase (the linear probe, then end to end), each with its own
    time remaining, as wide as the terminal. Elsewhere (nohup, SLURM, a pipe, CI), where a live bar shows
    nothing until the end: one plain line at the first step, then every `line_every_s` seconds, and at
    the last step, flushed at once, with the phase and its time remaining. Epochs count from 1, as in
    train_log.jsonl.
    """

    def __init__(self, encoder_lr: float | None = None, classifier_lr: float | None = None, *,
                 stream: TextIO | None = None, line_every_s: float = 30.0) -> None:
        self.encoder_lr, self.classifier_lr = encoder_lr, classifier_lr
        self.stream = stream if stream is not None else sys.stderr
        self.line_every_s = line_every_s
        self._last_line = -float("inf")
        self._clock = PhaseClock()
        self._progress = None
        self._tasks: dict[str, object] = {}
        if self.stream.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
                TimeRemainingColumn

            self._progress = Progress(
                TextColumn("{task.description} epoch {task.fields[epoch]}"), BarColumn(bar_width=None),
                MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[figures]}"),
                console=Console(file=self.stream), transient=False, expand=False,
            )

    def __enter__(self) -> "TrainProgress":
        if self._progress is not None:
            self._progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def update(self, stats: "StepStats") -> None:
        figures = step_figures(stats, self.encoder_lr, self.classifier_lr)
        if self._progress is None:
            self._line(stats, figures)
            return
        if self._progress.console.width < WIDE_PROGRESS_COLUMNS:
            # a narrow terminal keeps the bar and the loss; the rest is in train_log.jsonl
            figures = f"loss {stats.loss:.4f}  {stats.points_per_s:.0f} pts/s  {gib(stats.memory_bytes):.1f} GiB"
        first, last = stats.phase_bounds
        if stats.phase not in self._tasks:  # each phase its own bar, so each its own rate and time remaining
            self._tasks[stats.phase] = self._progress.add_task(PHASE_NAMES[stats.phase], total=last - first,
                                                               epoch=stats.epoch, figures=figures)
        self._progress.update(self._tasks[stats.phase], completed=stats.step - first, total=last - first,
                              epoch=stats.epoch, figures=figures)

    def _line(self, stats: "StepStats", figures: str) -> None:
        now = time.monotonic()
        left = self._clock.remaining_s(stats, now)
        if stats.step != stats.total_steps and now - self._last_line < self.line_every_s:
            return  # the first line always passes: _last_line starts at -inf
        self._last_line = now
        first, last = stats.phase_bounds
        phase = f"{PHASE_NAMES[stats.phase]} {stats.step - first}/{last - first}" + (
            f", {_hms(left)} left" if left is not None else "")
        print(f"step {stats.step}/{stats.total_steps}  epoch {stats.epoch}  {phase}  {figures}", file=self.stream,
              flush=True)


def train_result_table(result: "TrainResult") -> Table:
    """Steps done, final loss, and the plan's predicted memory beside what the run measured."""
    from xmcfit.train.memory_report import STATIC_TERMS

    mem = result.memory
    probe = f"{result.probe_epochs_done} probe + " if result.probe_epochs_done else ""
    loss = f"final loss {result.final_loss:.4f}" if math.isfinite(result.final_loss) else "no step to report a loss of"
    table = Table(title=f"Trained {result.run_dir}: {result.steps} steps, {probe}{result.epochs_done} epoch(s), {loss}"
                        + (f", {result.skipped_steps} non-finite steps skipped" if result.skipped_steps else ""))
    table.add_column("memory (GiB)")
    table.add_column("predicted", justify="right")
    table.add_column(f"measured ({mem.device})", justify="right")
    predicted, measured = mem.predicted_terms_bytes, mem.measured_terms_bytes
    for term in STATIC_TERMS:
        if predicted.get(term) or measured.get(term):
            table.add_row(term, _gib_or_dash(predicted.get(term)), _gib_or_dash(measured.get(term)))
    table.add_section()
    table.add_row("peak", _gib_or_dash(mem.predicted_peak_bytes), _gib_or_dash(mem.measured_peak_bytes))
    if mem.measured_reserved_bytes is not None:
        table.add_row("  reserved by the allocator", "", _gib_or_dash(mem.measured_reserved_bytes))
    if mem.measured_peak_rss_growth_bytes is not None:
        table.add_row("  RSS growth while training", "", _gib_or_dash(mem.measured_peak_rss_growth_bytes))
    return table


def print_train_result(result: "TrainResult") -> None:
    console().print(train_result_table(result), result.memory.note)
