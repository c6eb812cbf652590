"""xmcfit: plan, train and evaluate extreme multi-label classifiers that fit the GPU you have.

The Python API (xmcfit.api; the command line is a thin layer over it):

    import xmcfit
    plan = xmcfit.plan(labels=3_000_000, gpu_mem="16G")                # a frozen Plan, pure Python
    result = xmcfit.train(plan, data="data/", out="runs/a")             # a TrainResult
    print(xmcfit.evaluate("runs/a").metrics["P@1"])                     # an EvalResult
    xmcfit.load("runs/a").predict(["some text"], k=5)                   # lists of LabelScore

Importing xmcfit loads no torch, numpy or transformers: each name below is imported when first used.
"""

from __future__ import annotations

import importlib
from typing import Any

from xmcfit.errors import XmcfitError
from xmcfit.version import __version__

__all__ = ["Model", "Plan", "TrainingPaused", "TrainingStopped", "XmcfitError", "__version__", "evaluate", "load",
           "plan", "train"]

# name -> (module, attribute or None for the module itself, callable: see xmcfit.callable_module)
_LAZY = {
    "plan": ("xmcfit.plan", None),
    "train": ("xmcfit.train", None),
    "evaluate": ("xmcfit.evaluate", None),
    "load": ("xmcfit.evaluate", "load"),
    "Model": ("xmcfit.evaluate", "Model"),
    "Plan": ("xmcfit.plan.schema", "Plan"),
    "TrainingPaused": ("xmcfit.train.epoch", "TrainingPaused"),
    "TrainingStopped": ("xmcfit.train.epoch", "TrainingStopped"),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'xmcfit' has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name)
    return module if attribute is None else getattr(module, attribute)
