"""Training: the single-device recipe (loop.py) wiring its reusable parts: setup.py (model, optimizers,
losses, schedule), step.py (one optimizer step), epoch.py (one epoch and what follows each step),
checkpoint.py (the saved state), finish.py (final weights, memory.json); data.py prepares the run's data.

The package is also callable: `xmcfit.train(plan, data=..., out=...)` is xmcfit.api.train
(xmcfit.callable_module says why a module is callable).
"""

from xmcfit.callable_module import make_callable


make_callable(__name__, "train")
