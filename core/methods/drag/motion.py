"""DragDiffusion's latent optimisation: motion supervision on decoder features, point tracking,
and the reference-attention hook used while denoising the dragged latent.

Coordinates: points are (x, y) float tensors on the feature grid, which is the working canvas at
half resolution; a point's value is the feature at that grid index (bilinear between indices).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F

from ...attention import attention_hooks
from ...events import Reporter
from ...models import DiffusionModel
from ...previews import latent_preview
from ...reference_attention import ReferenceAttention, reference_blocks  # noqa: F401  (tests import them here)
from ...sampling import denoise
from ...schedule import DDIMSchedule
from ...unet_calls import unet_forward
from ...layer_maps import LayerMap, layer_map
from ...unet_layout import forward_hook, up_block_for_sd1

STOP_RADIUS = 2.0  # feature-grid units: a handle this close to its target has arrived


# ---- features -----------------------------------------------------------------------------------

def feature_block(unet, lmap: Optional[LayerMap] = None) -> torch.nn.Module:
    """The decoder block whose output supervises the motion (SD 1.x: up_blocks[2], 640 ch at 64²;
    SDXL: up_blocks[1], see core/layer_maps.py; other shapes: the same relative depth)."""
    if lmap is not None:
        return unet.up_blocks[lmap.drag_feature_block]
    return unet.up_blocks[up_block_for_sd1(unet, 2)]


def unet_with_features(model: DiffusionModel, block: torch.nn.Module, x: torch.Tensor, t: int,
                       cond: torch.Tensor, size: tuple[int, int]):
    """One UNet pass -> (model output, `block`'s output resized bilinearly to `size`, float32)."""
    grabbed = {}

    def grab(_module, _inputs, output):
        grabbed["f"] = output[0] if isinstance(output, tuple) else output

    with forward_hook(block, grab):
        out = unet_forward(model, x, t, cond)
    feat = F.interpolate(grabbed["f"].float(), size=size, mode="bilinear", align_corners=False)
    return out, feat


def sample_points(feat: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
    """Bilinear feature values at grid points: feat [1,C,H,W], pts [M,2] (x, y) -> [M,C]."""
    h, w = feat.shape[-2:]
    gx = pts[:, 0] * (2.0 / max(w - 1, 1)) - 1.0
    gy = pts[:, 1] * (2.0 / max(h - 1, 1)) - 1.0
    grid = torch.stack([gx, gy], dim=-1).view(1, 1, -1, 2).to(feat.dtype)
    out = F.grid_sample(feat, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out[0, :, 0].transpose(0, 1)


def square_offsets(r: int, device=None) -> torch.Tensor:
    """The (2r+1)^2 integer offsets (x, y) of a square patch, [K,2] float."""
    d = torch.arange(-r, r + 1, device=device, dtype=torch.float32)
    yy, xx = torch.meshgrid(d, d, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=-1)


# ---- motion supervision and tracking ----------------------------------------------------------

def motion_loss(feat: torch.Tensor, handles: torch.Tensor, targets: torch.Tensor, r_m: int,
                stop_radius: float = STOP_RADIUS) -> torch.Tensor:
    """Sum over handles of sum over the (2r_m+1)^2 patch q around the handle of
    mean_channels |F(q).detach() - F(q + d)|, d the unit step toward the target: the features one
    step ahead are pulled onto the current ones. Handles already within `stop_radius` of their
    target add nothing (they have arrived; pushing them on would overshoot)."""
    delta = targets - handles
    dist = delta.norm(dim=1, keepdim=True)
    step = delta / dist.clamp_min(1e-6)
    offs = square_offsets(r_m, feat.device)
    q = handles[:, None, :] + offs[None]                          # [N,K,2]
    here = sample_points(feat.detach(), q.reshape(-1, 2))
    ahead = sample_points(feat, (q + step[:, None, :]).reshape(-1, 2))
    per_handle = (here - ahead).abs().mean(dim=1).view(q.shape[0], -1).sum(dim=1)
    moving = (dist[:, 0] >= stop_radius).to(per_handle.dtype)
    return (per_handle * moving).sum()


def track_points(feat: torch.Tensor, reference: torch.Tensor, handles: torch.Tensor, r_p: int) -> torch.Tensor:
    """Point tracking: for each handle, the grid position in the (2r_p+1)^2 window around it (kept
    inside the grid) whose feature is nearest in L1 to `reference` (the original image's feature at
    the initial handle). feat [1,C,H,W], reference [N,C], handles [N,2] -> [N,2] integer positions."""
    h, w = feat.shape[-2:]
    cand = handles.round()[:, None, :] + square_offsets(r_p, feat.device)[None]   # [N,K,2]
    cand[..., 0].clamp_(0, w - 1)
    cand[..., 1].clamp_(0, h - 1)
    idx = cand.long()
    values = feat[0][:, idx[..., 1], idx[..., 0]]                  # [C,N,K]
    dist = (values - reference.transpose(0, 1)[:, :, None]).abs().sum(dim=0)  # [N,K]
    best = dist.argmin(dim=1)
    return cand[torch.arange(cand.shape[0], device=cand.device), best]


@dataclass
class DragOutcome:
    latent: torch.Tensor          # the optimised latent at the inversion timestep
    handles: torch.Tensor         # [N,2] where the handles were tracked to (feature grid)
    steps: int                    # optimiser steps taken
    reached: bool                 # every handle within the stop radius of its target
    losses: list = field(default_factory=list)


def drag_latent(model: DiffusionModel, schedule: DDIMSchedule, index: int, latent: torch.Tensor,
                cond: torch.Tensor, handles: torch.Tensor, targets: torch.Tensor, feat_size: tuple[int, int],
                *, max_steps: int, lr: float, r_m: int, r_p: int, lam: float = 0.0,
                mask: Optional[torch.Tensor] = None, reporter: Optional[Reporter] = None,
                track: bool = True, stop_radius: float = STOP_RADIUS) -> DragOutcome:
    """Optimise the latent at timesteps[index] with Adam so that the handles' features move toward
    the targets, tracking the handles after every step, until all arrive or `max_steps` is spent.
    With a latent-size `mask` (1 = editable) and lam > 0, lam * sum|(x_{t-1}(z^) - x_{t-1}(z)) (1 - M)|
    keeps the outside where it was. Only the latent gets gradients."""
    t = schedule.timesteps[index]
    t_prev = schedule.prev_timestep(index)
    block = feature_block(model.unet, layer_map(model))
    z = latent.detach().float().clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    handles = handles.detach().float().clone()
    targets = targets.detach().float()
    keep = None if mask is None or lam <= 0 else (1.0 - mask.float())
    reference = x_prev_orig = None
    losses: list = []
    steps = 0
    reached = False
    if reporter:
        reporter.stage("drag", max_steps)
    for k in range(max_steps + 1):
        final = k == max_steps  # one more pass only to track where the last step left the handles
        with torch.set_grad_enabled(not final):
            out, feat = unet_with_features(model, block, z, t, cond, feat_size)
        if k == 0:
            # The first pass sees the original latent: its features are the tracking reference
            # and its DDIM step the mask term's anchor (no separate pass needed).
            reference = sample_points(feat.detach(), handles)
            x0_o, eps_o = schedule.x0_and_eps(z.detach(), out.detach(), t)
            x_prev_orig = schedule.from_x0(x0_o, eps_o, t_prev)
        elif track:
            handles = track_points(feat.detach(), reference, handles, r_p)
        x0_now = schedule.x0_and_eps(z.detach(), out.detach(), t)[0]
        reached = bool(((targets - handles).norm(dim=1) < stop_radius).all())
        if reached:
            if reporter:
                reporter.step(max_steps, max_steps, latent_preview(model, x0_now), message=f"reached in {k} steps")
            break
        if final:
            break
        with torch.enable_grad():
            loss = motion_loss(feat, handles, targets, r_m, stop_radius)
            if keep is not None:
                x0_z, eps_z = schedule.x0_and_eps(z, out, t)
                x_prev = schedule.from_x0(x0_z, eps_z, t_prev)
                loss = loss + lam * ((x_prev - x_prev_orig) * keep).abs().sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
        opt.step()
        steps += 1
        losses.append(loss.detach())
        if reporter:
            reporter.step(k + 1, max_steps, latent_preview(model, x0_now))
    losses = torch.stack(losses).tolist() if losses else []
    return DragOutcome(z.detach(), handles, steps, reached, losses)


# ---- reference-latent control -----------------------------------------------------------------

def denoise_with_reference(model: DiffusionModel, schedule: DDIMSchedule, start: int, edited: torch.Tensor,
                           original: torch.Tensor, cond: torch.Tensor,
                           reporter: Optional[Reporter] = None) -> torch.Tensor:
    """Denoise [edited, original] together from timesteps[start]; the edited branch borrows the
    original's self-attention keys and values in the high-resolution decoder. -> edited clean latent.
    (Edited first, so the stage's previews show it.)"""
    hook = ReferenceAttention(reference_blocks(model.unet, layer_map(model)), reference=1)
    x = torch.cat([edited.float(), original.float()])
    cond2 = cond.expand(2)
    with attention_hooks(model.unet, hook):
        out = denoise(model, schedule, x, lambda x_, i, t: unet_forward(model, x_, t, cond2), reporter,
                      start_index=start, stage="denoise")
    return out[:1]
