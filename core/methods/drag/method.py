"""`drag`: DragDiffusion (Shi et al., CVPR 2024). Move handle points of the picture to target
points: fit an identity-preserving LoRA to the image (cached), DDIM-invert it part of the way,
optimise that latent with motion supervision and point tracking, then denoise it next to the
original latent whose self-attention keys and values it borrows."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from ...cache import content_key
from .lora import LatentCrops, get_lora_state, lora_adapter, set_lora_state, train_identity_lora
from .motion import denoise_with_reference, drag_latent
from ...context import EditContext, MethodOutput
from ... import points as shared_points
from ...points import check_point_pairs
from ...params import MethodParams, param
from ...previews import latent_preview
from ...registry import Method, register
from ...sampling import invert_cached
from ...schedule import DDIMSchedule
from ...unet_calls import vae_decode


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
    drag_steps: int = param(80, "Most latent optimisation steps; stops earlier when every handle has "
                                "reached its target.", min=0, max=1000, label="Drag strength")
    inversion_strength: float = param(0.7, "How far the image is inverted before dragging (0.7: step 35 "
                                           "of 50). Higher moves more and keeps less.", min=0.02, max=1.0,
                                      advanced=True, label="Freedom to change")
    latent_lr: float = param(0.01, "Learning rate of the latent optimisation (Adam).", min=1e-5, max=1.0,
                             advanced=True, label="Drag step size")
    lam: float = param(0.1, "Weight of keeping the latent outside the mask unchanged (only with a mask).",
                       min=0.0, max=100.0, advanced=True, label="Keep outside the mask")
    r_m: int = param(1, "Motion-supervision patch radius, in feature-grid units.", min=0, max=16, advanced=True,
                     label="Grab radius")
    r_p: int = param(3, "Point-tracking search radius, in feature-grid units.", min=1, max=32, advanced=True,
                     label="Tracking radius")
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
        original = traj.at(start)
        with torch.no_grad():
            outcome = drag_latent(model, schedule, start, original, cond, handles, targets,
                                  feature_grid_size(ctx), max_steps=p.drag_steps, lr=p.latent_lr,
                                  r_m=p.r_m, r_p=p.r_p, lam=p.lam, mask=mask, reporter=ctx.reporter)
            latent = denoise_with_reference(model, schedule, start, outcome.latent, original, cond,
                                            ctx.reporter)
    with torch.no_grad():
        image = vae_decode(model, latent)
    info = dict(handles=grid_to_input(ctx, outcome.handles), reached=outcome.reached,
                drag_steps=outcome.steps, lora=lora)
    return MethodOutput(image, info)


METHOD = register(Method(
    name="drag", label="Drag — move a point of the picture to a new place (DragDiffusion)",
    params=DragParams, run=run,
    stages=("lora", "invert", "drag", "denoise"), uses_points=True,
    description="Drag points of the picture to new places (DragDiffusion): paint a mask to keep the "
                "rest still. The first drag of an image trains a small LoRA; later drags reuse it."))
