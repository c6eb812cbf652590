"""`xmcfit plan`, `xmcfit gpus`, `xmcfit profiles`: parse flags, call the planner, render tables."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import typer

from xmcfit import api
from xmcfit.api import (DEFAULTS, SIZE_HELP, ClassifierKind, ClassifierOptimizer, InputWeighting, LossName,
                        LossReduction, Pooling, Precision, ValueDtype)
from xmcfit.commands.choices import choice_enum, plain

Classifier = choice_enum("Classifier", ClassifierKind)
PrecisionChoice = choice_enum("PrecisionChoice", Precision)
OptimizerChoice = choice_enum("OptimizerChoice", ClassifierOptimizer)
DtypeChoice = choice_enum("DtypeChoice", ValueDtype)
LossChoice = choice_enum("LossChoice", LossName)
ReductionChoice = choice_enum("ReductionChoice", LossReduction)
WeightingChoice = choice_enum("WeightingChoice", InputWeighting)
PoolingChoice = choice_enum("PoolingChoice", Pooling)
TimeDevice = choice_enum("TimeDevice", ("gpu", "cpu"))  # xmcfit.plan.inputs.PlanDevice


def plan(
    labels: Optional[int] = typer.Option(None, "--labels", help="Number of labels L."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Dataset profile (see `xmcfit profiles`) or .toml path."),
    data: Optional[Path] = typer.Option(None, "--data", help="Dataset directory or file; its train split's statistics are read."),
    gpu: Optional[str] = typer.Option(None, "--gpu", help="GPU profile (see `xmcfit profiles`) or .toml path."),
    gpu_mem: Optional[str] = typer.Option(None, "--gpu-mem", help=f"Memory budget per device, e.g. 16G. {SIZE_HELP}."),
    gpu_index: int = typer.Option(0, "--gpu-index", help="Visible GPU to plan for when neither --gpu nor --gpu-mem is given."),
    all_gpus: bool = typer.Option(False, "--all-gpus", help="One row per GPU profile: fits or not, fan-in, precision, micro-batch, peak."),
    encoder: str = typer.Option("all-MiniLM-L6-v2", "--encoder", help="Encoder profile, .toml path, a directory with a transformers config.json, or a Hugging Face id in the local cache."),
    seq_len: Optional[int] = typer.Option(None, "--seq-len", help="Tokens per input (default: the dataset's typical length, else 128)."),
    batch: Optional[int] = typer.Option(None, "--batch", help="Effective (global) batch per optimizer step = micro-batch x accumulation x devices; a multiple of --devices (default: sized to the data's points, at most 128)."),
    devices: int = typer.Option(1, "--devices", help="Devices (training processes): the encoder replicated, the classifier split by labels; memory is priced per device."),
    epochs: int = typer.Option(DEFAULTS.epochs, "--epochs", help="Passes over the training data."),
    seed: int = typer.Option(0, "--seed", help="Seed of every random choice in training (recorded in the plan)."),
    precision: Optional[PrecisionChoice] = typer.Option(None, "--precision", help="Pin the precision."),
    classifier: Optional[Classifier] = typer.Option(None, "--classifier",
                                                    help="sparse (default) or dense: the L x d AdamW baseline."),
    fan_in: Optional[int] = typer.Option(None, "--fan-in", help="Pin the classifier's fan-in k."),
    classifier_optimizer: Optional[OptimizerChoice] = typer.Option(None, "--classifier-optimizer",
                                                                   help="Pin the classifier's optimizer."),
    classifier_dtype: Optional[DtypeChoice] = typer.Option(None, "--classifier-dtype",
                                                           help="Pin the classifier's values (bfloat16: Kahan updates)."),
    checkpointing: Optional[bool] = typer.Option(None, "--checkpointing/--no-checkpointing", help="Pin gradient checkpointing."),
    micro_batch: Optional[int] = typer.Option(None, "--micro-batch", help="Pin the micro-batch."),
    intermediate_dim: Optional[int] = typer.Option(None, "--intermediate-dim", help="Pin the intermediate layer width (0 = none)."),
    loss_chunk: Optional[int] = typer.Option(None, "--loss-chunk", help="Pin labels per chunk of the chunked loss."),
    aux_clusters: Optional[int] = typer.Option(None, "--aux-clusters", help="Pin the auxiliary head's clusters (0 = off)."),
    rewire_every: Optional[int] = typer.Option(None, "--rewire-every", help="Pin the rewiring interval (optimizer steps)."),
    encoder_lr: Optional[float] = typer.Option(None, "--encoder-lr", help="Pin the encoder's peak AdamW learning rate."),
    classifier_lr: Optional[float] = typer.Option(None, "--classifier-lr", help="Pin the classifier's peak learning rate."),
    loss: Optional[LossChoice] = typer.Option(None, "--loss", help="Pin the main loss."),
    loss_reduction: Optional[ReductionChoice] = typer.Option(None, "--loss-reduction",
                                                             help="Pin how the loss is reduced."),
    probe_epochs: Optional[int] = typer.Option(None, "--probe-epochs",
                                               help="Pin the linear-probe warm start: epochs of the heads alone on "
                                                    "frozen encoder features before end-to-end training (0 = none)."),
    dropout: Optional[float] = typer.Option(None, "--dropout", help="Pin the dropout on the pooled features."),
    input_weighting: Optional[WeightingChoice] = typer.Option(None, "--input-weighting",
                                                              help="Pin bag-of-words input weighting."),
    pooling: Optional[PoolingChoice] = typer.Option(None, "--pooling",
                                                    help="Pin how token states become one vector: the mean of the last "
                                                         "layer (default) or its [CLS] state (text encoders)."),
    tfidf: Optional[bool] = typer.Option(None, "--tfidf/--no-tfidf",
                                         help="Pin the TF-IDF side (a scorer over the input's words beside the "
                                              "encoder; on by default on one device)."),
    tfidf_fan_in: Optional[int] = typer.Option(None, "--tfidf-fan-in", help="Pin the TF-IDF side's words per label."),
    output: Optional[Path] = typer.Option(None, "-o", "--output",
                                          help="Write plan.json here (atomically); with --all-gpus, the rows as JSON."),
    as_json: bool = typer.Option(False, "--json", help="Print the plan JSON (with --all-gpus, a list of rows) to "
                                                       "stdout and nothing else."),
    time_on: Optional[TimeDevice] = typer.Option(None, "--device", help="Where the predicted step time is for: gpu (the --gpu profile's datasheet rates; the default) or cpu (this machine, as measured by `xmcfit calibrate`)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="With --device cpu: the training's CPU threads (default: what `xmcfit train` would use here)."),
    train_points: Optional[int] = typer.Option(None, "--train-points", min=1, help="Training points per epoch (default: the data's or the dataset profile's): sizes the batch, the TF-IDF side's rate and the time prediction (else one point per label)."),
    price_per_hour: Optional[list[str]] = typer.Option(None, "--price-per-hour", help="PROFILE=USD per GPU-hour (repeatable): a cost column."),
) -> None:
    """Choose a training configuration that fits the GPU, and show what each tensor family costs."""
    _plan_and_show(locals())


PINS = {"precision": "precision", "fan_in": "fan_in", "optimizer": "classifier_optimizer",
        "value_dtype": "classifier_dtype", "gradient_checkpointing": "checkpointing", "micro_batch": "micro_batch",
        "intermediate_dim": "intermediate_dim", "loss_chunk_size": "loss_chunk", "aux_clusters": "aux_clusters",
        "rewiring_interval": "rewire_every", "classifier": "classifier", "encoder_lr": "encoder_lr",
        "classifier_lr": "classifier_lr", "loss": "loss", "loss_reduction": "loss_reduction",
        "probe_epochs": "probe_epochs", "dropout": "dropout", "input_weighting": "input_weighting",
        "pooling": "pooling", "tfidf": "tfidf", "tfidf_fan_in": "tfidf_fan_in"}
"""xmcfit.plan's pins (xmcfit.plan.chooser.Pins) by the `xmcfit plan` parameter that sets each."""
PROBLEM = ("labels", "dataset", "data", "gpu_mem", "gpu", "encoder", "seq_len", "batch", "devices", "epochs", "seed",
           "output")
"""The `xmcfit plan` parameters xmcfit.plan and xmcfit.api.plan_all_gpus take as they are."""


def _plan_and_show(given: dict) -> None:
    """`xmcfit plan` with its parameters `given`: one API call, then the JSON or the tables."""
    import logging

    from xmcfit import report

    # Warnings (an encoder whose weights or tokenizer a training run would miss) go to stderr.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    pins = {pin: plain(given[name]) for pin, name in PINS.items()}
    problem = {name: given[name] for name in PROBLEM}
    prices = api.parse_prices(given["price_per_hour"])
    if given["all_gpus"]:
        rows = api.plan_all_gpus(**problem, train_points=given["train_points"], prices=prices, **pins)
        _show(api.all_gpus_json(rows, prices), report.all_gpus_table(rows, prices), given["output"], given["as_json"])
    else:
        result = api.plan(**problem, gpu_index=given["gpu_index"], time_device=plain(given["time_on"]),
                          threads=given["threads"], train_points=given["train_points"], **pins)
        _show(result.to_json(), report.plan_report(result, prices.get(result.inputs.gpu)), given["output"],
              given["as_json"])


def _show(text: str, shown: object, output: Optional[Path], as_json: bool) -> None:
    """Print the JSON `text` (--json) or the rendered `shown`, saying where the JSON was written (-o)."""
    from xmcfit import report

    if as_json:
        typer.echo(text, nl=False)
        return
    report.console().print(shown)
    if output is not None:
        report.console().print(f"wrote {output}")


def gpus(as_json: bool = typer.Option(False, "--json", help="Print the GPUs as a JSON list ([] when none).")) -> None:
    """List the GPUs pynvml can see (name, total/free memory, compute capability)."""
    from xmcfit import report

    try:
        found = api.gpus()
    except api.NoGpuError as err:
        typer.echo(str(err), err=as_json)  # with --json stdout stays parseable: []
        found = []
        if not as_json:
            return
    if as_json:
        typer.echo(json.dumps([{**asdict(g), "bf16": g.bf16} for g in found], indent=2))
        return
    report.console().print(report.gpus_table(found))


def profiles(as_json: bool = typer.Option(False, "--json", help="Print the profiles as one JSON object.")) -> None:
    """List the shipped GPU, encoder and dataset profiles."""
    from xmcfit import report

    found = api.profiles()
    if as_json:
        typer.echo(json.dumps({kind: [asdict(p) for p in items] for kind, items in found.items()}, indent=2))
        return
    report.console().print(report.profiles_tables(found["gpus"], found["encoders"], found["datasets"]))
