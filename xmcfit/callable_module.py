"""Modules you can call: `xmcfit.plan(...)`, `xmcfit.train(...)` and `xmcfit.evaluate(...)` are API
functions, while xmcfit.plan, xmcfit.train and xmcfit.evaluate are also the modules that implement them.

Python binds a submodule to its parent's attribute when it is imported (`import xmcfit.plan.schema` sets
`xmcfit.plan` to the module), so a plain function of that name in xmcfit/__init__.py would be replaced
as soon as anything imported the module. Instead the module itself is callable: its class becomes a
ModuleType subclass with `__call__` (assigning a module's __class__ is supported since Python 3.5), so
`xmcfit.plan` is the same object, and behaves the same, whatever was imported before.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from typing import Any


def make_callable(module_name: str, function: Callable[..., Any]) -> None:
    """Calling the module `module_name` calls `function`."""
    module = sys.modules[module_name]

    def __call__(self: types.ModuleType, *args: Any, **kwargs: Any) -> Any:
        return function(*args, **kwargs)

    __call__.__doc__ = function.__doc__
    module.__class__ = type(f"Callable{type(module).__name__}", (type(module),), {"__call__": __call__})

