"""Training progress for Python callers: a TrainEvent per optimizer step (step, epoch, loss, time left),
and the context that turns `progress=` (True, False or a function) into the trainer's step callback."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

if TYPE_CHECKING:
    from xmcfit.plan.schema import Plan
    from xmcfit.train.epoch import StepStats


@dataclass(frozen=True)
class TrainEvent:
    """One optimizer step, as a progress callback receives it."""

    step: int
    """Optimizer steps done, this one included (1-based), over both phases."""
    total_steps: int
    epoch: int
    """The epoch of this step, 1-based (probe epochs first), as train_log.jsonl and the screen count."""
    phase: str
    """"probe" (heads on frozen features) or "end_to_end"."""
    loss: float
    points_per_s: float
    memory_bytes: int
    """Peak device memory so far (bytes)."""
    eta_s: float | None
    """Seconds left in the current phase at its own pace (None until the phase has run one step)."""
    stats: StepStats
    """Everything the trainer reports for the step (aux loss, learning-rate factor, connections rewired)."""


class EventFeed:
    """Turns StepStats into TrainEvents for `send`, with each phase's time left (xmcfit.report.PhaseClock)."""

    def __init__(self, send: Callable[[TrainEvent], None]) -> None:
        from xmcfit.report import PhaseClock

        self.send = send
        self._clock = PhaseClock()

    def __call__(self, stats: StepStats) -> None:
        eta_s = self._clock.remaining_s(stats, time.monotonic())
        self.send(TrainEvent(step=stats.step, total_steps=stats.total_steps, epoch=stats.epoch, phase=stats.phase,
                             loss=stats.loss, points_per_s=stats.points_per_s, memory_bytes=stats.memory_bytes,
                             eta_s=eta_s, stats=stats))


Progress = Union[bool, Callable[[TrainEvent], None]]
"""True: a bar on stderr (a plain line every 30 s where stderr is no terminal, as in a notebook or a log);
False: nothing; a function: called with a TrainEvent after every optimizer step."""


@contextlib.contextmanager
def step_callback(progress: Progress, plan: Plan) -> Iterator[Callable[[StepStats], None] | None]:
    """The trainer's on_step for `progress`: a TrainProgress display (True), an EventFeed (a function) or
    None (False); a display is closed when training ends, however it ends."""
    if progress is False:
        yield None
    elif progress is True:
        from xmcfit.report import TrainProgress

        with TrainProgress(plan.training.encoder_lr, plan.classifier.lr) as display:
            yield display.update
    else:
        yield EventFeed(progress)
