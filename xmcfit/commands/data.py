"""`xmcfit data`: dataset statistics and the synthetic dataset generator (thin shells over xmcfit.data)."""

from __future__ import annotations

import json
from pathlib import Path
import typer
from rich.console import Console
from rich.table import Table

from xmcfit import api
from xmcfit.commands.choices import completer

# xmcfit.api imports xmcfit.data (numpy, scipy) inside its functions: the CLI registers this module for
# every command, and `xmcfit plan` must not pay ~0.4 s of scipy imports.

app = typer.Typer(help="Inspect datasets and generate synthetic data.", no_args_is_help=True, add_completion=False)


def _stats_table(stats: api.DatasetStats) -> Table:
    table = Table(title=f"{stats.source} ({stats.kind})")
    table.add_column("statistic")
    table.add_column("value", justify="right")
    length_label = "avg words per text" if stats.kind == "text" else "avg nnz features per point"
    rows = [
        ("points", f"{stats.n_points:,}"),
        ("labels", f"{stats.n_labels:,}"),
        ("labels used", f"{stats.n_labels_used:,}"),
        ("features", f"{stats.n_features:,}" if stats.kind == "bow" else "raw text"),
        ("avg labels per point", f"{stats.avg_labels_per_point:.3f}"),
        ("avg points per used label", f"{stats.avg_points_per_label:.2f}"),
        (length_label, f"{stats.avg_input_length:.2f}"),
        ("points without labels", f"{stats.n_points_without_labels:,}"),
        ("dropped label occurrences", f"{stats.n_dropped_labels:,}"),
    ]
    rows += [(f"points per label, {q}", f"{v:g}") for q, v in stats.label_freq_quantiles.items()]
    for name, value in rows:
        table.add_row(name, value)
    return table


@app.command("stats")
def stats_command(
    path: Path = typer.Argument(..., help="Dataset directory or data file."),
    split: str = typer.Option("train", "--split", help="train, dev or test (aliases trn/tst/val).",
                              autocompletion=completer(("train", "dev", "test"))),
    limit: int = typer.Option(None, "--limit", help="Read only the first N points."),
    as_json: bool = typer.Option(False, "--json", help="Print the statistics as one JSON object."),
) -> None:
    """Print statistics of one split of a dataset."""
    stats = api.dataset_stats(path, split, limit)
    if as_json:
        typer.echo(json.dumps(stats.to_dict()))
    else:
        Console().print(_stats_table(stats))


@app.command("synth")
def synth_command(
    out_dir: Path = typer.Argument(..., help="Directory to write the dataset into (created)."),
    labels: int = typer.Option(500, "--labels", help="Number of labels."),
    train: int = typer.Option(4000, "--train", help="Training points."),
    test: int = typer.Option(1000, "--test", help="Test points."),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same files)."),
) -> None:
    """Write a synthetic raw-text dataset (Zipf label frequencies, words that carry label signal)."""
    cfg = api.synthesize(out_dir, labels=labels, train=train, test=test, seed=seed)
    typer.echo(f"wrote {cfg.n_train} train / {cfg.n_test} test points, {cfg.n_labels} labels to {out_dir}")
