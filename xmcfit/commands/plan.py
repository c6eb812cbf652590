"""`xmcfit plan`, `xmcfit gpus`, `xmcfit profiles`: parse flags, call the planner, render tables."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, get_args

import typer

from xmcfit.errors import XmcfitError
from xmcfit.plan.defaults import DEFAULTS
from xmcfit.plan.schema import (ClassifierKind, ClassifierOptimizer, InputWeighting, LossName, LossReduction, Precision,
                                ValueDtype)
from xmcfit.plan.units import SIZE_HELP

_CHOICES = {  # each flag's values are the plan schema's Literal type
    "--classifier": get_args(ClassifierKind),
    "--precision": get_args(Precision),
    "--classifier-optimizer": get_args(ClassifierOptimizer),
    "--classifier-dtype": get_args(ValueDtype),
    "--loss": get_args(LossName),
    "--loss-reduction": get_args(LossReduction),
    "--input-weighting": get_args(InputWeighting),
}


def _one_of(flag: str) -> str:
    """'a, b or c' for the help text."""
    *rest, last = _CHOICES[flag]
    return f"{', '.join(rest)} or {last}" if rest else last


def _metavar(flag: str) -> str:
    """'[a|b|c]': the choices where help would otherwise show `<str>`."""
    return "[" + "|".join(_CHOICES[flag]) + "]"


def _choice(flag: str, value: Optional[str]) -> Optional[str]:
    if value is not None and value not in _CHOICES[flag]:
        raise XmcfitError(f"{flag} {value!r}: must be one of {', '.join(_CHOICES[flag])}")
    return value


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
    batch: int = typer.Option(DEFAULTS.target_batch, "--batch", help="Effective (global) batch per optimizer step = micro-batch x accumulation x devices; a multiple of --devices."),
    devices: int = typer.Option(1, "--devices", help="Devices (training processes): the encoder replicated, the classifier split by labels; memory is priced per device."),
    epochs: int = typer.Option(DEFAULTS.epochs, "--epochs", help="Passes over the training data."),
    seed: int = typer.Option(0, "--seed", help="Seed of every random choice in training (recorded in the plan)."),
    precision: Optional[str] = typer.Option(None, "--precision", metavar=_metavar("--precision"),
                                            help=f"Pin: {_one_of('--precision')}."),
    classifier: Optional[str] = typer.Option(None, "--classifier", metavar=_metavar("--classifier"),
                                             help="sparse (default) or dense: the L x d AdamW baseline."),
    fan_in: Optional[int] = typer.Option(None, "--fan-in", help="Pin the classifier's fan-in k."),
    classifier_optimizer: Optional[str] = typer.Option(None, "--classifier-optimizer",
                                                       metavar=_metavar("--classifier-optimizer"), help=f"Pin: {_one_of('--classifier-optimizer')}."),
    classifier_dtype: Optional[str] = typer.Option(None, "--classifier-dtype", metavar=_metavar("--classifier-dtype"), help=f"Pin: {_one_of('--classifier-dtype')} (Kahan updates)."),
    checkpointing: Optional[bool] = typer.Option(None, "--checkpointing/--no-checkpointing", help="Pin gradient checkpointing."),
    micro_batch: Optional[int] = typer.Option(None, "--micro-batch", help="Pin the micro-batch."),
    intermediate_dim: Optional[int] = typer.Option(None, "--intermediate-dim", help="Pin the intermediate layer width (0 = none)."),
    loss_chunk: Optional[int] = typer.Option(None, "--loss-chunk", help="Pin labels per chunk of the chunked loss."),
    aux_clusters: Optional[int] = typer.Option(None, "--aux-clusters", help="Pin the auxiliary head's clusters (0 = off)."),
    rewire_every: Optional[int] = typer.Option(None, "--rewire-every", help="Pin the rewiring interval (optimizer steps)."),
    encoder_lr: Optional[float] = typer.Option(None, "--encoder-lr", help="Pin the encoder's peak AdamW learning rate."),
    classifier_lr: Optional[float] = typer.Option(None, "--classifier-lr", help="Pin the classifier's peak learning rate."),
    loss: Optional[str] = typer.Option(None, "--loss", metavar=_metavar("--loss"), help=f"Pin the main loss: {_one_of('--loss')}."),
    loss_reduction: Optional[str] = typer.Option(None, "--loss-reduction", metavar=_metavar("--loss-reduction"),
                                                 help=f"Pin how the loss is reduced: {_one_of('--loss-reduction')}."),
    probe_epochs: Optional[int] = typer.Option(None, "--probe-epochs",
                                               help="Pin the linear-probe warm start: epochs of the heads alone on "
                                                    "frozen encoder features before end-to-end training (0 = none)."),
    dropout: Optional[float] = typer.Option(None, "--dropout", help="Pin the dropout on the pooled features."),
    input_weighting: Optional[str] = typer.Option(None, "--input-weighting", metavar=_metavar("--input-weighting"),
                                                  help=f"Pin bag-of-words input weighting: {_one_of('--input-weighting')}."),
    tfidf: Optional[bool] = typer.Option(None, "--tfidf/--no-tfidf",
                                         help="Pin the TF-IDF side (a scorer over the input's words beside the "
                                              "encoder; on by default on one device)."),
    tfidf_fan_in: Optional[int] = typer.Option(None, "--tfidf-fan-in", help="Pin the TF-IDF side's words per label."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write plan.json here (atomically)."),
    as_json: bool = typer.Option(False, "--json", help="Print the plan JSON to stdout and nothing else."),
) -> None:
    """Choose a training configuration that fits the GPU, and show what each tensor family costs."""
    import logging

    # Warnings (an encoder whose weights or tokenizer a training run would miss) go to stderr.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from xmcfit.plan.chooser import Pins, choose_plan
    from xmcfit.plan.inputs import Budget, make_request, plan_every_gpu_profile

    pins = Pins(precision=_choice("--precision", precision), fan_in=fan_in,
                optimizer=_choice("--classifier-optimizer", classifier_optimizer),
                value_dtype=_choice("--classifier-dtype", classifier_dtype), gradient_checkpointing=checkpointing,
                micro_batch=micro_batch, intermediate_dim=intermediate_dim, loss_chunk_size=loss_chunk,
                aux_clusters=aux_clusters, rewiring_interval=rewire_every,
                classifier=_choice("--classifier", classifier), encoder_lr=encoder_lr, classifier_lr=classifier_lr,
                loss=_choice("--loss", loss), loss_reduction=_choice("--loss-reduction", loss_reduction),
                probe_epochs=probe_epochs, dropout=dropout,
                input_weighting=_choice("--input-weighting", input_weighting), tfidf=tfidf, tfidf_fan_in=tfidf_fan_in)
    # --all-gpus replaces the budget per row, so it needs no GPU and no budget flag.
    placeholder = Budget("manual", 1, True) if all_gpus and gpu is None and gpu_mem is None else None
    request = make_request(labels=labels, dataset=dataset, data=str(data) if data else None, gpu_mem=gpu_mem, gpu=gpu,
                           gpu_index=gpu_index, encoder=encoder, seq_len=seq_len, batch=batch, devices=devices,
                           epochs=epochs, seed=seed, pins=pins, budget=placeholder)
    from xmcfit import report

    if all_gpus:
        report.console().print(report.all_gpus_table(plan_every_gpu_profile(request)))
        return
    result = choose_plan(request)
    if output is not None:
        result.save(output)
    if as_json:
        typer.echo(result.to_json(), nl=False)
        return
    report.console().print(report.plan_report(result))
    if output is not None:
        report.console().print(f"wrote {output}")


def gpus() -> None:
    """List the GPUs pynvml can see (name, total/free memory, compute capability)."""
    from xmcfit import report
    from xmcfit.plan.hardware import NoGpuError, query_gpus

    try:
        found = query_gpus()
    except NoGpuError as err:
        typer.echo(str(err))
        return
    report.console().print(report.gpus_table(found))


def profiles() -> None:
    """List the shipped GPU, encoder and dataset profiles."""
    from xmcfit import report
    from xmcfit.profiles import load_dataset, load_encoder, load_gpu, profile_names

    report.console().print(report.profiles_tables([load_gpu(n) for n in profile_names("gpus")],
                                                  [load_encoder(n) for n in profile_names("encoders")],
                                                  [load_dataset(n) for n in profile_names("datasets")]))
