"""Step-indexed schedules: learning-rate warm-up + cosine, and the cosine decays of rewiring and aux weight.

All are pure functions of the optimizer step, so a resumed run follows exactly the same curve.
"""

from __future__ import annotations

import math


def warmup_cosine(step: int, total_steps: int, warmup_steps: int) -> float:
    """Learning-rate multiplier: linear 0 -> 1 over `warmup_steps`, then cosine 1 -> 0 at `total_steps`."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def cosine_decay(step: int, end_step: int, initial: float) -> float:
    """`initial` at step 0, decaying by a half cosine to exactly 0 at `end_step` and after."""
    if end_step <= 0 or step >= end_step:
        return 0.0
    return initial * 0.5 * (1.0 + math.cos(math.pi * step / end_step))


def fraction_step(fraction: float, total_steps: int) -> int:
    """The optimizer step at which a schedule stated as a fraction of training ends."""
    return int(round(fraction * total_steps))
