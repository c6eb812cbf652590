"""The memory model's optimizer workspaces: the pure-bf16 optimizers' sliced workspace on any device."""

from __future__ import annotations

from dataclasses import replace

import pytest

from plan_factory import tiny_plan
from xmcfit.plan import memory

torch = pytest.importorskip("torch")


def _bow_plan(**over):
    return tiny_plan("bow", 300, bow_features=50, fan_in=8, epochs=1, aux_clusters=0, **over)


def test_pure_bf16_workspace_is_one_slice_of_the_low_precision_optimizer():
    from xmcfit.sparse.lowprec_optim import DEFAULT_CHUNK_NUMEL

    assert memory.LOWPREC_CHUNK_NUMEL == DEFAULT_CHUNK_NUMEL
    layout = memory.Layout.from_plan(_bow_plan(value_dtype="bfloat16", rounding="kahan"))  # any device
    numel = layout.n_labels * layout.fan_in  # under one slice
    assert memory.lowprec_step_workspace_bytes(layout) == numel * 30
    huge = replace(layout, n_labels=10**7, optimizer="sgd_momentum")
    assert memory.lowprec_step_workspace_bytes(huge) == DEFAULT_CHUNK_NUMEL * 22
