"""SET rewiring of a FixedFanInLinear: prune the smallest-|w| connections of each row, regrow as many
at uniformly random columns not in the row, with zero values and zeroed optimizer state.

Prune rule per row: mode "fraction" prunes round(f * k) connections, f from the schedule;
mode "threshold" prunes those with |w| < t, t from the schedule (so the count varies per row).
The pruned columns are excluded from the candidates only through the "not in the row" rule applied
to the kept connections, so a pruned column may be redrawn (then its value restarts at zero).
After rewiring each row's indices are sorted again and values, gradient and every optimizer state
tensor shaped like `values` (exp_avg, exp_avg_sq, momentum_buffer, Kahan compensation, ...) are
permuted with them, which keeps the CSR pattern the torch backend builds for the value gradient canonical.

Transient workspace per chunk of r = chunk_rows rows (k fan-in, n = most pruned in a row <= k, m = 2n + 8
draws per round of sampling; int64 indices throughout):
    r * k * 37       |w| (4), prune mask (1), kept columns sorted (8), their shifts (8), column ids (8),
                     the prune sort (8)
  + r * m * 36       uniform draws (4), ranks (8), their stable sort (16), repeat flags (3), picks (8) ...
  + r * n * 16       chosen ranks and the free columns they map to
  + r * k * (26 + value_bytes) after sampling: new indices, the sort order, regrown flags and one permuted
                     state tensor at a time
which is at most r * (117 * k + 288 + value_bytes * k) bytes (xmcfit.workspace.rewire_workspace_bytes,
which the planner prices); unlike random keys over all d columns it does not grow with the input dimension.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch

from xmcfit.sparse.layer import FixedFanInLinear, chunk_ranges
from xmcfit.workspace import rewire_workspace_bytes  # noqa: F401  (the bound above, importable from here)

MODES = ("fraction", "threshold")
DEFAULT_CHUNK_ROWS = 16384


@dataclass(frozen=True)
class RewireStats:
    """What one rewiring did."""

    step: int
    n_moved: int  # connections pruned and regrown, all rows
    mean_abs_pruned: float  # mean |w| of the pruned connections (0.0 when none)
    prune_level: float  # the schedule's fraction or threshold at this step


class SETRewirer:
    """Rewires `layer` every `interval` steps up to and including `end_step`.

    fraction_schedule: callable step -> float; the fraction of each row to prune (mode "fraction",
    in [0, 1]) or the |w| threshold (mode "threshold"); xmcfit.train.schedules.cosine_schedule gives the
    published cosine decay.
    """

    def __init__(
        self,
        layer: FixedFanInLinear,
        optimizer: torch.optim.Optimizer | None,
        fraction_schedule: Callable[[int], float],
        interval: int,
        end_step: int,
        mode: str = "fraction",
        seed: int | None = None,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode={mode!r}: must be one of {MODES}")
        if interval < 1:
            raise ValueError(f"interval={interval}: must be >= 1")
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows={chunk_rows}: must be >= 1")
        self.layer, self.optimizer, self.schedule = layer, optimizer, fraction_schedule
        self.interval, self.end_step, self.mode, self.chunk_rows = interval, end_step, mode, chunk_rows
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,)).item())  # follows the global torch seed
        self.generator = torch.Generator(device=layer.values.device)
        self.generator.manual_seed(seed)

    def due(self, global_step: int) -> bool:
        """True when `global_step` is a rewiring step."""
        return 0 < global_step <= self.end_step and global_step % self.interval == 0

    def step(self, global_step: int) -> RewireStats | None:
        """Rewire if `global_step` is due (returns the stats), else do nothing (returns None)."""
        if not self.due(global_step):
            return None
        return self.rewire(global_step)

    def _slot_tensors(self) -> list[torch.Tensor]:
        """Per-value tensors that follow the connections: grad and optimizer state shaped like values."""
        values = self.layer.values
        tensors = [values.grad] if values.grad is not None else []
        if self.optimizer is not None:
            for state in self.optimizer.state.get(values, {}).values():
                if torch.is_tensor(state) and state.shape == values.shape:
                    tensors.append(state)
        return tensors

    @torch.no_grad()
    def rewire(self, global_step: int) -> RewireStats:
        """Rewire now, whatever the step."""
        level = float(self.schedule(global_step))
        n_moved, pruned_sum = 0, 0.0
        slots = self._slot_tensors()
        for start, stop in chunk_ranges(self.layer.out_features, self.chunk_rows):
            moved, psum = self._rewire_rows(start, stop, level, slots)
            n_moved, pruned_sum = n_moved + moved, pruned_sum + psum
        return RewireStats(global_step, n_moved, pruned_sum / n_moved if n_moved else 0.0, level)

    def _prune_mask(self, magnitude: torch.Tensor, level: float) -> torch.Tensor:
        """(rows, k) bool: True where a connection is pruned."""
        fan_in = magnitude.shape[1]
        if self.mode == "threshold":
            return magnitude < level
        n_prune = min(fan_in, max(0, round(level * fan_in)))
        mask = torch.zeros_like(magnitude, dtype=torch.bool)
        if n_prune:
            # A stable sort of k entries per row is several times faster than topk on the CPU.
            smallest = magnitude.argsort(dim=1, stable=True)[:, :n_prune]  # (rows, n)
            mask.scatter_(1, smallest, True)
        return mask

    def _free_columns(self, cols: torch.Tensor, mask: torch.Tensor, counts: torch.Tensor, n_max: int) -> torch.Tensor:
        """(rows, n_max) columns not kept by each row, distinct within a row and uniformly drawn: row i's
        first counts[i] entries are a uniform random subset of its free columns (pruned ones included).

        Sequential draws of free-column ranks with repeats rejected (the first distinct draws of an iid
        uniform sequence are a uniform sample without replacement), mapped to columns by skipping the kept
        ones. Costs O(rows x (k + n_max)) instead of random keys over all d columns per row.
        """
        n_rows, fan_in = cols.shape
        d = self.layer.in_features
        # Kept columns ascending, pruned slots pushed past the end; s_j = c_j - j counts free columns
        # before the j-th kept column, so free rank r lives at column r + #{j : s_j <= r}.
        kept = torch.where(mask, d + fan_in, cols).sort(dim=1).values
        shift = kept - torch.arange(fan_in, device=cols.device)
        n_free = d - fan_in + counts  # (rows,)
        out = torch.empty(n_rows, n_max, dtype=torch.long, device=cols.device)
        todo = torch.arange(n_rows, device=cols.device)
        n_draws = 2 * n_max + 8
        while todo.numel():
            free = n_free[todo, None]
            ranks = (torch.rand(todo.numel(), n_draws, generator=self.generator, device=cols.device) * free).long()
            ranks = torch.minimum(ranks, free - 1)  # guards the float rounding of rand * free
            ordered, where = ranks.sort(dim=1, stable=True)
            repeat = torch.zeros_like(ordered, dtype=torch.bool)
            repeat[:, 1:] = ordered[:, 1:] == ordered[:, :-1]  # later draws of a value already drawn
            first = torch.ones_like(repeat).scatter_(1, where, ~repeat)  # (rows, draws) in draw order
            n_distinct = first.sum(1)
            done = n_distinct >= counts[todo]
            # Stable sort on "not first" keeps the first distinct draws at the front, in draw order.
            pick = (~first).to(torch.uint8).argsort(dim=1, stable=True)[:, :n_max]
            chosen = ranks.gather(1, pick)
            out[todo[done]] = chosen[done]
            todo = todo[~done]
        return out + torch.searchsorted(shift, out, right=True)

    def _rewire_rows(self, start: int, stop: int, level: float, slots: list[torch.Tensor]) -> tuple[int, float]:
        layer = self.layer
        values, indices = layer.values.data[start:stop], layer.indices[start:stop]  # (rows, k) views
        n_rows, fan_in = values.shape
        magnitude = values.abs().float()  # (rows, k)
        mask = self._prune_mask(magnitude, level)
        counts = mask.sum(1)  # (rows,)
        n_max = int(counts.max()) if n_rows else 0
        if n_max == 0:
            return 0, 0.0
        cols = indices.long()  # (rows, k)
        candidates = self._free_columns(cols, mask, counts, n_max)  # (rows, n_max) random free columns
        rank = (mask.cumsum(1) - 1).clamp_min(0)  # (rows, k): i-th pruned slot takes candidate i
        new_idx = torch.where(mask, candidates.gather(1, rank), cols)  # (rows, k)
        pruned_sum = float(magnitude[mask].sum())
        # Re-sort each row by column and permute every per-slot tensor with it.
        new_idx, order = new_idx.sort(dim=1)  # (rows, k)
        regrown = mask.gather(1, order)
        indices.copy_(new_idx.to(indices.dtype))
        for tensor in [values] + [t[start:stop] for t in slots]:
            tensor.copy_(tensor.gather(1, order).masked_fill_(regrown, 0))
        return int(counts.sum()), pruned_sum
