"""`xmcfit eval` and `xmcfit predict`: thin shells over xmcfit.evaluate; tables come from xmcfit.report."""

from __future__ import annotations

import json
import logging
import math
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import typer

from xmcfit import api
from xmcfit.api import DEVICE_COMPLETIONS
from xmcfit.commands.choices import choice_enum, completer, value
from xmcfit.errors import XmcfitError

EvalSplit = choice_enum("EvalSplit", ("dev", "test"))

PSNDCG_NOTE = ("PSnDCG@k: per-point propensity-scored DCG@k over the IDCG of min(k, |y|) positions "
               "(as pyxclib and napkinXC), summed over points and divided by the best achievable sum.")


def eval_command(
    run_dirs: list[Path] = typer.Argument(..., metavar="RUN_DIR...", help="One or more run directories."),
    data: Optional[str] = typer.Option(None, "--data", help="Dataset directory or file [default: the run's training data]."),
    split: Optional[EvalSplit] = typer.Option(None, "--split", help="Split to score [default: test, else dev]."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON instead of a table."),
    propensity_a: Optional[float] = typer.Option(None, "--propensity-a", help="Jain et al. A [default: dataset profile, else 0.55]."),
    propensity_b: Optional[float] = typer.Option(None, "--propensity-b", help="Jain et al. B [default: dataset profile, else 1.5]."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N.",
                                          autocompletion=completer(DEVICE_COMPLETIONS)),
) -> None:
    """P@k, nDCG@k, PSP@k, PSnDCG@k (k = 1, 3, 5) and coverage@5 of trained runs, side by side.

    Propensities (Jain et al. 2016) come from each run's training label frequencies and the dataset's
    A/B: the flags, else the dataset profile the run matches, else 0.55/1.5. PSnDCG@k divides each
    point's propensity-scored DCG@k by its IDCG over min(k, |y|) positions, as pyxclib and napkinXC do,
    and normalises by the best achievable value. Scoring streams label chunks: it never holds
    points x labels scores.
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    results = api.evaluate_runs(run_dirs, data, value(split), propensity_a=propensity_a, propensity_b=propensity_b,
                                device=device)
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in results], indent=2))
        return
    from xmcfit import report

    report.console().print(report.eval_table(results, note=PSNDCG_NOTE))


def _read_inputs(texts: list[str] | None, file: Path | None) -> list[str]:
    """The texts to label: TEXT arguments, or the non-blank lines of --file ('-': stdin), which must be UTF-8."""
    if texts and file is not None:
        raise XmcfitError("give TEXT arguments or --file, not both")
    if file is None:
        return list(texts or [])
    name = "stdin" if str(file) == "-" else str(file)
    try:
        raw = sys.stdin.buffer.read() if str(file) == "-" else file.read_bytes()
    except OSError as err:
        raise XmcfitError(f"{name}: cannot read ({err.strerror or err})") from None
    try:
        content = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise XmcfitError(f"{name}:{line}: not UTF-8 text (byte 0x{raw[err.start]:02x}); re-encode the input as "
                          "UTF-8") from None
    return [line for line in content.splitlines() if line.strip()]


def predict_command(
    run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="A run directory from `xmcfit train`."),
    texts: Optional[list[str]] = typer.Argument(None, metavar="[TEXT]...", help="Texts to label."),
    file: Optional[Path] = typer.Option(None, "--file", "-f",
                                        help="One text per line ('-' reads stdin); for bag-of-words runs an XMC-format features file."),
    top_k: int = typer.Option(5, "--top-k", "-k", min=1, help="Labels per input."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON lines, one per input."),
    probabilities: bool = typer.Option(False, "--probabilities", "-p",
                                       help="Add sigmoid(score), the probability a label applies (runs trained "
                                            "with the BCE loss; squared-hinge scores are margins)."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N.",
                                          autocompletion=completer(DEVICE_COMPLETIONS)),
) -> None:
    """Top-k labels (id, name when known, score) for new inputs, scored in batches.

    Scores are what the classifier was trained to output: margins for the squared-hinge loss (positives
    pushed to >= +1, negatives to <= -1; not probabilities), logits for BCE (--probabilities adds their
    sigmoid).
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    model = api.load(run_dir, device=device)
    kind = model.score_kind
    if model.input_kind == "bow":
        if texts or file is None:
            raise XmcfitError(f"{run_dir} was trained on bag-of-words features: pass --file FEATURES "
                              "(XMC text format) instead of TEXT")
        predictions = model.predict_file(file, top_k, probabilities)
        inputs = [f"{file}:{i}" for i in range(len(predictions))]
    else:
        inputs = _read_inputs(texts, file)
        predictions = model.predict(inputs, top_k, probabilities)
    if as_json:
        for text, labels in zip(inputs, predictions):
            typer.echo(json.dumps({"input": text, "score_kind": kind,
                                   "labels": [_json_label(asdict(label), probabilities) for label in labels]},
                                  allow_nan=False))
        return
    from xmcfit import report

    report.console().print(report.predictions_table(inputs, predictions, kind))


def _json_label(label: dict, probabilities: bool) -> dict:
    """A label for a JSON line: non-finite numbers become null (JSON has no NaN), no probability key unless asked."""
    if not probabilities:
        label.pop("probability", None)
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in label.items()}
