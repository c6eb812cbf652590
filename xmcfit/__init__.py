"""xmcfit: plan, train and evaluate extreme multi-label classifiers that fit the GPU you have.

The Python API (xmcfit.api; the command line is a thin layer over it):

    import xmcfit
    plan = xmcfit.plan(labels=3_000_000, gpu_mem="16G")                # a frozen Plan, pure Python
    model = xmcfit.fit(texts, labels, out="runs/a", gpu_mem="16G")     # in-memory data -> a Model
    model.predict(["some text"], k=5).ids                               # (1, 5) label ids, best first
    result = xmcfit.train(plan, data="data/", out="runs/b")             # a dataset directory -> TrainResult
    print(xmcfit.evaluate("runs/b").metrics["P@1"])                     # an EvalResult

Importing xmcfit loads no torch, numpy or transformers: each name below is imported when first used.
"""

from __future__ import annotations

import importlib
from typing import Any

from xmcfit.errors import XmcfitError
from xmcfit.version import __version__

__all__ = ["LabelScore", "Model", "Plan", "Predictions", "TrainEvent", "TrainOptions", "TrainingPaused",
           "TrainingStopped", "XmcfitError", "__version__", "evaluate", "fit", "load", "plan", "predict", "train"]

# name -> (module, attribute or None for the module itself, callable: see xmcfit.callable_module)
_LAZY = {
    "plan": ("xmcfit.plan", None),
    "train": ("xmcfit.train", None),
    "evaluate": ("xmcfit.evaluate", None),
    "fit": ("xmcfit.api", "fit"),
    "predict": ("xmcfit.api", "predict"),
    "load": ("xmcfit.api", "load"),
    "Model": ("xmcfit.evaluate", "Model"),
    "Predictions": ("xmcfit.predictions", "Predictions"),
    "LabelScore": ("xmcfit.predictions", "LabelScore"),
    "TrainEvent": ("xmcfit.progress", "TrainEvent"),
    "TrainOptions": ("xmcfit.options", "TrainOptions"),
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
