"""Drag editing's latent optimisation: motion supervision on decoder features, point tracking,
GoodDrag's alternation of drag and denoising steps, and the reference-attention denoising that
follows.

Motion supervision (DragDiffusion, Shi et al. 2024) pulls the features one step ahead of each
handle onto the handle's features. With `anchor` features it is GoodDrag's information-preserving
form (Zhang et al. 2024): the features ahead of the *current* handle are pulled onto the original
image's features at the *initial* handle (at the same timestep), not onto the last step's, so the
handle's appearance does not drift while it travels, and the step ahead may be longer than one
grid unit (up to `step`). Point tracking compares with the same original feature.

Alternating drag and denoising (GoodDrag): instead of optimising the inverted latent at one
timestep for the whole drag, a few motion-supervision steps run at timestep t_i, then one DDIM step
takes the dragged latent to t_{i+1}, and so on for the first denoising steps; each timestep's
denoising step repairs what the drag disturbed before the next drag steps add more. The original
branch is the inversion trajectory itself (its latent at every t_i is known, Direct Inversion), so
its features and DDIM step cost one pass per drag timestep and follow the input exactly.

Coordinates: points are (x, y) float tensors on the feature grid, which is the working canvas at
half resolution; a point's value is the feature at that grid index (bilinear between indices).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F

from ...attention import attention_hooks
from ...events import Reporter
from ...loss_scaling import LossScaler
from ...models import DiffusionModel
from ...previews import latent_preview
from ...reference_attention import ReferenceAttention, reference_blocks  # noqa: F401  (tests import them here)
from ...sampling import Trajectory, denoise
from ...schedule import DDIMSchedule
from ...unet_calls import counters, unet_forward
from ...layer_maps import LayerMap, layer_map
from ...unet_layout import forward_hook, up_block_for_sd1

STOP_RADIUS = 2.0        # grid units: the official "arrived" radius (both DragDiffusion and GoodDrag)
STOP_FRACTION = 0.1      # ... but never more than this share of the handle's own drag, so that an
MIN_STOP_RADIUS = 0.5    #     arrived handle has covered >= 90 % of it; and never under half a unit
# (tracking lands on whole units: half a unit is the nearest a handle can come to a target between
# cells). The floor was 1 unit, which let a 3-unit drag stop a third short: on ShapesBench's short
# drags (6 px at 64 px) the tracking then called a handle arrived while the object had barely moved.
STILL_TRACKS = 10        # GoodDrag (its app's default): stop dragging after this many trackings in a row moved no handle


# ---- features -----------------------------------------------------------------------------------

def feature_block(unet, lmap: Optional[LayerMap] = None) -> torch.nn.Module:
    """The decoder block whose output supervises the motion (SD 1.x: up_blocks[2], 640 ch at 64²;
    SDXL: up_blocks[1], see core/layer_maps.py; other shapes: the same relative depth)."""
    if lmap is not None:
        return unet.up_blocks[lmap.drag_feature_block]
    return unet.up_blocks[up_block_for_sd1(unet, 2)]


class _FeaturesReady(Exception):
    """Raised by the feature hook of a truncated pass: the rest of the UNet is not needed."""


def unet_with_features(model: DiffusionModel, block: torch.nn.Module, x: torch.Tensor, t: int,
                       cond: torch.Tensor, size: tuple[int, int], full: bool = True):
    """One UNet pass -> (model output, `block`'s output resized bilinearly to `size`, float32).

    full=False stops the pass right after `block` (the output is then None): motion supervision
    without a mask needs only the features, and the decoder's last block and output convolution are
    about a third of a pass at 512 px (SD 1.5's up_blocks[3] runs at the full latent resolution)."""
    grabbed = {}

    def grab(_module, _inputs, output):
        grabbed["f"] = output[0] if isinstance(output, tuple) else output
        if not full:
            raise _FeaturesReady()

    out = None
    with forward_hook(block, grab):
        try:
            out = unet_forward(model, x, t, cond)
        except _FeaturesReady:
            c = counters(model)
            c["unet_truncated"] += 1
            if torch.is_grad_enabled():
                c["unet_truncated_grad"] += 1
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


def patch_features(feat: torch.Tensor, centres: torch.Tensor, r: int) -> torch.Tensor:
    """The (2r+1)^2 patch around each centre: feat [1,C,H,W], centres [N,2] -> [N,K,C]."""
    q = centres[:, None, :] + square_offsets(r, feat.device)[None]
    return sample_points(feat, q.reshape(-1, 2)).view(centres.shape[0], q.shape[1], -1)


# ---- motion supervision and tracking ----------------------------------------------------------

def stop_radii(handles: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per handle, how close (grid units) counts as arrived: the official 2, but at most a tenth of
    that handle's own drag (a short drag must not "arrive" half way) and at least half a unit
    (tracking moves in whole grid units; see MIN_STOP_RADIUS)."""
    d0 = (targets - handles).norm(dim=1)
    return (STOP_FRACTION * d0).clamp(MIN_STOP_RADIUS, STOP_RADIUS)


def motion_loss(feat: torch.Tensor, handles: torch.Tensor, targets: torch.Tensor, r_m: int,
                stop_radius=STOP_RADIUS, anchor: Optional[torch.Tensor] = None, step: float = 1.0) -> torch.Tensor:
    """Sum over handles of sum over the (2r_m+1)^2 patch of mean_channels |A(q) - F(q + d)|, where
    d points from the handle toward its target, of length min(step, distance left). A (the anchor)
    is F(q).detach() at the current handle (DragDiffusion), or given [N,K,C]: the original
    features around the initial handle (GoodDrag's information-preserving supervision). Handles
    already within `stop_radius` (a number or [N]) of their target add nothing."""
    delta = targets - handles
    dist = delta.norm(dim=1, keepdim=True)
    d = delta / dist.clamp_min(1e-6) * dist.clamp(max=step)
    offs = square_offsets(r_m, feat.device)
    q = handles[:, None, :] + offs[None]                          # [N,K,2]
    here = sample_points(feat.detach(), q.reshape(-1, 2)).view(q.shape[0], q.shape[1], -1) \
        if anchor is None else anchor.detach()
    ahead = sample_points(feat, (q + d[:, None, :]).reshape(-1, 2)).view(q.shape[0], q.shape[1], -1)
    per_handle = (here - ahead).abs().mean(dim=2).sum(dim=1)
    radius = torch.as_tensor(stop_radius, dtype=dist.dtype, device=dist.device).expand(dist.shape[0])
    moving = (dist[:, 0] >= radius).to(per_handle.dtype)
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
    latent: torch.Tensor          # the dragged latent, at timesteps[index]
    handles: torch.Tensor         # [N,2] where the handles were tracked to (feature grid)
    steps: int                    # motion-supervision steps taken
    reached: bool                 # every handle within its stop radius of its target
    index: int = 0                # the timestep index `latent` is at
    losses: list = field(default_factory=list)
    still_tracks: int = 0         # trackings in a row (up to now) that moved no handle
    drag_timesteps: int = 1       # timesteps at which motion supervision ran


def arrived(handles: torch.Tensor, targets: torch.Tensor, radius) -> bool:
    radius = torch.as_tensor(radius, dtype=handles.dtype, device=handles.device)
    return bool(((targets - handles).norm(dim=1) < radius).all())


def drag_latent(model: DiffusionModel, schedule: DDIMSchedule, index: int, latent: torch.Tensor,
                cond: torch.Tensor, handles: torch.Tensor, targets: torch.Tensor, feat_size: tuple[int, int],
                *, max_steps: int, lr: float, r_m: int, r_p: int, lam: float = 0.0,
                mask: Optional[torch.Tensor] = None, reporter: Optional[Reporter] = None,
                track: bool = True, stop_radius=STOP_RADIUS, reference: Optional[torch.Tensor] = None,
                original: Optional[torch.Tensor] = None, initial: Optional[torch.Tensor] = None,
                step: float = 1.0, track_every: int = 1, still_tracks: int = 0, final_track: bool = True,
                scaler: Optional[LossScaler] = None, progress: tuple[int, int] = (0, 0)) -> DragOutcome:
    """Optimise the latent at timesteps[index] with Adam so that the handles' features move toward
    the targets, tracking the handles every `track_every` steps, until all arrive, `max_steps` is
    spent, or tracking has not moved any handle STILL_TRACKS times in a row.

    `original` [1,C,h,w]: the undragged latent at this timestep, giving (one pass) the reference
    features for tracking and, when anchored, for motion supervision at the `initial` handles
    (GoodDrag's information-preserving form); without it the first pass on `latent` does (the
    latent is then taken to be the original, DragDiffusion's single-timestep loop). `reference`
    [N,C] overrides the tracking reference. With a latent-size `mask` (1 = editable) and lam > 0,
    lam * sum|(x_{t-1}(z^) - x_{t-1}(original)) (1 - M)| keeps the outside where it was. Only the
    latent gets gradients; `scaler` scales them through an fp16 UNet. `final_track`: when the steps
    run out, one more pass tracks where the last step left the handles (not needed when the caller
    tracks again right away)."""
    t = schedule.timesteps[index]
    t_prev = schedule.prev_timestep(index)
    block = feature_block(model.unet, layer_map(model))
    scaler = scaler or LossScaler.for_dtype(model.dtype)
    handles = handles.detach().float().clone()
    initial = handles.clone() if initial is None else initial.detach().float()
    targets = targets.detach().float()
    keep = None if mask is None or lam <= 0 else (1.0 - mask.float())
    anchor = x_prev_orig = None
    if original is not None:
        with torch.no_grad():
            out0, feat0 = unet_with_features(model, block, original.float(), t, cond, feat_size, full=keep is not None)
        if reference is None:
            reference = sample_points(feat0, initial)
        anchor = patch_features(feat0, initial, r_m)
        if keep is not None:
            x0_o, eps_o = schedule.x0_and_eps(original.float(), out0, t)
            x_prev_orig = schedule.from_x0(x0_o, eps_o, t_prev)
    z = latent.detach().float().clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    losses: list = []
    steps = 0
    done, budget_total = progress
    reached = False
    for k in range(max_steps + 1):
        final = k == max_steps  # one more pass only to track where the last step left the handles
        if final and not final_track:
            break
        # The model's output is needed only for the mask term and for previews (every tracking
        # step): the other passes stop after the supervised block.
        full = keep is not None or (reporter is not None and (k % track_every == 0 or final))
        with torch.set_grad_enabled(not final):
            out, feat = unet_with_features(model, block, z, t, cond, feat_size, full=full)
        if reference is None:
            # No original given: this first pass sees it (the tracking reference, the mask anchor).
            reference = sample_points(feat.detach(), handles)
            if keep is not None:
                x0_o, eps_o = schedule.x0_and_eps(z.detach(), out.detach(), t)
                x_prev_orig = schedule.from_x0(x0_o, eps_o, t_prev)
        elif track and (k % track_every == 0 or final) and (k > 0 or original is not None):
            moved = track_points(feat.detach(), reference, handles, r_p)
            if k > 0:  # a tracking after drag steps (k = 0 follows a denoising step)
                still_tracks = still_tracks + 1 if torch.equal(moved, handles.round()) else 0
            handles = moved
        preview = None if out is None else latent_preview(model, schedule.x0_and_eps(z.detach(), out.detach(), t)[0])
        reached = arrived(handles, targets, stop_radius)
        if reached or final or still_tracks >= STILL_TRACKS:
            if reporter and reached:
                reporter.step(done + steps, max(budget_total, done + steps), preview,
                              message=f"reached after {done + steps} steps")
            break
        with torch.enable_grad():
            loss = motion_loss(feat, handles, targets, r_m, stop_radius, anchor, step)
            if keep is not None:
                x0_z, eps_z = schedule.x0_and_eps(z, out, t)
                x_prev = schedule.from_x0(x0_z, eps_z, t_prev)
                loss = loss + lam * ((x_prev - x_prev_orig) * keep).abs().sum()
            opt.zero_grad(set_to_none=True)
            scaler.backward(loss, [z])
        opt.step()
        steps += 1
        losses.append(loss.detach())
        if reporter:
            reporter.step(done + steps, max(budget_total, done + steps), preview)
    losses = torch.stack(losses).tolist() if losses else []
    return DragOutcome(z.detach(), handles, steps, reached, index, losses, still_tracks)


@dataclass(frozen=True)
class DragSettings:
    """How the drag is run (all lengths in feature-grid units of this model)."""

    budget: int              # most motion-supervision steps in all
    timesteps: int           # denoising steps over which drag and denoising alternate
    track_every: int         # motion-supervision steps between two trackings
    lr: float
    r_m: int
    r_p: int
    step: float              # longest step ahead in motion supervision (GoodDrag's d)
    lam: float = 0.0


def alternate_drag(model: DiffusionModel, schedule: DDIMSchedule, traj: Trajectory, start: int,
                   cond: torch.Tensor, handles: torch.Tensor, targets: torch.Tensor, feat_size: tuple[int, int],
                   s: DragSettings, mask: Optional[torch.Tensor] = None,
                   reporter: Optional[Reporter] = None) -> DragOutcome:
    """GoodDrag's alternating drag and denoising from the inverted latent at timesteps[start]: at
    each of the first `s.timesteps` timesteps, motion supervision (anchored on the original
    trajectory's features there) for an even share of the budget, then one DDIM step of the dragged
    latent alone. Stops dragging once every handle has arrived, or tracking stalls. Returns the
    latent where dragging stopped (outcome.index says at which timestep)."""
    radius = stop_radii(handles, targets)
    initial = handles.detach().float().clone()
    z = traj.at(start).float()
    scaler = LossScaler.for_dtype(model.dtype)
    n = min(s.timesteps, schedule.steps - start)
    per_step = math.ceil(s.budget / max(n, 1))
    steps, losses, still = 0, [], 0
    outcome = DragOutcome(z, handles, 0, arrived(handles, targets, radius), start)
    if reporter:
        reporter.stage("drag", s.budget)
    used = 0
    for k in range(n):
        i = start + k
        left = s.budget - steps
        if left <= 0 or outcome.reached or still >= STILL_TRACKS:
            break
        last = k == n - 1 or per_step >= left  # no next timestep to track the handles at
        outcome = drag_latent(model, schedule, i, z, cond, outcome.handles, targets, feat_size,
                              max_steps=min(per_step, left), lr=s.lr, r_m=s.r_m, r_p=s.r_p, lam=s.lam,
                              mask=mask, reporter=reporter, stop_radius=radius, original=traj.at(i),
                              initial=initial, step=s.step, track_every=s.track_every, still_tracks=still,
                              final_track=last, scaler=scaler, progress=(steps, s.budget))
        used += 1
        steps += outcome.steps
        losses += outcome.losses
        still = outcome.still_tracks
        z = outcome.latent
        if outcome.reached or still >= STILL_TRACKS or steps >= s.budget:
            break
        # one denoising step of the dragged latent, to timesteps[i + 1]
        with torch.no_grad():
            t = schedule.timesteps[i]
            x0, eps = schedule.x0_and_eps(z, unet_forward(model, z, t, cond), t)
            z = schedule.from_x0(x0, eps, schedule.prev_timestep(i))
        outcome = DragOutcome(z, outcome.handles, outcome.steps, outcome.reached, i + 1)
    return DragOutcome(z, outcome.handles, steps, outcome.reached, outcome.index, losses, still, used)


# ---- reference-latent control -----------------------------------------------------------------

def denoise_with_reference(model: DiffusionModel, schedule: DDIMSchedule, start: int, edited: torch.Tensor,
                           traj: Trajectory, cond: torch.Tensor,
                           reporter: Optional[Reporter] = None) -> torch.Tensor:
    """Denoise [edited, original] together from timesteps[start]; the edited branch borrows the
    original's self-attention keys and values in the high-resolution decoder. The original branch
    is the inversion trajectory: after every step its row is reset to the trajectory's next latent,
    so the keys and values it lends are the input's own. -> edited clean latent. (Edited first, so
    the stage's previews show it.)"""
    hook = ReferenceAttention(reference_blocks(model.unet, layer_map(model)), reference=1)
    x = torch.cat([edited.float(), traj.at(start).float()])
    cond2 = cond.expand(2)

    def follow_trajectory(x_prev: torch.Tensor, i: int) -> torch.Tensor:
        return torch.cat([x_prev[:1], traj.at(i + 1).to(x_prev)])

    with attention_hooks(model.unet, hook):
        out = denoise(model, schedule, x, lambda x_, i, t: unet_forward(model, x_, t, cond2), reporter,
                      start_index=start, stage="denoise", after_step=follow_trajectory)
    return out[:1]
