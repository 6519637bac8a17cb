"""DDIM arithmetic on the model's noise schedule: deterministic steps in both directions.

Written out (rather than calling DDIMScheduler.step) because inversion needs the reverse step,
guidance needs gradients through it, and methods need x0 and eps at every step. The timesteps and
alphas come from diffusers' DDIMScheduler configured from the model's own scheduler config."""
from __future__ import annotations

from typing import Union

import torch

Alpha = Union[float, torch.Tensor]  # ᾱ_t: a number, or a tensor broadcastable to the latents


# ---- what the UNet predicts, in one place ----------------------------------------------------------
# ε-, v- and x0- ("sample") prediction are three ways of writing the same pair (x0, ε) given x_t:
#     x_t = √ᾱ·x0 + √(1−ᾱ)·ε,   v = √ᾱ·ε − √(1−ᾱ)·x0
# Every conversion between them goes through these two functions.

def split_prediction(prediction_type: str, x_t: torch.Tensor, model_out: torch.Tensor, alpha: Alpha):
    """The model's output at x_t -> (x0, ε)."""
    sa, sb = alpha ** 0.5, (1 - alpha) ** 0.5
    if prediction_type == "v_prediction":
        return sa * x_t - sb * model_out, sa * model_out + sb * x_t
    if prediction_type == "sample":
        return model_out, (x_t - sa * model_out) / sb
    return (x_t - sb * model_out) / sa, model_out


def prediction_from(prediction_type: str, x0: torch.Tensor, eps: torch.Tensor, alpha: Alpha) -> torch.Tensor:
    """(x0, ε) -> what the model should output (its training target)."""
    sa, sb = alpha ** 0.5, (1 - alpha) ** 0.5
    if prediction_type == "v_prediction":
        return sa * eps - sb * x0
    if prediction_type == "sample":
        return x0
    return eps


SAMPLERS = ("ddim", "lcm", "tcd")
FEW_STEP_SAMPLERS = ("lcm", "tcd")


class DDIMSchedule:
    """Deterministic DDIM arithmetic over a timestep schedule.

    sampler "ddim": DDIM's evenly spaced timesteps. "lcm" / "tcd": the timesteps LCM and TCD
    sample at (a few steps drawn from the 50-step skeleton they were distilled on, e.g. 999, 759,
    499, 259 for 4 steps). A few-step model (LCM-LoRA, LCM or TCD checkpoints) predicts the clean
    latent well from any of them; stepping deterministically with the predicted noise is TCD's
    γ = 0 sampler, and it is what makes inversion and structure-keeping edits possible at 4–8 steps
    (LCM's own sampler re-noises with fresh noise, which no inversion can follow). LCM's boundary
    scalings (c_skip, c_out) differ from DDIM's x0 by under 1e-6 at these timesteps; ignored."""

    def __init__(self, scheduler_config: dict, steps: int, sampler: str = "ddim"):
        import diffusers

        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}")
        cls = {"ddim": diffusers.DDIMScheduler, "lcm": diffusers.LCMScheduler, "tcd": diffusers.TCDScheduler}[sampler]
        sched = cls.from_config(scheduler_config, clip_sample=False, set_alpha_to_one=False)
        sched.set_timesteps(steps)
        self.sampler = sampler
        self.steps = steps
        top = len(sched.alphas_cumprod) - 1
        timesteps = [int(t) for t in sched.timesteps]  # descending, e.g. 981 … 1
        # "leading" spacing adds steps_offset after spacing, so with as many steps as training
        # timesteps (1000 of 1000, offset 1) the first one is 1000, past the end of the schedule:
        # shift the whole ladder down by the overshoot (same count, same spacing). "trailing"
        # builds its ladder in floating point and can end with an extra -1: drop what is below 0.
        overshoot = timesteps[0] - top
        if overshoot > 0:
            timesteps = [t - overshoot for t in timesteps]
        timesteps = [t for t in timesteps if t >= 0]
        if len(timesteps) != steps or any(a <= b for a, b in zip(timesteps, timesteps[1:])):
            raise ValueError(f"the scheduler gives {len(timesteps)} timesteps for {steps} steps")
        self.timesteps = timesteps
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
        return split_prediction(self.prediction_type, x_t, model_out, self.alpha(t))

    def model_output(self, x0: torch.Tensor, eps: torch.Tensor, t: int) -> torch.Tensor:
        """The model output that (x0, ε) correspond to at t (inverse of x0_and_eps)."""
        return prediction_from(self.prediction_type, x0, eps, self.alpha(t))

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
