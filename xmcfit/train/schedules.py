"""Step-indexed schedules: learning-rate warm-up + cosine, and the cosine decays of rewiring and aux weight.

All are pure functions of the optimizer step, so a resumed run follows exactly the same curve; the one
half-cosine decay is `cosine_decay` (`cosine_schedule` binds its ends for the SET rewirer).
"""

from __future__ import annotations

import math
from collections.abc import Callable


def warmup_cosine(step: int, total_steps: int, warmup_steps: int) -> float:
    """Learning-rate multiplier: linear 0 -> 1 over `warmup_steps`, then cosine 1 -> 0 at `total_steps`."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def cosine_decay(step: int, end_step: int, initial: float, final: float = 0.0) -> float:
    """`initial` at step 0 (and before), decaying by a half cosine to exactly `final` at `end_step` and after."""
    if end_step <= 0 or step >= end_step:
        return final
    return final + (initial - final) * 0.5 * (1.0 + math.cos(math.pi * max(step, 0) / end_step))


def cosine_schedule(initial: float, final: float, end_step: int) -> Callable[[int], float]:
    """step -> cosine_decay(step, end_step, initial, final): a schedule callable, e.g. SETRewirer's
    (`final` throughout when end_step <= 0)."""
    return lambda step: cosine_decay(step, end_step, initial, final)


def fraction_step(fraction: float, total_steps: int) -> int:
    """The optimizer step at which a schedule stated as a fraction of training ends."""
    return int(round(fraction * total_steps))
