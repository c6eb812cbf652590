"""Measured memory of a training run beside the plan's prediction (memory.json).

CUDA: the allocator's peak (max allocated and max reserved). CPU: the process's peak resident set, and
its growth over the resident set before training started (Python, torch and data are already there).
Static terms (weights, indices, gradients, optimizer state) are measured from the live tensors, so
they compare with the planner's terms one to one.
"""

from __future__ import annotations

import resource

import torch

from xmcfit.model import XMCModel
from xmcfit.plan import terms as T
from xmcfit.plan.schema import Plan
from xmcfit.rundir import MemoryReport


def _rss_bytes() -> int:
    """Current resident set size of this process (Linux /proc), 0 where unavailable."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return 0


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


class MemoryMeter:
    """Peak memory over a region: CUDA allocator statistics, or the process RSS on the CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.start_rss_bytes = 0

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        self.start_rss_bytes = _rss_bytes()

    def current_bytes(self) -> int:
        if self.device.type == "cuda":
            return int(torch.cuda.memory_allocated(self.device))
        return _rss_bytes()

    def stop(self) -> dict[str, int]:
        """The measured peak, keyed by MemoryReport's field names for this device."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return {
                "measured_peak_bytes": int(torch.cuda.max_memory_allocated(self.device)),
                "measured_reserved_bytes": int(torch.cuda.max_memory_reserved(self.device)),
            }
        peak = _peak_rss_bytes()
        return {"measured_peak_bytes": peak, "measured_peak_rss_growth_bytes": max(0, peak - self.start_rss_bytes)}


def _tensor_bytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def _optimizer_state_bytes(opt: torch.optim.Optimizer, params: set[int]) -> int:
    return sum(
        _tensor_bytes(v)
        for p, st in opt.state.items() if id(p) in params
        for v in st.values() if isinstance(v, torch.Tensor) and v.ndim > 0
    )


STATIC_TERMS = (T.ENCODER_WEIGHTS, T.ENCODER_OPTIMIZER_STATE, T.INTERMEDIATE_WEIGHTS, T.INTERMEDIATE_OPTIMIZER_STATE,
                T.AUX_WEIGHTS, T.AUX_OPTIMIZER_STATE, T.CLASSIFIER_VALUES, T.CLASSIFIER_BIAS, T.CLASSIFIER_INDICES,
                T.CLASSIFIER_OPTIMIZER_STATE)
"""Planner terms (xmcfit.plan.memory) that are persistent tensors, so they are measured exactly."""


def measured_terms(model: XMCModel, optimizers: list[torch.optim.Optimizer]) -> dict[str, int]:
    """Bytes of the persistent tensors the trainer holds, under the planner's term names."""

    def weights_and_state(module: torch.nn.Module | None) -> tuple[int, int]:
        """Parameters plus persistent buffers (a bag-of-words encoder's idf), and their optimizer state."""
        if module is None:
            return 0, 0
        params = list(module.parameters())
        ids = {id(p) for p in params}
        param_names = {name for name, _ in module.named_parameters()}
        buffers = [t for name, t in module.state_dict().items() if name not in param_names]
        return (sum(_tensor_bytes(p) for p in params) + sum(_tensor_bytes(b) for b in buffers),
                sum(_optimizer_state_bytes(o, ids) for o in optimizers))

    terms: dict[str, int] = {}
    for weights, state, module in ((T.ENCODER_WEIGHTS, T.ENCODER_OPTIMIZER_STATE, model.encoder),
                                   (T.INTERMEDIATE_WEIGHTS, T.INTERMEDIATE_OPTIMIZER_STATE, model.intermediate),
                                   (T.AUX_WEIGHTS, T.AUX_OPTIMIZER_STATE, model.aux_head)):
        terms[weights], terms[state] = weights_and_state(module)
    if model.tfidf is not None:
        terms[T.TFIDF_WEIGHTS], terms[T.TFIDF_OPTIMIZER_STATE] = weights_and_state(model.tfidf)
    cls = model.classifier
    value = cls.values if hasattr(cls, "values") else cls.weight
    bias = cls.bias
    terms[T.CLASSIFIER_VALUES] = _tensor_bytes(value)
    terms[T.CLASSIFIER_BIAS] = _tensor_bytes(bias) if bias is not None else 0
    terms[T.CLASSIFIER_INDICES] = sum(_tensor_bytes(b) for b in cls.buffers())
    terms[T.CLASSIFIER_OPTIMIZER_STATE] = weights_and_state(cls)[1]
    # Priced only for CPU runs (xmcfit.plan.memory.classifier_pattern_cache_bytes): the torch backend's cache.
    terms[T.CLASSIFIER_PATTERN_CACHE] = cls.cached_pattern_bytes() if hasattr(cls, "cached_pattern_bytes") else 0
    return terms


def memory_report(plan: Plan, model: XMCModel, optimizers: list[torch.optim.Optimizer],
                  peak: dict[str, int], device: torch.device) -> MemoryReport:
    """memory.json: the plan's predicted peak and terms beside what was measured on `device`."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return MemoryReport(
        device=name,
        predicted_peak_bytes=plan.memory.predicted_peak_bytes,
        dense_predicted_peak_bytes=plan.memory.dense_predicted_peak_bytes,
        predicted_terms_bytes=dict(plan.memory.terms_bytes),
        measured_terms_bytes=measured_terms(model, optimizers),
        **peak,
        note=("CUDA peak is torch.cuda.max_memory_allocated" if device.type == "cuda" else
              "CPU peak is the process's peak RSS; it includes Python, libraries and the dataset, "
              "so it is not comparable to the GPU prediction term by term"),
    )
