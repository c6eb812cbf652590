"""Where a run's step figures go besides train_log.jsonl: TensorBoard event files (`--log-to tensorboard`).

A logger is an on_step callback (xmcfit.train.epoch.StepStats in, nothing out), so the recipe does not
know it exists. TensorBoard comes from torch.utils.tensorboard, which needs the optional `tensorboard`
package; asking for it without the package is one line saying how to install it, before the run starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xmcfit.errors import XmcfitError

if TYPE_CHECKING:
    from xmcfit.train.epoch import StepStats

LOG_TARGETS = ("tensorboard",)


def check_log_targets(targets: Sequence[str]) -> None:
    """One XmcfitError line for an unknown target or a missing package (call before the run starts)."""
    for target in targets:
        if target not in LOG_TARGETS:
            raise XmcfitError(f"--log-to {target}: must be one of {', '.join(LOG_TARGETS)}")
        if target == "tensorboard":
            try:
                import tensorboard  # noqa: F401  (torch.utils.tensorboard needs it)
            except ImportError:
                raise XmcfitError("--log-to tensorboard needs the tensorboard package: "
                                  "pip install 'xmcfit[tensorboard]' (or pip install tensorboard)") from None


class TensorBoardLogger:
    """Scalars of every `log_every`-th step (and the last) into `log_dir`, the steps train_log.jsonl keeps.

    The writer opens at the first step it sees with purge_step = that step, so events a killed run wrote
    after its last checkpoint are dropped when the resumed run replays those steps.
    """

    def __init__(self, log_dir: Path, log_every: int, encoder_lr: float, classifier_lr: float) -> None:
        self.log_dir = log_dir
        self.log_every = log_every
        self.encoder_lr, self.classifier_lr = encoder_lr, classifier_lr
        self._writer: Any = None

    def __call__(self, stats: "StepStats") -> None:
        if stats.step % self.log_every and stats.step != stats.total_steps:
            return
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.log_dir), purge_step=stats.step)
        add, step = self._writer.add_scalar, stats.step
        add("loss/total", stats.loss, step)
        add("loss/main", stats.main_loss, step)
        add("loss/aux", stats.aux_loss, step)
        add("schedule/aux_weight", stats.aux_weight, step)
        add("schedule/encoder_lr", self.encoder_lr * stats.lr_mult, step)
        add("schedule/classifier_lr", self.classifier_lr * stats.lr_mult, step)
        add("rewiring/connections_moved", stats.connections_moved, step)
        add("throughput/points_per_s", stats.points_per_s, step)
        add("memory/bytes", stats.memory_bytes, step)
        add("steps/skipped", stats.skipped_steps, step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
