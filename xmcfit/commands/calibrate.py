"""`xmcfit calibrate`: measure this CPU's rates for the time model and cache them (xmcfit.calibrate)."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Optional

import typer


def calibrate(
    threads: Optional[int] = typer.Option(None, "--threads", min=1,
                                          help="CPU threads to measure at (default: what `xmcfit train` would use "
                                               "here: OMP_NUM_THREADS, else the cores this process may use)."),
    seconds: float = typer.Option(2.0, "--seconds", min=0.1, max=30.0,
                                  help="Seconds per measurement (five measurements)."),
    as_json: bool = typer.Option(False, "--json", help="Print the measured rates as JSON."),
) -> None:
    """Time a GEMM, a memory stream, an embedding-bag gather and an op launch on this CPU (under 20 s), and
    cache the rates that `xmcfit plan --device cpu` and `xmcfit train` predict step times from."""
    from xmcfit import api, report

    calibration, path = api.calibrate_cpu(threads, seconds)
    if as_json:
        typer.echo(json.dumps({**asdict(calibration), "cache": str(path)}, indent=2))
        return
    report.console().print(report.calibration_table(calibration.rates), f"cached in {path}")
