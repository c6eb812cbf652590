"""TrainOptions: how a training run runs (device, pauses, logging, checkpoints, progress), everything of
`xmcfit train` except what to train (the plan) and on what (the data); one frozen, checked value that the
API passes from `xmcfit.train` down to the trainer instead of a dict of keyword arguments."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from xmcfit.errors import XmcfitError

if TYPE_CHECKING:
    from xmcfit.progress import Progress
    from xmcfit.train.checkpoint import CheckpointPolicy
    from xmcfit.train.epoch import StepStats

_POSITIVE_INTS = (("max_steps", "--max-steps"), ("limit", "--limit"), ("log_every", "--log-every"))


@dataclass(frozen=True, kw_only=True)
class TrainOptions:
    """How to run a training; each field is the `xmcfit train` flag of the same name."""

    device: str = "auto"
    """auto, cpu, cuda or cuda:N."""
    max_steps: int | None = None
    """Pause with a checkpoint after this many optimizer steps in all (xmcfit.TrainingPaused)."""
    limit: int | None = None
    """Train on the first N points of the data only."""
    text_fields: tuple[str, ...] | None = None
    """JSON-lines fields that make a point's text (None: guessed from the first record)."""
    label_field: str | None = None
    """JSON-lines field holding a point's labels (None: guessed)."""
    auto_recover: bool = False
    """On GPU out-of-memory halve the micro-batch, double accumulation and go on."""
    log_every: int = 10
    """Optimizer steps between train_log.jsonl records."""
    log_to: tuple[str, ...] = ()
    """Extra step loggers ("tensorboard")."""
    checkpoints: CheckpointPolicy | None = None
    """When to checkpoint besides epoch ends, and how many to keep (None: the defaults)."""
    on_step: Callable[[StepStats], None] | None = None
    """Called with the trainer's StepStats after every optimizer step (every process of a sharded run)."""
    progress: Progress = True
    """What the leading process shows while it trains (xmcfit.progress.Progress): True a bar, False nothing,
    a function a TrainEvent per step."""

    def __post_init__(self) -> None:
        for name in ("text_fields", "log_to"):  # one name, not a list of letters; lists become tuples
            value = getattr(self, name)
            if isinstance(value, str):
                object.__setattr__(self, name, (value,))
            elif isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        self._check_values()
        self._check_callables()

    def _check_values(self) -> None:
        from xmcfit.device import check_device_name
        from xmcfit.plan.schema import check_value

        for name, flag in _POSITIVE_INTS:
            value = getattr(self, name)
            if value is not None:
                check_value(int, value, flag)
                if value < 1:
                    raise XmcfitError(f"{flag} {value}: must be >= 1")
        check_value(bool, self.auto_recover, "--auto-recover")
        for values, flag in ((self.text_fields, "--text-field"), (self.log_to, "--log-to")):
            if not isinstance(values or (), tuple) or not all(isinstance(v, str) for v in values or ()):
                raise XmcfitError(f"{flag} {values!r}: must be a list of strings")
        if self.label_field is not None:
            check_value(str, self.label_field, "--label-field")
        check_value(str, self.device, "--device")
        check_device_name(self.device)

    def _check_callables(self) -> None:
        from xmcfit.train.loggers import check_log_targets

        check_log_targets(self.log_to)
        if self.checkpoints is not None:
            from xmcfit.train.checkpoint import CheckpointPolicy

            if not isinstance(self.checkpoints, CheckpointPolicy):
                raise XmcfitError(f"checkpoints={self.checkpoints!r}: must be an xmcfit.train.checkpoint."
                                  "CheckpointPolicy")
        if self.on_step is not None and not callable(self.on_step):
            raise XmcfitError(f"on_step={self.on_step!r}: must be callable")
        if not isinstance(self.progress, bool) and not callable(self.progress):
            raise XmcfitError(f"progress={self.progress!r}: must be True, False or a function of a TrainEvent")

    def rank_kwargs(self) -> dict[str, Any]:
        """What xmcfit.train.distributed.train_rank takes from these options."""
        return dict(device=self.device, max_steps=self.max_steps, log_every=self.log_every,
                    checkpoints=self.checkpoints, on_step=self.on_step)


def checkpoint_policy(every_steps: int | None = None, every_minutes: float | None = 30.0,
                      keep: int = 2) -> CheckpointPolicy:
    """A CheckpointPolicy (`--save-every-steps`, `--save-every-minutes`, `--keep-checkpoints`); imports torch."""
    from xmcfit.train.checkpoint import CheckpointPolicy

    return CheckpointPolicy(every_steps=every_steps, every_minutes=every_minutes, keep=keep)

