"""Measured step times of a training run beside the time model's prediction (step_time.json, memory.json's
companion in the run directory).

The trainer times every optimizer step (collate, forward, backward, update, rewiring); the steady state is
the end-to-end phase's steps after the first WARMUP_STEPS (the first step builds the sparse layer's cached
patterns and warms the allocators). The prediction uses the device the run is on: the datasheet peaks of the
GPU profile its CUDA device's name matches, or this CPU's calibration at the run's thread count
(`xmcfit calibrate`); without rates the file says how to get them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from xmcfit.atomic import atomic_write_text
from xmcfit.plan.schema import Plan
from xmcfit.plan.time_model import DeviceRates, Workload, predict_plan_time

WARMUP_STEPS = 3


def workload_from_dataset(dataset) -> Workload:
    """The training split's points and, for bag-of-words input, its nonzero features per point."""
    n = max(1, dataset.n_points)
    nnz = dataset.features.nnz / n if dataset.features is not None else 0.0
    return Workload(n_train_points=n, nnz_per_point=nnz)


def run_rates(plan: Plan, device: torch.device, threads: int) -> tuple[DeviceRates | None, str]:
    """(rates, "") for the device this run is on, or (None, why not)."""
    if device.type == "cpu":
        from xmcfit.calibrate import cached_calibration

        found = cached_calibration(threads)
        if found is None:
            return None, f"no CPU calibration for {threads} thread(s): run `xmcfit calibrate --threads {threads}`"
        return found.rates, ""
    from xmcfit.plan.profiles import gpu_rates, load_gpu, profile_for_device_name

    name = torch.cuda.get_device_name(device)
    profile = profile_for_device_name(name)
    rates = gpu_rates(load_gpu(profile)) if profile is not None else None
    return (rates, "") if rates is not None else (None, f"no GPU profile with datasheet rates matches {name!r}")


def _error_pct(predicted: float | None, measured: float | None) -> float | None:
    if predicted is None or not measured:
        return None
    return 100.0 * (predicted - measured) / measured


def _quantile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class StepClock:
    """Seconds of each end-to-end optimizer step of this process's run (probe steps are not timed)."""

    seconds: list[float] = field(default_factory=list)

    def add(self, seconds: float, phase: str) -> None:
        if phase == "end_to_end":
            self.seconds.append(seconds)

    def steady(self) -> list[float]:
        """The steps after the warm-up (all of them when too few were run to drop any)."""
        return self.seconds[WARMUP_STEPS:] if len(self.seconds) > WARMUP_STEPS else list(self.seconds)


@dataclass(frozen=True, kw_only=True)
class StepTimeReport:
    """step_time.json: predicted seconds per step (and per phase) beside the measured steady-state steps."""

    device: str
    threads: int
    """torch intra-op threads of the run."""
    n_steps_timed: int
    warmup_steps_dropped: int
    measured_median_s: float | None
    measured_p10_s: float | None
    measured_p90_s: float | None
    predicted_step_s: float | None
    predicted_phase_s: dict[str, float] | None
    dominant_phase: str | None
    rates: str
    """Which rates the prediction used, or why there is none."""
    busy: str = ""
    """The last "machine busy" note of the run ("" when the machine had a CPU for every runnable thread)."""
    predicted_run_s: float | None = None
    """The time model's whole run: the probe epochs (encoding the training set once, then the heads) and the
    end-to-end epochs."""
    measured_run_s: float | None = None
    """Wall seconds of the training loop, from the first probe or end-to-end step to the final weights written
    (checkpoints included; setup and data reading not); None for a run resumed or restarted after running out
    of memory, whose loop ran in parts."""

    @property
    def error_pct(self) -> float | None:
        """(predicted - measured) / measured of the median step, in %."""
        return _error_pct(self.predicted_step_s, self.measured_median_s)

    @property
    def run_error_pct(self) -> float | None:
        """The same for the whole run."""
        return _error_pct(self.predicted_run_s, self.measured_run_s)

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "error_pct": self.error_pct, "run_error_pct": self.run_error_pct},
                          indent=2) + "\n"

    def save(self, path: Path) -> None:
        atomic_write_text(path, self.to_json())


def step_time_report(plan: Plan, workload: Workload, clock: StepClock, device: torch.device, threads: int,
                     busy: str = "", run_seconds: float | None = None) -> StepTimeReport:
    """The measured steady-state step times of `clock` (and `run_seconds`, the whole loop's wall time when it
    ran in one piece) beside the prediction for this device."""
    steady = sorted(clock.steady())
    rates, why_not = run_rates(plan, device, threads)
    est = predict_plan_time(plan, rates, workload) if rates is not None else None
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return StepTimeReport(
        device=name, threads=threads, n_steps_timed=len(steady),
        warmup_steps_dropped=len(clock.seconds) - len(steady),
        measured_median_s=_quantile(steady, 0.5) if steady else None,
        measured_p10_s=_quantile(steady, 0.1) if steady else None,
        measured_p90_s=_quantile(steady, 0.9) if steady else None,
        predicted_step_s=est.step_seconds if est else None,
        predicted_phase_s=dict(est.phase_seconds) if est else None,
        dominant_phase=est.dominant_phase if est else None,
        rates=rates.name if rates is not None else why_not, busy=busy,
        predicted_run_s=est.run_seconds if est else None, measured_run_s=run_seconds)
