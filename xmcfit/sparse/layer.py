"""FixedFanInLinear: a classifier over L labels where each label row has exactly k connections.

The weight is stored in ELLPACK form: `values` (L, k) and `indices` (L, k), indices sorted within each
row and free of duplicates (SET rewiring keeps both invariants). The forward walks the label space in
chunks of `chunk_size` rows through the backend chosen by `dispatch` (torch embedding-bag and sampled
matmul ops, or Triton kernels on CUDA), so nothing of size L x d is ever built; the (batch, L) logits
are built only because forward() returns them. For training over many labels use `chunked_loss`, which
never builds them.

Memory the layer holds: values L*k*value_bytes, indices L*k*(2 if d <= 32767 else 4), bias L*value_bytes;
with the torch backend also one cached TransposedPattern per chunk (L*k*12 + n_chunks*(d+1)*4 bytes),
rebuilt after each rewiring.
"""

import math

import torch
from torch import nn

from xmcfit.dtypes import INT16_MAX_COLUMNS, index_dtype_name, torch_dtype
from xmcfit.sparse.backend import new_output
from xmcfit.sparse.dispatch import get_backend
from xmcfit.sparse.validate import check_fan_in, check_input

DEFAULT_CHUNK_SIZE = 8192  # label rows per chunk; 2-core CPU timing flat between 4k and 64k (L=200k, k=32)


def chunk_ranges(n_rows: int, chunk_size: int) -> list[tuple[int, int]]:
    """[(start, stop)] covering range(n_rows) in steps of chunk_size."""
    return [(start, min(n_rows, start + chunk_size)) for start in range(0, n_rows, chunk_size)]


def accumulation_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """float64 when any operand is float64 (reference tests), else float32."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def random_row_indices(
    n_rows: int, in_features: int, fan_in: int, dtype: torch.dtype, device: torch.device,
    generator: torch.Generator | None, chunk_rows: int = 4096,
) -> torch.Tensor:
    """(n_rows, fan_in) distinct columns per row, uniformly random, sorted within the row.

    Random keys + topk per chunk of rows: transient chunk_rows * in_features * 4 bytes.
    """
    out = torch.empty(n_rows, fan_in, dtype=dtype, device=device)
    for start, stop in chunk_ranges(n_rows, chunk_rows):
        keys = torch.rand(stop - start, in_features, generator=generator, device=device)  # (chunk, d)
        cols = keys.topk(fan_in, dim=1, sorted=False).indices  # (chunk, k)
        out[start:stop] = cols.sort(dim=1).values.to(dtype)
    return out


class FixedFanInLinear(nn.Module):
    """Linear layer in_features -> out_features with exactly `fan_in` nonzero weights per output row."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        fan_in: int,
        bias: bool = True,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        index_dtype: torch.dtype | None = None,
        seed: int | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        indices: torch.Tensor | None = None,
    ) -> None:
        """`indices`: the pattern (out_features, fan_in), sorted and distinct within each row, instead of a
        uniformly random one (a pattern chosen from data, or a placeholder a checkpoint overwrites)."""
        super().__init__()
        check_fan_in(in_features, fan_in)
        if out_features < 1:
            raise ValueError(f"out_features={out_features}: must be >= 1")
        if chunk_size < 1:
            raise ValueError(f"chunk_size={chunk_size}: must be >= 1")
        if index_dtype is None:
            index_dtype = torch_dtype(index_dtype_name(in_features))
        if index_dtype == torch.int16 and in_features > INT16_MAX_COLUMNS:
            raise ValueError(f"index_dtype=int16 with in_features={in_features}: int16 holds columns < 32768")
        self.in_features, self.out_features, self.fan_in = in_features, out_features, fan_in
        self.chunk_size = chunk_size
        device = torch.device(device) if device is not None else torch.device("cpu")
        generator = None
        if seed is not None:
            generator = torch.Generator(device=device)
            generator.manual_seed(seed)
        if indices is None:
            indices = random_row_indices(out_features, in_features, fan_in, index_dtype, device, generator)
        elif tuple(indices.shape) != (out_features, fan_in):
            raise ValueError(f"indices of shape {tuple(indices.shape)}: must be ({out_features}, {fan_in})")
        else:
            indices = indices.to(device=device, dtype=index_dtype).contiguous().clone()
        self.register_buffer("indices", indices)  # (L, k)
        # kaiming-uniform as nn.Linear, with the fan-in of a row being k rather than d.
        bound = 1.0 / math.sqrt(fan_in)
        values = torch.rand(out_features, fan_in, generator=generator, device=device, dtype=torch.float32)
        self.values = nn.Parameter((values * 2 - 1).mul_(bound).to(dtype or torch.float32))  # (L, k)
        if bias:
            b = torch.rand(out_features, generator=generator, device=device, dtype=torch.float32)
            self.bias = nn.Parameter((b * 2 - 1).mul_(bound).to(dtype or torch.float32))  # (L,)
        else:
            self.register_parameter("bias", None)
        self._patterns: dict[tuple[int, int], object] = {}
        self._patterns_key: tuple[int, int, str] | None = None

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, fan_in={self.fan_in}, "
                f"bias={self.bias is not None}, index_dtype={self.indices.dtype}")

    def transposed_pattern(self, start: int, stop: int, backend) -> object:
        """The backend's transposed pattern of rows [start, stop), cached until the indices change."""
        key = (self.indices._version, self.indices.data_ptr(), str(self.indices.device))
        if key != self._patterns_key:
            self._patterns, self._patterns_key = {}, key
        if (start, stop) not in self._patterns:
            self._patterns[(start, stop)] = backend.transposed_pattern(self.indices[start:stop], self.in_features)
        return self._patterns[(start, stop)]

    def cached_pattern_bytes(self) -> int:
        """Bytes held by the cached transposed patterns (torch backend; 0 with Triton or before first use)."""
        return sum(t.numel() * t.element_size() for pattern in self._patterns.values() if pattern is not None
                   for t in vars(pattern).values() if isinstance(t, torch.Tensor))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (batch, in_features) -> logits (batch, out_features)."""
        check_input(x, self.in_features)
        return _SparseLinearFn.apply(x, self.values, self.bias, self)

    @torch.no_grad()
    def to_dense(self) -> torch.Tensor:
        """The equivalent dense weight (out_features, in_features); for tests and small problems only."""
        dense = torch.zeros(self.out_features, self.in_features, dtype=self.values.dtype, device=self.values.device)
        dense.scatter_(1, self.indices.long(), self.values)  # (L, d)
        return dense


class _SparseLinearFn(torch.autograd.Function):
    """Chunked forward/backward of FixedFanInLinear; saves only x (not the logits)."""

    @staticmethod
    def forward(ctx, x, values, bias, layer):
        backend = get_backend(x.device)
        acc = accumulation_dtype(x, values)
        xa = x.to(acc).contiguous()
        batch = x.shape[0]
        out_t = new_output((layer.out_features, batch), acc, x.device)  # (L, batch)
        for start, stop in chunk_ranges(layer.out_features, layer.chunk_size):
            b = bias[start:stop] if bias is not None else None
            out_t[start:stop] = backend.logits_t(xa, values[start:stop], layer.indices[start:stop], b)
        ctx.save_for_backward(xa, values)
        ctx.layer, ctx.backend, ctx.x_dtype, ctx.has_bias = layer, backend, x.dtype, bias is not None
        return out_t.t().to(torch.promote_types(x.dtype, values.dtype))  # (batch, L)

    @staticmethod
    def backward(ctx, grad_out):
        xa, values = ctx.saved_tensors
        layer, backend = ctx.layer, ctx.backend
        need_x, need_v, need_b = ctx.needs_input_grad[:3]
        grad_t_full = grad_out.t()  # (L, batch) view
        gx_t = torch.zeros(layer.in_features, xa.shape[0], dtype=xa.dtype, device=xa.device) if need_x else None
        gv = new_output(values.shape, values.dtype, values.device) if need_v else None
        for start, stop in chunk_ranges(layer.out_features, layer.chunk_size):
            g = grad_t_full[start:stop].to(xa.dtype).contiguous()  # (chunk, batch)
            idx = layer.indices[start:stop]
            if need_x:
                pattern = layer.transposed_pattern(start, stop, backend)
                backend.add_grad_input_t(g, values[start:stop], idx, gx_t, pattern)
            if need_v:
                gv[start:stop] = backend.grad_values(g, xa, idx).to(values.dtype)
        gx = gx_t.t().contiguous().to(ctx.x_dtype) if need_x else None
        gb = grad_out.sum(0).to(values.dtype) if (need_b and ctx.has_bias) else None
        return gx, gv, gb, None
