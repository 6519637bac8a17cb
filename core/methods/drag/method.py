"""`drag`: DragDiffusion (Shi et al., CVPR 2024) with GoodDrag's drag schedule (Zhang et al., 2024).

Move handle points of the picture to target points: fit an identity-preserving LoRA to the image
(cached), DDIM-invert it part of the way, then alternate a few motion-supervision steps (anchored
on the original features at the initial handle, with point tracking) with single denoising steps
over the first denoising steps, and denoise the rest beside the original trajectory, whose
self-attention keys and values the dragged branch borrows.

Lengths (patch and tracking radii, the motion step) are given in SD 1.5's feature-grid units and
scaled by the model's latent cell: the supervised features live on the latent grid (SD 1.5's
up_blocks[2] output, bilinearly enlarged to the half-resolution grid), and GoodDrag's 4-unit patch
radius, 12-unit tracking window and 4-unit step are 1, 3 and 1 latent cells of SD 1.5 (a latent
cell spans 8 pixels, 4 grid units). They stay the same in grid units at any picture size, as in
GoodDrag; on the demo model (4-pixel latent cells, 2 grid units) they halve to 2, 6 and 2, so that
a step still crosses a whole cell of features instead of interpolating inside one. The step budget
grows with the drag's length measured relative to the picture.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch

from ...cache import content_key
from .lora import LatentCrops, get_lora_state, lora_adapter, set_lora_state, train_identity_lora
from .motion import DragSettings, alternate_drag, denoise_with_reference, stop_radii
from ...context import EditContext, MethodOutput
from ... import points as shared_points
from ...points import check_point_pairs
from ...params import MethodParams, param
from ...previews import latent_preview
from ...registry import Method, register
from ...sampling import invert_cached
from ...schedule import DDIMSchedule
from ...unet_calls import vae_decode

SD1_LATENT_CELL = 8     # pixels per latent cell in SD 1.5 (its VAE factor): the unit r_m, r_p, motion_step scale by
BUDGET_DISTANCE = 0.1   # drag_steps buys a drag of this share of the picture's longer side


@dataclass(frozen=True, kw_only=True)
class DragParams(MethodParams):
    points: tuple = param((), "Handle and target pairs (handle x, y, target x, y) in image pixels: each "
                              "handle is moved to its target.", kind="points", required=True, label="Points")
    prompt: str = param("", "What the image shows (optional): the LoRA, the inversion and the denoising "
                            "all use it.", kind="text", label="Picture shows")
    lora_steps: int = param(80, "Identity LoRA training steps (0 = no LoRA). Trained once per image, "
                                "prompt and LoRA settings, then reused.", min=0, max=2000, advanced=True,
                            label="Likeness training steps")
    lora_rank: int = param(16, "Rank of the identity LoRA.", min=1, max=256, advanced=True, label="Likeness detail")
    lora_lr: float = param(5e-4, "Learning rate of the identity LoRA (AdamW).", min=1e-7, max=1e-1,
                           advanced=True, label="Likeness learning rate")
    drag_steps: int = param(40, "Motion-supervision steps for a drag of a tenth of the picture's longer side; "
                                "a longer drag gets proportionally more. Stops earlier when every handle "
                                "has arrived.", min=0, max=2000, label="Drag strength")
    drag_timesteps: float = param(0.2, "Share of the denoising steps over which drag steps and denoising "
                                       "steps alternate (GoodDrag: 7 of 38); the budget is spread evenly "
                                       "over them.", min=0.01, max=1.0, advanced=True, label="Drag spread over")
    track_every: int = param(3, "Motion-supervision steps between two point trackings (GoodDrag: 3).",
                             min=1, max=50, advanced=True, label="Steps between trackings")
    inversion_strength: float = param(0.7, "How far the image is inverted before dragging (0.7: step 35 "
                                           "of 50). Higher moves more and keeps less.", min=0.02, max=1.0,
                                      advanced=True, label="Freedom to change")
    latent_lr: float = param(0.02, "Learning rate of the latent optimisation (Adam; GoodDrag's 0.02, with its "
                             "information-preserving supervision against each handle's original features).",
                             min=1e-5, max=1.0, advanced=True, label="Drag step size")
    lam: float = param(0.1, "Weight of keeping the latent outside the mask unchanged (only with a mask).",
                       min=0.0, max=100.0, advanced=True, label="Keep outside the mask")
    r_m: float = param(4.0, "Motion-supervision patch radius in SD 1.5 feature-grid units (half-resolution "
                            "pixels; 4 = one latent cell), scaled by this model's latent cell (GoodDrag: 4).",
                       min=0, max=64, advanced=True, label="Grab radius")
    r_p: float = param(12.0, "Point-tracking search radius in SD 1.5 feature-grid units, scaled by this "
                             "model's latent cell (GoodDrag: 12).", min=1, max=128, advanced=True,
                       label="Tracking radius")
    motion_step: float = param(4.0, "Longest step ahead of the handle that motion supervision pulls toward, "
                                    "in SD 1.5 feature-grid units, scaled by this model's latent cell "
                                    "(GoodDrag: 4; DragDiffusion: 1).", min=0.1, max=64, advanced=True,
                               label="Pull per step")
    steps: int = param(50, "DDIM steps of the whole schedule (inversion and denoising run part of it).",
                       min=2, max=1000)

    def check(self) -> None:
        check_point_pairs(self.points)


# ---- points ------------------------------------------------------------------------------------

def feature_grid_size(ctx: EditContext) -> tuple[int, int]:
    """The motion-supervision grid: the working canvas at half resolution (h, w)."""
    return ctx.place.work_h // 2, ctx.place.work_w // 2


def points_to_grid(ctx: EditContext, points) -> tuple[torch.Tensor, torch.Tensor]:
    """Input-image pixel pairs -> (handles, targets) [N,2] on the feature grid."""
    return shared_points.points_to_grid(ctx, points, feature_grid_size(ctx))


def grid_to_input(ctx: EditContext, pts: torch.Tensor) -> list[list[float]]:
    return shared_points.grid_to_input(ctx, pts, feature_grid_size(ctx))


def input_px_per_grid_unit(ctx: EditContext) -> float:
    """How many input pixels one feature-grid unit spans (the grid is half the working canvas)."""
    fh, fw = feature_grid_size(ctx)
    return (ctx.place.work_w / fw) * ctx.source.size[0] / ctx.place.inner_w


def grid_scale(ctx: EditContext) -> float:
    """This model's latent cell against SD 1.5's, in feature-grid units (the demo's 4-pixel cell: 1/2)."""
    return ctx.model.vae_scale / SD1_LATENT_CELL


def drag_settings(ctx: EditContext, p: DragParams, handles: torch.Tensor, targets: torch.Tensor,
                  denoising_steps: int) -> DragSettings:
    """The run's settings on this model's grid. The budget is drag_steps per tenth of the picture's
    longer side that the longest drag covers (at least drag_steps)."""
    g = grid_scale(ctx)
    longest = float((targets - handles).norm(dim=1).max()) / max(feature_grid_size(ctx))
    budget = math.ceil(p.drag_steps * max(1.0, longest / BUDGET_DISTANCE))
    return DragSettings(
        budget=budget, timesteps=max(1, round(p.drag_timesteps * denoising_steps)), track_every=p.track_every,
        lr=p.latent_lr, r_m=int(math.floor(p.r_m * g + 0.5)), r_p=max(1, int(math.floor(p.r_p * g + 0.5))),
        step=max(p.motion_step * g, 0.25), lam=p.lam)


def reach_report(ctx: EditContext, p: DragParams, start: torch.Tensor, handles: torch.Tensor,
                 targets: torch.Tensor) -> dict:
    """Where each handle ended up, in input pixels: its distance to its target, how much of the way
    it came (reach = 1 - final distance / initial distance) and whether it arrived (within its stop
    radius). `reached` is true only when every handle arrived."""
    cell = input_px_per_grid_unit(ctx)
    radii = (stop_radii(start, targets) * cell).tolist()
    ended = grid_to_input(ctx, handles)
    rows = []
    for (hx, hy, tx, ty), (x, y), r in zip(p.points, ended, radii):
        d0 = math.hypot(tx - hx, ty - hy)
        d = math.hypot(tx - x, ty - y)
        rows.append(dict(handle=[round(x, 2), round(y, 2)], distance_px=round(d, 2), start_distance_px=round(d0, 2),
                         reach=round(1.0 - d / d0, 3), stop_radius_px=round(r, 2), arrived=bool(d <= r)))
    return dict(handles=[r["handle"] for r in rows], points=rows, reached=all(r["arrived"] for r in rows),
                reach=[r["reach"] for r in rows], distance_px=[r["distance_px"] for r in rows])


# ---- the identity LoRA, cached -------------------------------------------------------------------

def lora_key(ctx: EditContext, p: DragParams) -> str:
    return content_key("drag-lora", ctx.model.model_id, str(ctx.device), str(ctx.model.dtype), ctx.image_key,
                       p.prompt, p.lora_steps, p.lora_rank, p.lora_lr, p.seed)


def prepare_lora(ctx: EditContext, p: DragParams, params: list, cond: torch.Tensor, key: str) -> str:
    """Load the cached adapter weights for this image, or train and cache them. -> "reused" / "trained"."""
    cache = ctx.cache("drag_lora", 4)
    state = cache.get(key)
    if state is not None:
        set_lora_state(ctx.model.unet, state)
        ctx.reporter.stage("lora", 1)
        ctx.reporter.step(1, 1, latent_preview(ctx.model, ctx.encode_source()), message="reused")
        return "reused"
    crops = LatentCrops.from_image(ctx.model, ctx.image, ctx.encode_source())
    train_identity_lora(ctx.model, params, crops, cond, p.lora_steps, p.lora_lr, ctx.generator(p.seed),
                        ctx.reporter)
    cache.put(key, get_lora_state(ctx.model.unet))  # only once fully trained: cancel leaves nothing
    return "trained"


# ---- the method --------------------------------------------------------------------------------

def run(ctx: EditContext, p: DragParams) -> MethodOutput:
    handles, targets = points_to_grid(ctx, p.points)
    model = ctx.model
    schedule = ctx.schedule(p.steps)
    start = schedule.index_for_strength(p.inversion_strength)
    settings = drag_settings(ctx, p, handles, targets, p.steps - start)
    cond = model.encode_text(p.prompt)
    mask = ctx.latent_mask()
    with contextlib.ExitStack() as stack:
        if p.lora_steps > 0:
            key = lora_key(ctx, p)
            params = stack.enter_context(lora_adapter(model.unet, p.lora_rank, keep=model.user_adapters,
                                                      seed=p.seed))
            lora = prepare_lora(ctx, p, params, cond, key)
        else:
            key, lora = None, "off"
            ctx.reporter.stage("lora", 1)
            ctx.reporter.step(1, 1, message="off")
        # The inversion runs through the adapted UNet, so the LoRA's identity is part of its key.
        traj = invert_cached(ctx, schedule, p.prompt, stop_index=start, refiner_key=key)
        outcome = alternate_drag(model, schedule, traj, start, cond, handles, targets, feature_grid_size(ctx),
                                 settings, mask, ctx.reporter)
        with torch.no_grad():
            latent = denoise_with_reference(model, schedule, outcome.index, outcome.latent, traj, cond,
                                            ctx.reporter)
    with torch.no_grad():
        image = vae_decode(model, latent)
    info = dict(reach_report(ctx, p, handles, outcome.handles, targets), drag_steps=outcome.steps,
                drag_budget=settings.budget, drag_timesteps=outcome.drag_timesteps, lora=lora)
    return MethodOutput(image, info)


METHOD = register(Method(
    name="drag", label="Drag — move a point of the picture to a new place (DragDiffusion)",
    params=DragParams, run=run,
    stages=("lora", "invert", "drag", "denoise"), uses_points=True,
    description="Drag points of the picture to new places (DragDiffusion with GoodDrag's alternating drag "
                "and denoising): paint a mask to keep the rest still. The first drag of an image trains a "
                "small LoRA; later drags reuse it. Longer drags get more steps. The result says how far "
                "each handle got, in image pixels, and counts it arrived only within its stop radius."))
