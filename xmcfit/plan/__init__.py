"""The planner: GPU query, memory model, chooser, and the Plan contract (pure Python, no torch)."""

from xmcfit.plan.schema import Plan, PlanError, SCHEMA_VERSION

__all__ = ["Plan", "PlanError", "SCHEMA_VERSION"]
