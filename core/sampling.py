"""DDIM inversion that keeps the whole trajectory, and the denoising loop with hook points."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch

from .conditioning import Conditioning, as_conditioning
from .events import Reporter
from .models import DiffusionModel
from .previews import latent_preview
from .schedule import DDIMSchedule
from .unet_calls import unet_forward


@dataclass
class Trajectory:
    """latents[i] is the latent at schedule.timesteps[i] (the input of denoising step i);
    latents[steps] is the clean latent. Only indices >= `start` were computed."""

    latents: torch.Tensor  # [steps + 1, C, h, w] float32
    timesteps: list
    start: int = 0

    def at(self, i: int) -> torch.Tensor:
        if i < self.start:
            raise IndexError(f"step {i} was not inverted (trajectory starts at {self.start})")
        return self.latents[i: i + 1]

    @property
    def clean(self) -> torch.Tensor:
        return self.latents[-1:]

    @property
    def noisiest(self) -> torch.Tensor:
        return self.latents[self.start: self.start + 1]


EpsRefiner = Callable[[torch.Tensor, torch.Tensor, int, int], torch.Tensor]


def predict_cfg(model: DiffusionModel, x: torch.Tensor, t: int, cond: Conditioning,
                uncond: Optional[Conditioning], guidance: float) -> torch.Tensor:
    """Classifier-free guidance in one batched UNet pass (just the conditional one at guidance 1)."""
    if uncond is None or guidance == 1.0:
        return unet_forward(model, x, t, cond)
    out = unet_forward(model, torch.cat([x, x]), t, Conditioning.cat([as_conditioning(uncond), as_conditioning(cond)]))
    u, c = out.chunk(2)
    return u + guidance * (c - u)


def ddim_invert(model: DiffusionModel, schedule: DDIMSchedule, latent0: torch.Tensor, cond: Conditioning,
                reporter: Optional[Reporter] = None, stop_index: int = 0,
                eps_refiner: Optional[EpsRefiner] = None, stage: str = "invert") -> Trajectory:
    """Deterministic DDIM inversion x0 -> x_T (or up to timesteps[stop_index]) with guidance 1.

    `eps_refiner(eps, x, t, i)` may adjust each predicted noise (pix2pix-zero's regulariser)."""
    n = schedule.steps
    lat = torch.zeros((n + 1,) + tuple(latent0.shape[1:]), dtype=torch.float32, device=latent0.device)
    lat[n] = latent0[0].float()
    x = latent0.float()
    total = n - stop_index
    if reporter:
        reporter.stage(stage, total)
    for k, i in enumerate(range(n - 1, stop_index - 1, -1)):
        t = schedule.timesteps[i]
        with torch.no_grad():
            eps = unet_forward(model, x, t, cond)
        if eps_refiner is not None:
            eps = eps_refiner(eps, x, t, i).detach()
        # The UNet predicts at t from the latent at the previous (lower) timestep: DDIM's inversion
        # approximation, exact in the limit of many steps.
        x0, eps_ = schedule.x0_and_eps(x, eps, t)
        x = schedule.invert_step(x, eps_, schedule.prev_timestep(i), t)
        lat[i] = x[0]
        if reporter:
            reporter.step(k + 1, total, latent_preview(model, x0))
    return Trajectory(lat, list(schedule.timesteps), stop_index)


StepFn = Callable[[torch.Tensor, int, int], torch.Tensor]


def keep_outside(mask: torch.Tensor, x: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """`x` inside the mask (1 = editable), `source` outside, blended where the mask is soft: the
    model then generates the edited region against the real surroundings (blended latent diffusion),
    so the engine's feathered pixel composite cross-fades between nearly identical pixels."""
    return source + mask.to(x) * (x - source)


def keep_outside_trajectory(mask: Optional[torch.Tensor], traj: "Trajectory", rows: int | None = None):
    """An `after_step` for `denoise` that resets the latent outside `mask` to the source trajectory
    after every step (traj.at(i + 1): the source at the next timestep, the clean latent after the
    last). `rows`: only the first `rows` batch items are the edit (others are reference branches).
    None when there is no mask."""
    if mask is None:
        return None

    def after_step(x_prev: torch.Tensor, i: int) -> torch.Tensor:
        source = traj.at(i + 1).to(x_prev.device)
        if rows is None:
            return keep_outside(mask, x_prev, source)
        return torch.cat([keep_outside(mask, x_prev[:rows], source), x_prev[rows:]])

    return after_step


def denoise(model: DiffusionModel, schedule: DDIMSchedule, x: torch.Tensor, predict: StepFn,
            reporter: Optional[Reporter] = None, start_index: int = 0, stage: str = "edit",
            guide: Optional[StepFn] = None,
            after_step: Optional[Callable[[torch.Tensor, int], Optional[torch.Tensor]]] = None) -> torch.Tensor:
    """The DDIM sampling loop from timesteps[start_index] to the clean latent.

    predict(x, i, t) -> model output for x (the method batches its own branches inside);
    guide(x, i, t) -> x, run before the prediction (gradient guidance on x_t);
    after_step(x_prev, i) -> optional replacement (e.g. re-imposing the source outside a mask)."""
    n = schedule.steps
    total = n - start_index
    if reporter:
        reporter.stage(stage, total)
    x = x.float()
    for k, i in enumerate(range(start_index, n)):
        t = schedule.timesteps[i]
        if guide is not None:
            x = guide(x, i, t).detach()
        with torch.no_grad():
            out = predict(x, i, t)
            x0, eps = schedule.x0_and_eps(x, out, t)
            x = schedule.from_x0(x0, eps, schedule.prev_timestep(i))
        if after_step is not None:
            replaced = after_step(x, i)
            if replaced is not None:
                x = replaced
        if reporter:
            reporter.step(k + 1, total, latent_preview(model, x0))
    return x


def invert_cached(ctx, schedule: DDIMSchedule, prompt: str, stop_index: int = 0,
                  eps_refiner: Optional[EpsRefiner] = None, refiner_key: Any = None,
                  stage: str = "invert") -> Trajectory:
    """DDIM inversion of the context's image, cached by content: a second edit of the same image
    with the same model, prompt and steps runs no inversion pass. `refiner_key` must name the
    refiner's settings when one is given."""
    from .cache import content_key

    # the timesteps, not only their count: DDIM's and LCM's 4-step schedules differ
    key = content_key(ctx.model.model_id, str(ctx.device), ctx.image_key, prompt, tuple(schedule.timesteps),
                      stop_index, refiner_key)
    cache = ctx.cache("inversion", 8)
    traj = cache.get(key)
    if traj is not None:
        ctx.reporter.stage(stage, 1)
        ctx.reporter.step(1, 1, latent_preview(ctx.model, traj.clean), message="reused")
        return traj
    latent0 = ctx.encode_source()
    cond = ctx.model.encode_text(prompt)
    traj = ddim_invert(ctx.model, schedule, latent0, cond, ctx.reporter, stop_index, eps_refiner, stage)
    cache.put(key, traj)
    return traj


@torch.no_grad()
def draw_from_text(model: DiffusionModel, prompt: str, width: int, height: int, seed: int = 0,
                   guidance: float = 7.5, steps: int = 50) -> torch.Tensor:
    """The clean latent of the model drawing `prompt` from seeded noise (DDIM, classifier-free
    guidance) on a width × height canvas (multiples of model.grid). The control an edit must beat:
    an edit that only redraws its prompt looks like this, whatever the picture was."""
    s = model.vae_scale
    x = torch.randn(1, model.latent_channels, height // s, width // s,
                    generator=torch.Generator().manual_seed(seed)).to(model.device)
    both = model.encode_text(["", prompt])

    def predict(x_: torch.Tensor, i: int, t: int) -> torch.Tensor:
        uncond, cond = unet_forward(model, torch.cat([x_, x_]), t, both).chunk(2)
        return uncond + guidance * (cond - uncond)

    return denoise(model, DDIMSchedule(model.scheduler_config, steps), x, predict)
