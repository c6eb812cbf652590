"""Pure-bf16 optimizers for the sparse classifier: AdamW and SGD(+momentum) on bf16 parameters with
bf16 state, made accurate by Kahan-compensated updates or stochastic rounding (as in ELMO, pure-bf16 XMC).

A naive bf16 update p += u loses every u below half an ulp of p (about |p| * 2**-9); over many small
steps the parameter stalls. Kahan: keep the rounding error of each update in a bf16 buffer
`kahan_comp` shaped like the parameter and add it back into the next update. Stochastic rounding:
round p + u up or down at random with probabilities that make the rounding unbiased.

Per-parameter state (all bf16 when the parameter is bf16): AdamW exp_avg, exp_avg_sq; SGD
momentum_buffer (momentum > 0); kahan_comp (rounding="kahan"). The update math runs in fp32 over
slices of `chunk_numel` elements, so the transient workspace is bounded by the slice, not the parameter:
measured as the peak RSS growth of one step on 16 Mi bf16 values (2-core CPU), 126 MB for AdamW and
167 MB for SGD with momentum, i.e. 7.5 to 10 fp32 slices of the default 4 Mi elements.

Why not torch-optimi (0.3.3, evaluated for issue 13). Its AdamW and SGD with kahan_sum=True keep
exp_avg, exp_avg_sq (AdamW) and kahan_comp shaped like the parameter, so SETRewirer permutes them and
zeroes them at regrown slots (checked: every regrown slot 0 in every state tensor), and its foreach step
works in place on the gradients (peak RSS growth of the same step: 0 bytes), well inside the plan's
optimizer_step_workspace. It is not used because (1) it has no stochastic rounding, which a plan may ask
for (classifier.update_rounding="stochastic"), so this module would stay anyway; (2) it computes the
moments in bf16 arithmetic and adds eps after bias correction, so every pure-bf16 run would train to
other numbers than today's; (3) it is no more accurate: relative error against an fp32 run after 600
sub-ulp steps (tests/test_sparse_lowprec.py's problem) AdamW 0.0744 vs 0.0721 here, SGD with momentum
0.0829 vs 0.0809.
"""

import math

import torch

ROUNDINGS = ("kahan", "stochastic", "nearest")
DEFAULT_CHUNK_NUMEL = 1 << 22


def _f32(t: torch.Tensor) -> torch.Tensor:
    """A fresh fp32 copy (never an alias, even when t is already fp32: the math below is in place)."""
    return t.to(torch.float32, copy=True)


def stochastic_round_to_bf16(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """fp32 -> bf16, rounding up or down with probability proportional to the distance (unbiased)."""
    bits = x.contiguous().view(torch.int32)
    noise = torch.randint(0, 1 << 16, bits.shape, dtype=torch.int32, device=x.device, generator=generator)
    rounded = (bits + noise) & -65536  # clear the 16 bits bf16 drops (0xFFFF0000)
    return rounded.view(torch.float32).to(torch.bfloat16)  # exact: low bits are zero


class _LowPrecisionOptimizer(torch.optim.Optimizer):
    """Shared apply step: fp32 update math per slice, then a compensated or stochastic write-back."""

    def __init__(self, params, defaults: dict, rounding: str, chunk_numel: int, seed: int | None) -> None:
        if rounding not in ROUNDINGS:
            raise ValueError(f"rounding={rounding!r}: must be one of {ROUNDINGS}")
        if chunk_numel < 1:
            raise ValueError(f"chunk_numel={chunk_numel}: must be >= 1")
        super().__init__(params, dict(defaults, rounding=rounding))
        self.chunk_numel = chunk_numel
        self._seed = seed

    def _generator(self, device: torch.device) -> torch.Generator | None:
        if self._seed is None:
            return None
        if not hasattr(self, "_generators"):
            self._generators = {}
        if device not in self._generators:
            self._generators[device] = torch.Generator(device=device)
            self._generators[device].manual_seed(self._seed)
        return self._generators[device]

    def state_dict(self) -> dict:
        """torch's optimizer state plus the stochastic-rounding generators' states, so a resumed run draws
        the same rounding noise as one left alone."""
        state = super().state_dict()
        state["rounding_generators"] = {str(dev): gen.get_state()
                                        for dev, gen in getattr(self, "_generators", {}).items()}
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        generators = state_dict.pop("rounding_generators", {})
        super().load_state_dict(state_dict)
        for dev, gen_state in generators.items():
            gen = self._generator(torch.device(dev))
            if gen is not None:
                gen.set_state(gen_state.cpu() if isinstance(gen_state, torch.Tensor) else gen_state)

    def _apply(self, p: torch.Tensor, update: torch.Tensor, comp: torch.Tensor | None, rounding: str, gen) -> None:
        """p (slice, flat) += update (fp32), writing back with the chosen rounding."""
        base = _f32(p)
        if rounding == "kahan" and comp is not None:
            update = update + comp.float()  # re-add what earlier roundings lost
            new = (base + update).to(p.dtype)
            comp.copy_(update - (new.float() - base))  # what this rounding lost
            p.copy_(new)
        elif rounding == "stochastic" and p.dtype == torch.bfloat16:
            p.copy_(stochastic_round_to_bf16(base + update, gen))
        else:
            p.copy_(base + update)

    def _slices(self, numel: int):
        return [(s, min(numel, s + self.chunk_numel)) for s in range(0, numel, self.chunk_numel)]


class LowPrecisionAdamW(_LowPrecisionOptimizer):
    """AdamW (decoupled weight decay, bias-corrected moments) with state in the parameter's dtype."""

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, rounding: str = "kahan", chunk_numel: int = DEFAULT_CHUNK_NUMEL,
                 seed: int | None = None) -> None:
        if lr < 0:
            raise ValueError(f"lr={lr}: must be >= 0")
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        super().__init__(params, defaults, rounding, chunk_numel, seed)

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                    if group["rounding"] == "kahan":
                        state["kahan_comp"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"]
                step_size = group["lr"] / (1 - beta1**t)
                sq_corr = math.sqrt(1 - beta2**t)
                flat = [p.view(-1), p.grad.view(-1), state["exp_avg"].view(-1), state["exp_avg_sq"].view(-1)]
                comp = state.get("kahan_comp")
                for s, e in self._slices(p.numel()):
                    pv, g, m, v = (f[s:e] for f in flat)
                    g32 = _f32(g)
                    m32 = _f32(m).mul_(beta1).add_(g32, alpha=1 - beta1)
                    v32 = _f32(v).mul_(beta2).addcmul_(g32, g32, value=1 - beta2)
                    m.copy_(m32)
                    v.copy_(v32)
                    update = m32.div_(v32.sqrt_().div_(sq_corr).add_(group["eps"])).mul_(-step_size)
                    update.add_(_f32(pv), alpha=-group["lr"] * group["weight_decay"])
                    c = comp.view(-1)[s:e] if comp is not None else None
                    self._apply(pv, update, c, group["rounding"], self._generator(p.device))
        return loss


class LowPrecisionSGD(_LowPrecisionOptimizer):
    """SGD with optional momentum (PyTorch's convention: buf = mu * buf + g) and L2 weight decay."""

    def __init__(self, params, lr: float = 1e-2, momentum: float = 0.0, weight_decay: float = 0.0,
                 rounding: str = "kahan", chunk_numel: int = DEFAULT_CHUNK_NUMEL, seed: int | None = None) -> None:
        if lr < 0:
            raise ValueError(f"lr={lr}: must be >= 0")
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay)
        super().__init__(params, defaults, rounding, chunk_numel, seed)

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    if group["momentum"] > 0:
                        state["momentum_buffer"] = torch.zeros_like(p)
                    if group["rounding"] == "kahan":
                        state["kahan_comp"] = torch.zeros_like(p)
                buf, comp = state.get("momentum_buffer"), state.get("kahan_comp")
                for s, e in self._slices(p.numel()):
                    pv, g = p.view(-1)[s:e], p.grad.view(-1)[s:e]
                    d = _f32(g)
                    if group["weight_decay"]:
                        d.add_(pv.float(), alpha=group["weight_decay"])
                    if buf is not None:
                        b = buf.view(-1)[s:e]
                        d = _f32(b).mul_(group["momentum"]).add_(d)
                        b.copy_(d)
                    c = comp.view(-1)[s:e] if comp is not None else None
                    self._apply(pv, d.mul_(-group["lr"]), c, group["rounding"], self._generator(p.device))
        return loss
