"""What the trainer holds besides a step's tensors: the checkpoint write and the out-of-memory recovery."""

from __future__ import annotations

import torch

from xmcfit.train import checkpoint as ckpt


def test_checkpoint_write_does_not_copy_cpu_tensors():
    values = torch.randn(1000, 8)
    tensors: dict[str, torch.Tensor] = {}
    ckpt.flatten_state("s", {"model": {"values": values}}, tensors)
    assert tensors["s.model.values"].data_ptr() == values.data_ptr()  # written from the live tensor, no clone
