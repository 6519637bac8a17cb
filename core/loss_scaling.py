"""Dynamic loss scaling for gradients taken through a half-precision network.

The frozen UNet (and VAE) run in the model's dtype; what is optimised (a LoRA, a latent, a mapping
network, a guided latent) is float32. In fp16 the backward pass through the network carries the
gradient in fp16, whose smallest normal number is 6e-5 (subnormals to 6e-8): small gradients
underflow to zero and large ones overflow to inf. Multiplying the loss by a scale S before the
backward pass and dividing the float32 gradients by S afterwards keeps them in range; S starts
high, halves whenever the gradient is not finite and doubles again after a run of finite steps,
as torch.amp.GradScaler does (which the official DragDiffusion and GoodDrag loops use).

This is written out rather than taken from GradScaler because two of the loops take gradients with
`torch.autograd.grad` (no optimiser), and because a step whose gradient overflowed is retried at
the halved scale on the retained graph instead of being skipped: a skipped step would cost a whole
UNet forward and backward. bf16 has fp32's range, and fp32 needs nothing, so both run unscaled.
"""
from __future__ import annotations

from typing import Sequence

import torch

INIT_SCALE = 2.0 ** 16
GROWTH_INTERVAL = 100    # finite steps in a row before the scale doubles again
MAX_RETRIES = 24         # halvings tried on one step before it is given up (2^16 -> 2^-8)


def needs_scaling(dtype: torch.dtype) -> bool:
    return dtype == torch.float16


class LossScaler:
    """`backward(loss, params)` / `grad(loss, inputs)` with dynamic scaling when `enabled`."""

    def __init__(self, enabled: bool, init_scale: float = INIT_SCALE, growth_interval: int = GROWTH_INTERVAL):
        self.enabled = enabled
        self.scale = float(init_scale) if enabled else 1.0
        self.growth_interval = growth_interval
        self._good = 0
        self.overflows = 0  # how many backward passes were redone at a lower scale

    @classmethod
    def for_dtype(cls, dtype: torch.dtype) -> "LossScaler":
        return cls(needs_scaling(dtype))

    def _finished(self) -> None:
        self._good += 1
        if self._good >= self.growth_interval:
            self.scale *= 2.0
            self._good = 0

    def _overflowed(self) -> None:
        self.scale /= 2.0
        self._good = 0
        self.overflows += 1

    def grad(self, loss: torch.Tensor, inputs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """torch.autograd.grad(loss, inputs), unscaled (zeros for inputs the loss does not use)."""
        inputs = tuple(inputs)
        return tuple(torch.zeros_like(x) if g is None else g for g, x in zip(self._grads(loss, inputs), inputs))

    def backward(self, loss: torch.Tensor, params: Sequence[torch.Tensor]) -> None:
        """loss.backward() into `params`' .grad (which must start empty), unscaled. Parameters the
        loss does not use keep grad None, as with a plain backward."""
        params = [p for p in params if p.requires_grad]
        if not self.enabled:
            loss.backward()
            return
        for p, g in zip(params, self._grads(loss, params)):
            if g is not None:
                p.grad = g.to(p.dtype)

    def _grads(self, loss: torch.Tensor, inputs: tuple) -> list:
        """Unscaled float32 gradients (None where unused). If no scale within MAX_RETRIES gives a
        finite gradient, the non-finite entries are zeroed (the step does nothing there)."""
        if not self.enabled:
            return list(torch.autograd.grad(loss, inputs, allow_unused=True))
        grads: list = []
        for attempt in range(MAX_RETRIES + 1):
            last = attempt == MAX_RETRIES
            raw = torch.autograd.grad(loss * self.scale, inputs, retain_graph=not last, allow_unused=True)
            grads = [None if g is None else g.float() / self.scale for g in raw]
            checks = [torch.isfinite(g).all() for g in grads if g is not None]
            if not checks or bool(torch.stack(checks).all()):  # one device sync for all of them
                self._finished()
                return grads
            if not last:
                self._overflowed()
        return [None if g is None else torch.nan_to_num(g, nan=0.0, posinf=0.0, neginf=0.0) for g in grads]
