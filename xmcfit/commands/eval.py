"""`xmcfit eval` and `xmcfit predict`: thin shells over xmcfit.evaluate; tables come from xmcfit.report."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.console import Console
from rich.table import Table

from xmcfit.errors import XmcfitError

if TYPE_CHECKING:
    from xmcfit.evaluate import EvalResult, LabelScore

PSNDCG_NOTE = ("PSnDCG@k: per-point propensity-scored DCG@k over the IDCG of min(k, |y|) positions "
               "(as pyxclib and napkinXC), summed over points and divided by the best achievable sum.")


@contextmanager
def _one_line_errors() -> Iterator[None]:
    """An XmcfitError becomes `Error: <line>` on stderr and exit 2 (typer vendors its own click, so
    the standalone click's ClickException would otherwise escape as a traceback)."""
    try:
        yield
    except XmcfitError as exc:
        typer.echo(f"Error: {exc.message}", err=True)
        raise typer.Exit(code=exc.exit_code) from exc


def eval_command(
    run_dirs: list[Path] = typer.Argument(..., metavar="RUN_DIR...", help="One or more run directories."),
    data: Optional[str] = typer.Option(None, "--data", help="Dataset directory or file [default: the run's training data]."),
    split: Optional[str] = typer.Option(None, "--split", help="dev or test [default: test, else dev]."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON instead of a table."),
    propensity_a: Optional[float] = typer.Option(None, "--propensity-a", help="Jain et al. A [default: dataset profile, else 0.55]."),
    propensity_b: Optional[float] = typer.Option(None, "--propensity-b", help="Jain et al. B [default: dataset profile, else 1.5]."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N."),
) -> None:
    """P@k, nDCG@k, PSP@k, PSnDCG@k (k = 1, 3, 5) and coverage@5 of trained runs, side by side.

    Propensities (Jain et al. 2016) come from each run's training label frequencies and the dataset's
    A/B: the flags, else the dataset profile the run matches, else 0.55/1.5. PSnDCG@k divides each
    point's propensity-scored DCG@k by its IDCG over min(k, |y|) positions, as pyxclib and napkinXC do,
    and normalises by the best achievable value. Scoring streams label chunks: it never holds
    points x labels scores.
    """
    from xmcfit.evaluate import evaluate_runs

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with _one_line_errors():
        if split is not None and split not in ("dev", "test"):
            raise XmcfitError(f"--split={split}: must be dev or test")
        results = evaluate_runs(run_dirs, data, split, propensity_a, propensity_b, device)
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in results], indent=2))
        return
    _print(eval_table(results, note=PSNDCG_NOTE))


def _read_inputs(texts: list[str] | None, file: Path | None) -> list[str]:
    if texts and file is not None:
        raise XmcfitError("give TEXT arguments or --file, not both")
    if file is None:
        return list(texts or [])
    try:
        content = sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8")
    except OSError as err:
        raise XmcfitError(f"{file}: cannot read ({err.strerror})") from None
    return [line for line in content.splitlines() if line.strip()]


def predict_command(
    run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="A run directory from `xmcfit train`."),
    texts: Optional[list[str]] = typer.Argument(None, metavar="[TEXT]...", help="Texts to label."),
    file: Optional[Path] = typer.Option(None, "--file", "-f",
                                        help="One text per line ('-' reads stdin); for bag-of-words runs an XMC-format features file."),
    top_k: int = typer.Option(5, "--top-k", "-k", min=1, help="Labels per input."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON lines, one per input."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N."),
) -> None:
    """Top-k labels (id, name when known, score) for new inputs, scored in batches."""
    from xmcfit.evaluate import predict_dataset, predict_labels
    from xmcfit.inference import load_run

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with _one_line_errors():
        run = load_run(run_dir, device=device)
        if run.plan.model.encoder.kind == "bow":
            if texts or file is None:
                raise XmcfitError(f"{run_dir} was trained on bag-of-words features: pass --file FEATURES "
                                  "(XMC text format) instead of TEXT")
            from xmcfit.data import load_split

            dataset = load_split(file)
            inputs = [f"{dataset.source}:{i}" for i in range(dataset.n_points)]
            predictions = predict_dataset(run, dataset, top_k)
        else:
            inputs = _read_inputs(texts, file)
            predictions = predict_labels(run, inputs, top_k)
    if as_json:
        for text, labels in zip(inputs, predictions):
            typer.echo(json.dumps({"input": text, "labels": [asdict(label) for label in labels]}))
        return
    _print(predictions_table(inputs, predictions))


# -- tables (numbers were gathered by xmcfit.evaluate; this only draws) ---------------------------------

METRIC_ROWS = ("P@1", "P@3", "P@5", "nDCG@1", "nDCG@3", "nDCG@5", "PSP@1", "PSP@3", "PSP@5",
               "PSnDCG@1", "PSnDCG@3", "PSnDCG@5", "coverage@5")
GIB = 2**30


def _print(table: Table) -> None:
    Console(width=max(100, Console().width)).print(table)


def _gib(n_bytes: int | None) -> str:
    return "-" if n_bytes is None else f"{n_bytes / GIB:.2f}"


def _best(values: list[float | None], lower_is_better: bool = False) -> float | None:
    present = [v for v in values if v is not None]
    if len(present) < 2:
        return None
    return min(present) if lower_is_better else max(present)


def _row(values: list[float | None], fmt, lower_is_better: bool = False) -> list[str]:
    best = _best(values, lower_is_better)
    return [f"[bold green]{fmt(v)}[/]" if v is not None and v == best else ("-" if v is None else fmt(v))
            for v in values]


def eval_table(results: list[EvalResult], note: str = "") -> Table:
    """Runs as columns, metrics (in %) as rows; the best value of each row is highlighted."""
    first = results[0]
    same_data = all((r.data_source, r.split) == (first.data_source, first.split) for r in results)
    title = f"{first.split} split of {first.data_source}, {first.n_points:,} points" if same_data else "evaluation"
    table = Table(title=title)
    table.add_column("")
    for r in results:
        table.add_column(r.run.name, justify="right")
    runs = [r.run for r in results]
    table.add_row("classifier", *(f"{s.classifier_kind}, fan-in {s.fan_in}/{s.in_features}" if s.classifier_kind == "sparse"
                                  else f"dense, {s.in_features} in" for s in runs))
    table.add_row("precision", *(s.precision if s.value_dtype == "float32" else f"{s.precision}, {s.value_dtype} values"
                                 for s in runs))
    table.add_row("encoder", *(s.encoder.rsplit("/", 1)[-1] for s in runs))
    table.add_row("measured peak GiB", *_row([s.measured_peak_bytes for s in runs],
                                             lambda v: f"{v / GIB:.2f}", lower_is_better=True))
    table.add_row("  predicted GiB, device", *(f"{_gib(s.predicted_peak_bytes)}, {s.memory_device or '-'}" for s in runs))
    if not same_data:
        table.add_row("data", *(f"{r.split}: {r.data_source} ({r.n_points:,})" for r in results))
    table.add_section()
    for metric in METRIC_ROWS:
        table.add_row(metric, *_row([r.metrics.get(metric) for r in results], lambda v: f"{100 * v:.2f}"))
    props = sorted({(r.propensity.a, r.propensity.b, r.propensity.source) for r in results})
    captions = [f"Metrics in %. Propensity A={a:g}, B={b:g} ({src})." for a, b, src in props]
    dropped = sum(r.n_dropped_labels for r in results)
    if dropped:
        captions.append(f"{dropped:,} label occurrences unknown to a run were scored as absent.")
    if note:
        captions.append(note)
    table.caption = " ".join(captions)
    return table


def predictions_table(inputs: list[str], predictions: list[list[LabelScore]]) -> Table:
    """One row per (input, rank): the input text (first rank only), label id, name and score."""
    table = Table(title="predictions")
    for name, justify in (("input", "left"), ("rank", "right"), ("label", "right"), ("name", "left"), ("score", "right")):
        table.add_column(name, justify=justify, overflow="fold")
    for text, labels in zip(inputs, predictions):
        shown = text if len(text) <= 60 else text[:57] + "..."
        for rank, label in enumerate(labels, start=1):
            table.add_row(shown if rank == 1 else "", str(rank), str(label.index), label.name or "-", f"{label.score:.4f}")
        table.add_section()
    return table
