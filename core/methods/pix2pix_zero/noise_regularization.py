"""pix2pix-zero's noise regularisation for DDIM inversion.

DDIM inversion's predicted noise drifts away from white Gaussian noise (neighbouring positions
correlate), which makes the inverted latent harder to edit. At each inversion step the predicted
ε is refined with a few gradient steps on

    L_auto = L_pair + λ·L_KL

- L_pair: over a pyramid of the noise map (level 0 = ε; each next level 2×2 average-pooled and
  multiplied by 2 so white noise keeps unit variance; stop at 8×8 or after 4 levels), the sum of
  squared auto-correlation coefficients at a random non-zero shift per axis (circular indexing).
  A fresh random shift is drawn for every one of `rolls` sub-steps, which spreads long-range
  decorrelation quickly.
- L_KL: KL(N(μ, σ²) ‖ N(0, 1)) of the noise values' statistics — a soft pull to zero mean and unit
  variance (hard renormalisation makes denoising diverge).

`NoiseRegularizer` plugs into `core.sampling.ddim_invert` / `invert_cached` as `eps_refiner`, with
`refiner.key` as `refiner_key`."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

MIN_SIZE = 8
MAX_LEVELS = 4


def noise_pyramid(eps: torch.Tensor, min_size: int = MIN_SIZE, max_levels: int = MAX_LEVELS) -> list[torch.Tensor]:
    """[B,C,H,W] -> levels, each 2×2 average-pooled ×2 (variance-preserving for white noise)."""
    levels = [eps]
    x = eps
    while len(levels) < max_levels and min(x.shape[-2:]) >= 2 * min_size:
        x = F.avg_pool2d(x, 2) * 2.0
        levels.append(x)
    return levels


def _random_shifts(levels: list[torch.Tensor], generator: Optional[torch.Generator]) -> list[tuple[int, int]]:
    out = []
    for lvl in levels:
        h, w = lvl.shape[-2:]
        sy = int(torch.randint(1, max(2, h // 2 + 1), (1,), generator=generator))
        sx = int(torch.randint(1, max(2, w // 2 + 1), (1,), generator=generator))
        out.append((sy, sx))
    return out


def pair_loss(eps: torch.Tensor, shifts: Optional[list[tuple[int, int]]] = None,
              generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """L_pair: Σ over pyramid levels of the squared auto-correlation coefficients of the noise at
    one (vertical, horizontal) shift per level. `shifts` fixes the shifts (else drawn at random
    from 1..size/2 with `generator`)."""
    levels = noise_pyramid(eps)
    if shifts is None:
        shifts = _random_shifts(levels, generator)
    loss = eps.new_zeros(())
    for lvl, (sy, sx) in zip(levels, shifts):
        loss = loss + (lvl * torch.roll(lvl, sy, dims=-2)).mean() ** 2
        loss = loss + (lvl * torch.roll(lvl, sx, dims=-1)).mean() ** 2
    return loss


def autocorrelation(eps: torch.Tensor, max_shift: Optional[int] = None) -> torch.Tensor:
    """A deterministic measure of how far `eps` is from white noise: L_pair summed over every shift
    1..max_shift on both axes and all pyramid levels (for tests and diagnostics)."""
    levels = noise_pyramid(eps)
    total = eps.new_zeros(())
    for lvl in levels:
        h, w = lvl.shape[-2:]
        for s in range(1, (max_shift or max(h, w) // 2) + 1):
            if s <= h // 2:
                total = total + (lvl * torch.roll(lvl, s, dims=-2)).mean() ** 2
            if s <= w // 2:
                total = total + (lvl * torch.roll(lvl, s, dims=-1)).mean() ** 2
    return total


def kl_loss(eps: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, 1)) = ½(σ² + μ² − 1 − log σ²) of the noise values."""
    mu = eps.mean()
    var = eps.var()
    return 0.5 * (var + mu ** 2 - 1.0 - torch.log(var + 1e-7))


def regularize_noise(eps: torch.Tensor, steps: int = 5, lambda_ac: float = 20.0, lambda_kl: float = 20.0,
                     rolls: int = 5, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """`steps` rounds of: `rolls` gradient steps (size λ_ac) on L_pair, each at fresh random shifts,
    then one gradient step (size λ_kl) on L_KL. Works in float32; returns a detached tensor."""
    e = eps.detach().float()
    with torch.enable_grad():
        for _ in range(steps):
            if lambda_ac > 0:
                for _ in range(rolls):
                    v = e.detach().requires_grad_(True)
                    (g,) = torch.autograd.grad(pair_loss(v, generator=generator), v)
                    e = e - lambda_ac * g
            if lambda_kl > 0:
                v = e.detach().requires_grad_(True)
                (g,) = torch.autograd.grad(kl_loss(v), v)
                e = e - lambda_kl * g
    return e.detach().to(eps.dtype)


class NoiseRegularizer:
    """An `eps_refiner` for `ddim_invert`: regularises each predicted noise.

    Shifts are drawn from a generator seeded by (seed, step index), so an inversion is reproducible
    and `key` fully names its result. With the `schedule` of a v- or x0-prediction model, the model output
    is converted to ε, regularised, and converted back."""

    def __init__(self, steps: int = 5, lambda_ac: float = 20.0, lambda_kl: float = 20.0, rolls: int = 5,
                 seed: int = 0, schedule=None):
        self.steps = int(steps)
        self.lambda_ac = float(lambda_ac)
        self.lambda_kl = float(lambda_kl)
        self.rolls = int(rolls)
        self.seed = int(seed)
        self.schedule = schedule
        self.calls = 0

    @property
    def active(self) -> bool:
        return self.steps > 0 and (self.lambda_ac > 0 or self.lambda_kl > 0)

    @property
    def key(self) -> tuple:
        return ("noise-reg", self.steps, self.lambda_ac, self.lambda_kl, self.rolls, self.seed)

    def __call__(self, model_out: torch.Tensor, x: torch.Tensor, t: int, i: int) -> torch.Tensor:
        self.calls += 1
        if not self.active:
            return model_out
        gen = torch.Generator("cpu").manual_seed(self.seed * 100003 + int(i))
        if self.schedule is None or self.schedule.prediction_type == "epsilon":
            return regularize_noise(model_out, self.steps, self.lambda_ac, self.lambda_kl, self.rolls, gen)
        # v- or x0-prediction: regularise the ε the output implies at x_t = x, then return the output
        # that implies exactly that ε at the same x_t (x0 follows from x and ε).
        x0, eps = self.schedule.x0_and_eps(x, model_out, t)
        eps = regularize_noise(eps, self.steps, self.lambda_ac, self.lambda_kl, self.rolls, gen)
        x0 = (x - (1 - self.schedule.alpha(t)) ** 0.5 * eps) / self.schedule.alpha(t) ** 0.5
        return self.schedule.model_output(x0, eps, t)
