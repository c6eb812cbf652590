"""Training: the single-device recipe (loop.py) wiring its reusable parts: setup.py (model, optimizers,
losses, schedule), step.py (one optimizer step), epoch.py (one epoch and what follows each step),
checkpoint.py (the saved state), finish.py (final weights, memory.json); data.py prepares the run's data.

The package is also callable: `xmcfit.train(plan, data=..., out=...)` is xmcfit.api.train
(xmcfit.callable_module says why a module is callable).
"""

from xmcfit.callable_module import make_callable


def _train(*args, **kwargs):  # type: ignore[no-untyped-def]
    """xmcfit.api.train: train a plan on a dataset, or resume a run (see help(xmcfit.api.train))."""
    from xmcfit.api import train

    return train(*args, **kwargs)


make_callable(__name__, _train)
