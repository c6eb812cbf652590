"""Modules you can call: `xmcfit.plan(...)`, `xmcfit.train(...)` and `xmcfit.evaluate(...)` are API
functions, while xmcfit.plan, xmcfit.train and xmcfit.evaluate are also the modules that implement them.

Python binds a submodule to its parent's attribute when it is imported (`import xmcfit.plan.schema` sets
`xmcfit.plan` to the module), so a plain function of that name in xmcfit/__init__.py would be replaced
as soon as anything imported the module. Instead the module itself is callable: its class becomes a
ModuleType subclass with `__call__` (assigning a module's __class__ is supported since Python 3.5), so
`xmcfit.plan` is the same object, and behaves the same, whatever was imported before.

The subclass also lends the module the API function's signature (`inspect.signature(xmcfit.plan)`, what
IDEs complete) and puts the function's signature and docstring first in the module's docstring, so
`help(xmcfit.plan)` opens with the parameters. Both are looked up when asked, so importing the module
does not import xmcfit.api.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import types
from collections.abc import Callable
from typing import Any

API_MODULE = "xmcfit.api"


def make_callable(module_name: str, api_name: str) -> None:
    """Calling the module `module_name` calls xmcfit.api.<api_name>, whose signature and help it shows."""
    module = sys.modules[module_name]
    module_doc = module.__doc__ or ""

    def target() -> Callable[..., Any]:
        return getattr(importlib.import_module(API_MODULE), api_name)

    def __call__(self: types.ModuleType, *args: Any, **kwargs: Any) -> Any:
        return target()(*args, **kwargs)

    def signature(self: types.ModuleType) -> inspect.Signature:
        return inspect.signature(target())

    def doc(self: types.ModuleType) -> str:
        return (f"{api_name}{inspect.signature(target())}\n\n{inspect.getdoc(target())}\n\n"
                f"The module {module_name}: {module_doc}")

    members = {"__call__": __call__, "__signature__": property(signature), "__doc__": property(doc)}
    module.__class__ = type(f"Callable{type(module).__name__}", (type(module),), members)
