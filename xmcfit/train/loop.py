"""The training recipe: set up what the plan describes, run the steps, checkpoint, report memory.

This is the one place where parts are wired together (torchtune's recipe pattern). Components
(model, sparse layer, rewirer, data) know nothing of each other; `run_training` reads only the plan,
the data and the run directory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import signal
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from xmcfit import __version__
from xmcfit.errors import XmcfitError
from xmcfit.model import XMCModel, build_model
from xmcfit.plan.memory import reprice
from xmcfit.plan.schema import Plan
from xmcfit.seed import seed_everything
from xmcfit.sparse import SETRewirer, chunked_loss
from xmcfit.train import checkpoint as ckpt
from xmcfit.train.optim import build_classifier_optimizer, build_encoder_optimizer, set_learning_rates
from xmcfit.train.rundir import RunFiles, TrainData, load_train_data, prepare_run_dir, write_final_weights
from xmcfit.train.memory_report import MemoryMeter, memory_report
from xmcfit.train.schedules import cosine_decay, fraction_step

log = logging.getLogger(__name__)

# A run of this many consecutive non-finite losses stops training: a diverged run wastes the GPU.
MAX_BAD_STEPS_IN_A_ROW = 20


class TrainingStopped(XmcfitError):
    """Training ended early (interrupt, step limit, divergence); the last good checkpoint is on disk."""


@dataclass(frozen=True)
class StepStats:
    """What the progress bar and the JSONL log show for one optimizer step."""

    step: int
    total_steps: int
    epoch: int
    loss: float
    main_loss: float
    aux_loss: float
    aux_weight: float
    lr_mult: float
    connections_moved: int
    points_per_s: float
    memory_bytes: int
    skipped_steps: int


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    steps: int
    epochs_done: int
    skipped_steps: int
    memory: dict[str, Any]
    final_loss: float


@dataclass
class _Progress:
    """Mutable counters of the loop; saved in every checkpoint."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    skipped: int = 0
    bad_in_a_row: int = 0
    moved_total: int = 0


@dataclass(frozen=True)
class _StepOut:
    loss: float
    main: float
    aux: float
    alpha: float
    lr_mult: float
    finite: bool


_AMP_DTYPES = {"bf16_amp": torch.bfloat16, "fp16_amp": torch.float16}
_VALUE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def pick_device(requested: str | None) -> torch.device:
    """`cuda` when available (or asked for), else the CPU; asking for an absent CUDA is a user error."""
    if requested in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise XmcfitError(f"--device {requested}: no CUDA device is visible; use --device cpu")
    return torch.device(requested)


class _Stepper:
    """Owns the per-step objects (model, optimizers, scaler, rewirer) and performs one optimizer step."""

    def __init__(self, plan: Plan, model: XMCModel, device: torch.device, clusters: torch.Tensor | None,
                 total_steps: int) -> None:
        self.plan, self.model, self.device, self.clusters = plan, model, device, clusters
        self.total_steps = total_steps
        self.warmup_steps = int(plan.training.warmup_fraction * total_steps)
        self.enc_opt = build_encoder_optimizer(model, plan)
        self.cls_opt = build_classifier_optimizer(model, plan)
        self.amp_dtype = _AMP_DTYPES.get(plan.precision)
        self.scaler = torch.amp.GradScaler(device.type, enabled=plan.precision == "fp16_amp")
        self.aux_end = fraction_step(plan.aux.cutoff_fraction, total_steps) if plan.aux.enabled else 0
        rw = plan.rewiring
        self.rewirer = None
        if plan.classifier.kind == "sparse" and rw.enabled:
            end = fraction_step(rw.stop_fraction, total_steps)
            self.rewirer = SETRewirer(
                model.classifier, self.cls_opt,
                fraction_schedule=lambda s, e=end, v=rw.initial: cosine_decay(s, e, v),
                interval=rw.interval_steps, end_step=end, mode=rw.mode, seed=plan.seed + 1,
                chunk_rows=rw.chunk_rows,
            )

    @property
    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.enc_opt, self.cls_opt]

    def aux_weight(self, step: int) -> float:
        return cosine_decay(step, self.aux_end, self.plan.aux.initial_weight) if self.plan.aux.enabled else 0.0

    def _micro_loss(self, batch: dict[str, torch.Tensor], alpha: float) -> tuple[torch.Tensor, float, float]:
        cls = self.plan.classifier
        autocast = (torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype
                    else contextlib.nullcontext())
        with autocast:
            feats = self.model.features(batch)  # (micro_batch, d)
        # The classifier and its loss run outside autocast, in the classifier's storage dtype: the chunked
        # loss keeps fp32 logits per chunk, which is what the planner prices.
        feats = feats.to(_VALUE_DTYPES[cls.value_dtype])
        positives = batch["positives"]  # (n_pos, 2) [row, label]
        main = chunked_loss(feats, self.model.classifier, positives, loss=cls.loss, chunk_size=cls.loss_chunk_size)
        if alpha <= 0.0 or self.model.aux_head is None:
            return main, float(main.detach()), 0.0
        aux_logits = self.model.aux_head(feats.float())  # (micro_batch, n_clusters)
        targets = torch.zeros_like(aux_logits)
        targets[positives[:, 0], self.clusters[positives[:, 1]]] = 1.0
        aux = F.binary_cross_entropy_with_logits(aux_logits, targets)
        return (1.0 - alpha) * main + alpha * aux, float(main.detach()), float(aux.detach())

    def step(self, micro_batches: list[dict[str, torch.Tensor]], step: int) -> "_StepOut":
        """One optimizer step over `micro_batches` (gradient accumulation); skipped when the loss is not finite."""
        alpha = self.aux_weight(step)
        lr_mult = set_learning_rates(self.optimizers, step, self.total_steps, self.warmup_steps)
        total = main_sum = aux_sum = 0.0
        finite = True
        for batch in micro_batches:
            batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
            loss, main, aux = self._micro_loss(batch, alpha)
            if not torch.isfinite(loss):
                finite = False
                break
            self.scaler.scale(loss / len(micro_batches)).backward()
            total += float(loss.detach()) / len(micro_batches)
            main_sum += main / len(micro_batches)
            aux_sum += aux / len(micro_batches)
        if finite:
            parts = self.model.parts()
            max_norm = self.plan.training.max_grad_norm
            if max_norm > 0:
                self.scaler.unscale_(self.enc_opt)
                enc_norm = torch.nn.utils.clip_grad_norm_(parts.encoder, max_norm)  # the norm before clipping
            else:
                enc_norm = torch.nn.utils.get_total_norm([p.grad for p in parts.encoder if p.grad is not None])
            if not self.scaler.is_enabled():
                # A finite loss can still back-propagate a non-finite gradient; one such step would poison the
                # weights for good, so it is skipped like a non-finite loss (the fp16 GradScaler does this).
                rest = torch.nn.utils.get_total_norm([p.grad for p in parts.heads + parts.classifier
                                                      if p.grad is not None])
                finite = bool(torch.isfinite(enc_norm + rest))
        if finite:
            self.scaler.step(self.enc_opt)
            self.scaler.step(self.cls_opt)
            self.scaler.update()
        self.zero_grad()
        return _StepOut(total, main_sum, aux_sum, alpha, lr_mult, finite)

    def zero_grad(self) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)

    def rewire(self, step: int) -> int:
        if self.rewirer is None:
            return 0
        stats = self.rewirer.step(step)
        return int(stats.n_moved) if stats is not None else 0

    # -- checkpoint state --------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "model": self.model.state_dict(),
            "enc_opt": self.enc_opt.state_dict(),
            "cls_opt": self.cls_opt.state_dict(),
            "scaler": self.scaler.state_dict(),
        }
        if self.rewirer is not None:
            state["rewirer_rng"] = self.rewirer.generator.get_state()
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"], strict=True)
        self.enc_opt.load_state_dict(state["enc_opt"])
        self.cls_opt.load_state_dict(state["cls_opt"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        if self.rewirer is not None:
            self.rewirer.generator.set_state(state["rewirer_rng"])


def _rng_state() -> dict[str, Any]:
    import random

    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
                             "python_pos": random.getstate()[2], "numpy": np.random.get_state()[1].tolist(),
                             "numpy_pos": int(np.random.get_state()[2])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    import random

    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), state["python_pos"]))
    np.random.set_state(("MT19937", np.array(state["numpy"], dtype=np.uint32), state["numpy_pos"], 0, 0.0))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _epoch_batches(n_points: int, micro_batch: int, seed: int, epoch: int) -> list[np.ndarray]:
    """The epoch's shuffled micro-batches: a pure function of (seed, epoch), so resuming replays them."""
    order = np.random.default_rng([seed, epoch]).permutation(n_points)
    return [order[i : i + micro_batch] for i in range(0, n_points, micro_batch)]


def steps_per_epoch(n_points: int, micro_batch: int, grad_accum: int) -> int:
    return math.ceil(math.ceil(n_points / micro_batch) / grad_accum)


@dataclass
class _StopFlag:
    signum: int | None = None


@contextlib.contextmanager
def _catch_stop_signals(flag: _StopFlag):
    """On SIGINT/SIGTERM finish the current step, then checkpoint and stop (instead of dying mid-write)."""
    def handler(signum, _frame):
        flag.signum = signum

    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for s in previous:
            signal.signal(s, handler)
    except ValueError:  # not the main thread: leave signals alone
        previous = {}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def run_training(
    plan: Plan,
    run_dir: Path,
    data: TrainData,
    *,
    device: str | None = None,
    resume: bool = False,
    max_steps: int | None = None,
    log_every: int = 10,
    auto_recover: bool = False,
    on_step: Callable[[StepStats], None] | None = None,
) -> TrainResult:
    """Train `plan` on `data`, writing checkpoints, a JSONL log and memory.json into `run_dir`.

    `max_steps` stops (with a checkpoint) after that many optimizer steps in total; `--resume` continues.
    Raises TrainingStopped (one line, non-zero exit) when interrupted or diverged, with work saved.
    """
    dev = pick_device(device)
    files = RunFiles(run_dir)
    seed_everything(plan.seed)
    meter = MemoryMeter(dev)
    model = build_model(plan, data.encoder_source, pretrained=not resume)
    model.to(dev)
    n_points = data.dataset.n_points
    t = plan.training
    per_epoch = steps_per_epoch(n_points, t.micro_batch, t.grad_accum)
    total_steps = per_epoch * t.epochs
    clusters = data.clusters.to(dev) if data.clusters is not None else None
    stepper = _Stepper(plan, model, dev, clusters, total_steps)
    progress = _Progress()
    if resume:
        folder = ckpt.latest_checkpoint(run_dir)
        if folder is None:
            raise XmcfitError(f"{run_dir}: no complete checkpoint to resume from")
        state = ckpt.load_checkpoint(folder)
        stepper.load_state(state["train"])
        progress = _Progress(**state["progress"])
        _set_rng_state(state["rng"])
        log.info("resumed from %s at step %d", folder.name, progress.step)

    def save() -> None:
        ckpt.save_checkpoint(run_dir, progress.step, {
            "train": stepper.state(), "progress": vars(progress), "rng": _rng_state(),
        })

    flag = _StopFlag()
    last_loss = float("nan")
    model.train()
    meter.start()
    with _catch_stop_signals(flag), open(files.log, "a") as log_fh:
        while progress.epoch < t.epochs:
            batches = _epoch_batches(n_points, t.micro_batch, plan.seed, progress.epoch)
            groups = [batches[i : i + t.grad_accum] for i in range(0, len(batches), t.grad_accum)]
            while progress.batch_in_epoch < len(groups):
                group = groups[progress.batch_in_epoch]
                tick = time.perf_counter()
                micro = [data.collate(rows) for rows in group]
                try:
                    out = stepper.step(micro, progress.step)
                except torch.OutOfMemoryError as err:
                    # The failed step's frames (held by the traceback while this block runs, and so during
                    # the resumed run below) keep its activations and the old model and optimizer alive.
                    err.__traceback__ = None
                    stepper.zero_grad()
                    save()
                    smaller = _recovery_plan(plan, run_dir, auto_recover)  # raises unless recovering
                    del stepper, model
                    return run_training(smaller, run_dir, data, device=device, resume=True, max_steps=max_steps,
                                        log_every=log_every, auto_recover=auto_recover, on_step=on_step)
                loss, main, aux, alpha, finite = out.loss, out.main, out.aux, out.alpha, out.finite
                if finite:
                    progress.bad_in_a_row = 0
                    last_loss = loss
                else:
                    progress.skipped += 1
                    progress.bad_in_a_row += 1
                    if progress.bad_in_a_row >= MAX_BAD_STEPS_IN_A_ROW:
                        raise TrainingStopped(
                            f"loss was not finite for {progress.bad_in_a_row} steps in a row at step "
                            f"{progress.step}; the last good checkpoint in {run_dir} is intact. "
                            "Lower the learning rates or use --precision bf16_amp/fp32 in `xmcfit plan`"
                        )
                moved = stepper.rewire(progress.step + 1)
                progress.moved_total += moved
                progress.step += 1
                progress.batch_in_epoch += 1
                n_in_step = sum(len(rows) for rows in group)
                stats = StepStats(
                    step=progress.step, total_steps=total_steps, epoch=progress.epoch, loss=loss,
                    main_loss=main, aux_loss=aux, aux_weight=alpha,
                    lr_mult=out.lr_mult,
                    connections_moved=progress.moved_total,
                    points_per_s=n_in_step / max(1e-9, time.perf_counter() - tick),
                    memory_bytes=meter.current_bytes(), skipped_steps=progress.skipped,
                )
                if on_step is not None:
                    on_step(stats)
                if progress.step % log_every == 0 or progress.step == total_steps:
                    log_fh.write(json.dumps(vars_of(stats)) + "\n")
                    log_fh.flush()
                if flag.signum is not None or (max_steps is not None and progress.step >= max_steps):
                    save()
                    why = (f"interrupted by signal {flag.signum}" if flag.signum is not None
                           else f"stopped at --max-steps {max_steps}")
                    raise TrainingStopped(
                        f"{why} at step {progress.step}/{total_steps}; checkpoint saved, continue with "
                        f"`xmcfit train --resume {run_dir}`"
                    )
            progress.epoch += 1
            progress.batch_in_epoch = 0
            save()
    peak = meter.stop()
    report = memory_report(plan, model, stepper.optimizers, peak, dev)
    write_final_weights(files, model, report, epochs_done=progress.epoch, steps=progress.step)
    return TrainResult(run_dir, progress.step, progress.epoch, progress.skipped, report, last_loss)


def vars_of(stats: StepStats) -> dict[str, Any]:
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in vars(stats).items()}


def _recovery_plan(plan: Plan, run_dir: Path, auto_recover: bool) -> Plan:
    """After an out-of-memory error: half the micro-batch, twice the accumulation (same effective batch).

    Without --auto-recover (or at micro-batch 1) raise TrainingStopped naming the largest planned term.
    """
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    t = plan.training
    terms = plan.memory.terms_bytes
    largest = max(terms, key=lambda name: terms[name]) if terms else "unknown"
    if not auto_recover or t.micro_batch == 1:
        raise TrainingStopped(
            f"out of GPU memory at micro-batch {t.micro_batch} (largest planned term: {largest}); state saved in "
            f"{run_dir}. Re-plan with `xmcfit plan --micro-batch {max(1, t.micro_batch // 2)}` or a smaller "
            "--gpu-mem, or resume with --auto-recover"
        )
    smaller = reprice(replace(plan, training=replace(t, micro_batch=t.micro_batch // 2, grad_accum=t.grad_accum * 2)))
    smaller.save(run_dir / "plan.json")
    log.warning("out of memory: micro-batch %d -> %d, accumulation %d -> %d", t.micro_batch,
                smaller.training.micro_batch, t.grad_accum, smaller.training.grad_accum)
    return smaller
