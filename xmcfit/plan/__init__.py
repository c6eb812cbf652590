"""The planner: GPU query, memory model, chooser, and the Plan contract (pure Python, no torch).

The package is also callable: `xmcfit.plan(labels=..., gpu_mem=...)` is xmcfit.api.plan
(xmcfit.callable_module says why a module is callable).
"""

from xmcfit.callable_module import make_callable
from xmcfit.plan.schema import Plan, PlanError, SCHEMA_VERSION

__all__ = ["Plan", "PlanError", "SCHEMA_VERSION"]
make_callable(__name__, "plan")
