"""`quick-drag`: instant drag, training-free and backprop-free (after FastDrag, Zhao et al., NeurIPS
2024). DDIM-invert the picture part of the way (cached per image), warp that latent once so the
content at each handle lands on its target (warp.py), fill the holes the stretch leaves, and denoise
it while its high-resolution self-attention reads the source picture's keys and values
(source_kv.py). No LoRA, no gradients: the cost is the inversion once per picture, then one UNet
pass per denoising step.

Units. Every default is a fraction, not a size: the inversion strength of the schedule, the falloff
of the length of each ray from a handle to the region's edge, the no-mask margin of the drag's
length. The region itself comes from the mask (its bounding circle) or from the points. So the same
defaults mean the same drag on the demo's 16x16 latent and on SD 1.5's 64x64 one, at any picture
size; nothing is counted in pixels or grid cells."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ...cache import content_key
from ...context import EditContext, MethodOutput
from ...params import MethodParams, param
from ...points import check_point_pairs, grid_to_input, points_to_grid
from ...previews import latent_preview
from ...registry import Method, register
from ...sampling import invert_cached, keep_outside, keep_outside_trajectory
from ...unet_calls import vae_decode
from .source_kv import SourceKV, denoise_with_source_kv
from .warp import disc_around_mask, disc_around_points, displacement_field, plan_warp


@dataclass(frozen=True, kw_only=True)
class QuickDragParams(MethodParams):
    points: tuple = param((), "Handle and target pairs (handle x, y, target x, y) in image pixels: the "
                              "content at each handle is moved to its target.", kind="points", required=True,
                          label="Points")
    prompt: str = param("", "What the image shows (optional): the inversion and the denoising use it.",
                        kind="text", label="Picture shows")
    falloff: float = param(0.5, "How the move fades out toward the edge of the region, as a share of the "
                                "way from the handle to the edge: 1 stretches the whole way (FastDrag's "
                                "warp), smaller values carry more around the handle along rigidly.",
                           min=0.05, max=1.0, label="Stretch")
    inversion_strength: float = param(0.7, "How far the image is inverted before the warp (0.7: the last "
                                           "70% of the schedule is re-drawn). Higher blends the moved part "
                                           "in better and keeps less detail.", min=0.1, max=1.0,
                                      advanced=True, label="Freedom to change")
    anchor: float = param(0.5, "Share of the denoising steps during which the moved content follows the "
                               "source's own trajectory, warped: higher keeps its shape and place more "
                               "firmly, lower lets the model blend it in more.", min=0.0, max=1.0,
                          advanced=True, label="Hold the moved part")
    region_margin: float = param(1.0, "Without a mask: how far the moving region reaches beyond the points, "
                                      "in lengths of the longest drag.", min=0.1, max=10.0, advanced=True,
                                 label="Region without a mask")
    source_attention: bool = param(True, "Denoise with the source picture's self-attention keys and values, "
                                         "so the moved part keeps its look.", advanced=True,
                                   label="Keep the look")
    steps: int = param(30, "DDIM steps of the whole schedule (inversion and denoising each run the "
                           "inversion strength's share of it).", min=2, max=1000)

    def check(self) -> None:
        check_point_pairs(self.points)


# ---- points on the latent grid ------------------------------------------------------------------

def latent_grid(ctx: EditContext) -> tuple[int, int]:
    s = ctx.model.vae_scale
    return ctx.place.work_h // s, ctx.place.work_w // s


def _to_cells(ctx: EditContext, pts: torch.Tensor) -> torch.Tensor:
    """Grid coordinates (0 at the canvas's edge) -> cell coordinates (cell k's centre at k)."""
    s = ctx.model.vae_scale
    return pts + (0.5 / s - 0.5)


def _from_cells(ctx: EditContext, pts: torch.Tensor) -> torch.Tensor:
    s = ctx.model.vae_scale
    return pts - (0.5 / s - 0.5)


def picture_cells(ctx: EditContext) -> torch.Tensor:
    """[h,w] bool: the latent cells that hold the picture (not the canvas's padding)."""
    h, w = latent_grid(ctx)
    s = ctx.model.vae_scale
    out = torch.zeros((h, w), dtype=torch.bool, device=ctx.device)
    out[: math.ceil(ctx.place.inner_h / s), : math.ceil(ctx.place.inner_w / s)] = True
    return out


def plan_drag(ctx: EditContext, p: QuickDragParams, mask):
    """-> (warp plan, region disc, handles, targets) on the latent grid."""
    grid = latent_grid(ctx)
    handles, targets = (_to_cells(ctx, t) for t in points_to_grid(ctx, p.points, grid))
    if mask is not None:
        disc = disc_around_mask(mask[0, 0] > 0, torch.cat([handles, targets]))
    else:
        disc = disc_around_points(handles, targets, p.region_margin)
    field = displacement_field(grid, handles, targets, disc, p.falloff)
    return plan_warp(field, picture_cells(ctx)), disc, handles, targets, field


def moved_handles(plan, field: torch.Tensor, handles: torch.Tensor) -> torch.Tensor:
    """Where each handle's content went: the handle plus the whole-cell move of the cell it sits in
    (cells move whole, so on a coarse latent this can differ from the target by up to half a cell)."""
    h, w = plan.hw
    out = []
    for hx, hy in handles.tolist():
        x, y = min(max(math.floor(hx + 0.5), 0), w - 1), min(max(math.floor(hy + 0.5), 0), h - 1)
        dx, dy = field[y, x].tolist()
        out.append((hx + math.floor(x + dx + 0.5) - x, hy + math.floor(y + dy + 0.5) - y))
    return torch.tensor(out, dtype=torch.float32, device=field.device)


def source_kv_store(ctx: EditContext, p: QuickDragParams, schedule, start: int) -> SourceKV:
    """The source's recorded keys/values for this picture and schedule (see source_kv.py), kept for
    the last two pictures: on SD 1.5 at 512 px one step holds about 24 MB in fp16."""
    key = content_key("quick-drag-kv", ctx.model.model_id, str(ctx.device), str(ctx.model.dtype), ctx.image_key,
                      p.prompt, tuple(schedule.timesteps), start)
    cache = ctx.cache("quick_drag_kv", 2)
    store = cache.get(key)
    if store is None:
        store = SourceKV()
        cache.put(key, store)
    return store


def anchored(plan, traj, until: int, then=None):
    """An `after_step` that, for denoising steps before `until`, puts the cells that received moved
    content back on the source's trajectory, warped (the next inverted latent, moved the same way),
    then applies `then` (keeping the outside of the mask on the source). The warp alone can lose a
    small part on a coarse latent: the first steps re-draw it from its surroundings, which no longer
    match; anchoring it for a while fixes its shape and place and leaves the later steps to blend it
    in. The holes are never anchored: the model draws what the moved part uncovered."""
    moved = plan.moved.to(traj.latents.device)

    def after_step(x_prev: torch.Tensor, i: int) -> torch.Tensor:
        if i + 1 < until:
            x_prev = torch.where(moved, plan.move(traj.at(i + 1)).to(x_prev), x_prev)
        return then(x_prev, i) if then is not None else x_prev

    return after_step


# ---- the method --------------------------------------------------------------------------------

def run(ctx: EditContext, p: QuickDragParams) -> MethodOutput:
    model = ctx.model
    mask = ctx.latent_mask()
    if mask is not None:
        # Every latent cell with any editable pixel is editable, fully: blending a soft edge back
        # toward the source after every step would fade a small moved part step by step. The
        # engine's pixel composite still keeps everything outside the painted mask exact.
        mask = (mask > 0).to(mask.dtype)
    plan, disc, handles, targets, field = plan_drag(ctx, p, mask)  # bad points fail before any pass
    schedule = ctx.schedule(p.steps)
    start = schedule.index_for_strength(p.inversion_strength)
    cond = model.encode_text(p.prompt)
    traj = invert_cached(ctx, schedule, p.prompt, stop_index=start)

    with torch.no_grad():
        ctx.reporter.stage("warp", 1)
        warped = plan.apply(traj.at(start))
        clean = traj.clean
        preview = plan.apply(clean)
        if mask is not None:
            warped = keep_outside(mask, warped, traj.at(start))
            preview = keep_outside(mask, preview, clean)
        # The first look at the edit costs no UNet pass: the source's clean latent, warped.
        holes = int(plan.holes.sum())
        ctx.reporter.step(1, 1, latent_preview(model, preview), message=f"{holes} holes filled")

        store = source_kv_store(ctx, p, schedule, start) if p.source_attention else None
        recorded_before = len(store) if store is not None else 0
        after_step = anchored(plan, traj, start + round(p.anchor * (schedule.steps - start)),
                              keep_outside_trajectory(mask, traj))
        latent = denoise_with_source_kv(model, schedule, start, warped, traj, cond, store, after_step,
                                        ctx.reporter)
        image = vae_decode(model, latent)

    grid = latent_grid(ctx)
    centre = grid_to_input(ctx, _from_cells(ctx, torch.tensor([[disc.cx, disc.cy]])), grid)[0]
    cell_px = model.vae_scale * ctx.source.size[0] / ctx.place.inner_w   # one latent cell in input pixels
    n_denoise = schedule.steps - start
    info = dict(handles=grid_to_input(ctx, _from_cells(ctx, moved_handles(plan, field, handles)), grid),
                reached=True, holes=holes, region=dict(centre=centre, radius=disc.r * cell_px),
                source_attention=("off" if store is None else
                                  "reused" if recorded_before >= n_denoise else
                                  "recorded" if recorded_before == 0 else "completed"))
    return MethodOutput(image, info)


METHOD = register(Method(
    name="quick-drag", label="Instant drag — move a point of the picture in one step, no training (FastDrag)",
    params=QuickDragParams, run=run,
    stages=("invert", "warp", "denoise"), uses_points=True, samplers=("ddim", "lcm", "tcd"),
    description="Drag points of the picture to new places in one step, with no training (FastDrag): the "
                "picture is warped from each handle to its target and redrawn. Paint a mask to bound the "
                "part that moves; the rest stays as it was."))
