"""DDIM arithmetic on the model's noise schedule: deterministic steps in both directions.

Written out (rather than calling DDIMScheduler.step) because inversion needs the reverse step,
guidance needs gradients through it, and methods need x0 and eps at every step. The timesteps and
alphas come from diffusers' DDIMScheduler configured from the model's own scheduler config."""
from __future__ import annotations

import torch


class DDIMSchedule:
    def __init__(self, scheduler_config: dict, steps: int):
        from diffusers import DDIMScheduler

        sched = DDIMScheduler.from_config(scheduler_config, clip_sample=False, set_alpha_to_one=False)
        sched.set_timesteps(steps)
        self.steps = steps
        self.timesteps = [int(t) for t in sched.timesteps]  # descending, e.g. 981 … 1
        self.alphas_cumprod = sched.alphas_cumprod.double()
        self.final_alpha = float(sched.final_alpha_cumprod)
        self.prediction_type = sched.config.prediction_type

    def __len__(self) -> int:
        return self.steps

    def alpha(self, t: int) -> float:
        return float(self.alphas_cumprod[t]) if t >= 0 else self.final_alpha

    def prev_timestep(self, i: int) -> int:
        """The timestep after denoising step i (-1 = the clean end of the trajectory)."""
        return self.timesteps[i + 1] if i + 1 < self.steps else -1

    def index_for_strength(self, strength: float) -> int:
        """First denoising index when only the last `strength` fraction of the steps is run."""
        n_run = max(1, min(self.steps, round(self.steps * strength)))
        return self.steps - n_run

    # ---- conversions ---------------------------------------------------------------------------
    def x0_and_eps(self, x_t: torch.Tensor, model_out: torch.Tensor, t: int):
        a = self.alpha(t)
        sa, sb = a ** 0.5, (1 - a) ** 0.5
        if self.prediction_type == "v_prediction":
            x0 = sa * x_t - sb * model_out
            eps = sa * model_out + sb * x_t
        elif self.prediction_type == "sample":
            x0 = model_out
            eps = (x_t - sa * x0) / sb
        else:
            eps = model_out
            x0 = (x_t - sb * eps) / sa
        return x0, eps

    def step(self, x_t: torch.Tensor, model_out: torch.Tensor, i: int) -> torch.Tensor:
        """Deterministic DDIM step from timesteps[i] to the next lower timestep."""
        x0, eps = self.x0_and_eps(x_t, model_out, self.timesteps[i])
        return self.from_x0(x0, eps, self.prev_timestep(i))

    def from_x0(self, x0: torch.Tensor, eps: torch.Tensor, t: int) -> torch.Tensor:
        a = self.alpha(t)
        return a ** 0.5 * x0 + (1 - a) ** 0.5 * eps

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: int) -> torch.Tensor:
        return self.from_x0(x0, noise, t)

    def invert_step(self, x: torch.Tensor, eps: torch.Tensor, t_from: int, t_to: int) -> torch.Tensor:
        """Reverse DDIM: latent at t_from (-1 = clean) -> latent at t_to, using eps predicted at t_to."""
        a_from = self.alpha(t_from)
        x0 = (x - (1 - a_from) ** 0.5 * eps) / a_from ** 0.5
        return self.from_x0(x0, eps, t_to)
