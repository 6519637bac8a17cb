"""`diffuseit`: DiffuseIT (Kwon & Ye, ICLR 2023) on the loaded SD model.

Text- or image-guided translation steered by losses on the predicted clean image. The source latent
is noised to the first kept timestep; at every step the UNet's noise prediction gives x̂0 (Tweedie),
x̂0 is decoded through the VAE with gradient, DINO ViT and CLIP losses are taken on the decoded
pixels, and their gradient w.r.t. x_t is subtracted from the DDIM step (manifold-constrained):

    x_{t-1} = DDIM(x_t) - guidance_scale * sigma_t^2 * grad_{x_t} l_total

sigma_t^2 is the DDPM posterior variance between the two timesteps: the factor the paper's ancestral
sampler puts on the gradient, so the paper's loss weights keep their meaning. `guidance_scale`
converts the paper's pixel-space setting to SD's latents (see GUIDANCE_SCALE_NOTE).

Losses (l_total): structure = DINO last-layer key self-similarity + patch InfoNCE against the source;
style = directional CLIP over augmented cut-outs (text) or DINO [CLS] distance + weak pixel MSE to
the style image (image); range loss; minus the semantic divergence (the [CLS] distance to the
previous step's x̂0) while t > T/2 (SEM_UNTIL). The first kept step is redone `resample` times
(step, then re-noise back to its timestep) before the run proceeds. Text guidance doubles the
contrastive loss once the CLIP target is well met (the official `--regularize_content`, see
Objective). Image-guided results finally get the official image-guided command's colour matching
(colour_match.py: MKL transfer onto the style image's colours), unless `color_match` is off.
"""
from __future__ import annotations

import math
import random
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import torch.utils.checkpoint

from ... import images
from ...aux_models import load_aux
from ...cache import content_key
from .colour_match import mkl_transfer
from .losses import (ClipEncoder, DinoEncoder, cls_distance, cutouts, directional_clip_loss,
                                patch_nce_loss, range_loss, self_similarity_loss, text_direction)
from ...context import EditContext, MethodOutput
from ...errors import InvalidInput, ModelUnavailable
from ...models import DiffusionModel
from ...params import MethodParams, param
from ...previews import latent_preview
from ...registry import Method, register
from ...sampling import keep_outside
from ...schedule import DDIMSchedule
from ...unet_calls import unet_forward, vae_decode

CLIP_DEFAULT = "openai/clip-vit-base-patch32"  # the CLIP DiffuseIT was built with (AUX_DEFAULTS has B/16)
# The semantic divergence acts while the timestep is above this share of the training schedule:
# the official applies it where the respaced step index exceeds `diff_iter`, 50 of 100 steps in the
# text-guided command and 100 of 200 in the image-guided one, so above t = T/2 in both (the
# resampling at the first kept step included, whenever that step lies above it).
SEM_UNTIL = 0.5
# The official text command's --regularize_content: the contrastive loss ×2 while the previous
# step's CLIP loss (−cos to the target) is below −0.5.
CONTENT_REGULARISE_COS = 0.5
CONTENT_REGULARISE_FACTOR = 2.0
# The official --use_range_restart (in both its text and image commands): once past the first kept
# step, a predicted clean image whose weighted range loss (w_range x mean squared excess beyond
# -1..1) exceeds 0.01 restarts the whole run from fresh noise. The official restarts without end;
# here at most `range_restarts` times, after which the run goes on as it is.
RANGE_RESTART_LOSS = 0.01


def semantic_divergence_at(schedule: DDIMSchedule, t: int) -> bool:
    """Whether the semantic divergence reward acts at timestep t (see SEM_UNTIL)."""
    return t > SEM_UNTIL * len(schedule.alphas_cumprod)

GUIDANCE_SCALE_NOTE = """\
guidance_scale = 1 applies the paper's update (mean + sigma_t^2 * gradient, its loss weights) as is
to SD's latent x_t; first-order estimates put the right factor between ~0.3 and ~1.7, so the default
is 1. (1) Pixels -> latents: a 512 px decode has 4x the pixels of the paper's 256 px image, so a
pixel-mean loss's gradient per pixel is 4x smaller, while each latent element drives an 8x8x3 patch
(SD's latent->RGB gain matrix A has eig(A^T A) = 0.66 luminance, 0.11 colour): for smooth loss
gradients the pixel change per unit of guidance is 1.7x (colour) to 10x (luminance) the paper's, a
factor 0.1-0.6. (2) Schedule: SD's scaled-linear schedule keeps more signal than the paper's linear
ImageNet schedule at the same timesteps, so sigma_t^2 / alpha_t (how far one step moves x̂0) is 12x
smaller at the first kept step, 1.4x near t=100 (geometric mean over the 60 kept steps: 2.9), a
factor ~3. Not calibrated on real SD weights yet. A trust region caps each step's guidance at the
noise the ancestral sampler would inject there (RMS <= sigma_t), so a too-large scale saturates
instead of exploding; info["guidance_clipped_steps"] says how often that happened."""


@dataclass(frozen=True, kw_only=True)
class DiffuseITParams(MethodParams):
    prompt: str = param("", "Target text (text-guided): what the image should become, e.g. 'a watercolor "
                        "painting'. Give this or a style image, not both.", kind="text", label="Prompt")
    style_image: str = param("", "Style image file (image-guided): its look is transferred onto the "
                             "structure of the input. Give this or a prompt, not both.", kind="path",
                             label="Style picture")
    source_prompt: str = param("", "What the input shows (text guidance subtracts it from the CLIP "
                               "direction; optional).", kind="text", label="Picture shows")
    w_clip: float = param(2000.0, "Weight of the directional CLIP loss (text guidance).", min=0,
                          advanced=True, label="Pull towards the text")
    w_ssim: float = param(1000.0, "Weight of the DINO self-similarity (structure) loss.", min=0, advanced=True,
                          label="Structure kept")
    w_contrast: float = param(200.0, "Weight of the patch-wise contrastive (structure) loss.", min=0,
                              advanced=True, label="Detail kept")
    w_sem: float = param(100.0, "Weight of the semantic divergence reward, while the noise is above half "
                         "(t > T/2, as the official).", min=0, advanced=True, label="Early change reward")
    w_range: float = param(200.0, "Weight of the loss keeping the predicted image in range.", min=0,
                           advanced=True, label="Colour range kept")
    w_style: float = param(2000.0, "Weight of the DINO [CLS] style loss (image guidance).", min=0,
                           advanced=True, label="Pull towards the style")
    w_mse: float = param(3000.0, "Weight of the pixel MSE to the style image (image guidance).", min=0,
                         advanced=True, label="Style colours matched")
    guidance_scale: float = param(1.0, "Multiplier on the paper's guidance step for SD's latent space "
                                  "(0 = no guidance: plain re-noise and denoise).", min=0, max=100,
                                  label="Guidance strength")
    skip: float = param(0.4, "Fraction of the steps skipped at the start: higher keeps more of the "
                        "input.", min=0.0, max=0.95, label="Original kept")
    steps: int = param(100, "Steps of the schedule before skipping.", min=2, max=1000)
    resample: int = param(10, "Times the first kept step is redone (step, then re-noise).", min=0, max=100,
                          advanced=True, label="Refinement passes")
    range_restarts: int = param(3, "Times the whole run may start again from fresh noise when the predicted "
                                "image leaves the colour range (the official --use_range_restart; 0 = never).",
                                min=0, max=20, advanced=True, label="Restarts when colours overflow")
    cutouts: int = param(8, "Augmented cut-outs per step for the CLIP loss.", min=1, max=64, advanced=True,
                         label="Text crops per step")
    color_match: bool = param(True, "Image-guided: finally map the result's colours onto the style image's "
                              "(MKL colour transfer, as the official image-guided command's --use_colormatch).",
                              advanced=True, label="Match the style's colours")
    dino_model: str = param("", "DINO ViT to use: a folder or hub id (default: beside the model, else "
                            "facebook/dino-vitb8).", advanced=True, label="Structure model (DINO)")
    clip_model: str = param("", f"CLIP to use: a folder or hub id (default: beside the model, else "
                            f"{CLIP_DEFAULT}).", advanced=True, label="Text-image model (CLIP)")

    def check(self) -> None:
        has_prompt, has_style = bool(self.prompt.strip()), bool(self.style_image.strip())
        if has_prompt == has_style:
            raise InvalidInput("DiffuseIT needs exactly one guide: a target prompt (text-guided) or a style "
                               "image (image-guided)" + (", not both." if has_prompt else "."))


# ---- guidance objective ------------------------------------------------------------------------------

@dataclass
class SourceFeatures:
    keys: torch.Tensor                        # [1,N,D] DINO last-layer patch keys of the source
    cls: torch.Tensor                         # [1,D] DINO [CLS] of the source
    direction: Optional[torch.Tensor] = None  # CLIP target direction (text guidance)
    style_cls: Optional[torch.Tensor] = None  # DINO [CLS] of the style image (image guidance)
    style_pix: Optional[torch.Tensor] = None  # style image, -1..1, cropped like the source
    source_clip_cos: Optional[float] = None   # cos(E_I(source), direction): the first step's "previous"


class Objective:
    """l_total of DiffuseIT on decoded pixels (cropped to the picture, -1..1, unclamped).

    Text guidance regularises the content as the official text command (`--regularize_content`):
    once the image matches the CLIP target well (the previous step's cosine above
    CONTENT_REGULARISE_COS), the contrastive structure loss counts double (`content_factor`), so the
    translation stops trading structure for a text match it already has."""

    def __init__(self, p: DiffuseITParams, dino: DinoEncoder, clip: Optional[ClipEncoder], feats: SourceFeatures):
        self.p, self.dino, self.clip, self.feats = p, dino, clip, feats
        self.text = feats.direction is not None
        self.restart()

    def restart(self) -> None:
        """Forget the steps taken (a run started again from fresh noise)."""
        self.clip_cos_prev = self.feats.source_clip_cos
        self.regularised_steps = 0

    @property
    def content_factor(self) -> float:
        matched = self.text and self.clip_cos_prev is not None and self.clip_cos_prev > CONTENT_REGULARISE_COS
        return CONTENT_REGULARISE_FACTOR if matched else 1.0

    def observe(self, terms: dict) -> None:
        """After a step: remember its CLIP match for the next step's content factor."""
        if self.content_factor != 1.0:
            self.regularised_steps += 1
        if "clip" in terms:
            self.clip_cos_prev = 1.0 - float(terms["clip"])

    @property
    def weights(self) -> dict:
        p = self.p
        w = dict(ssim=p.w_ssim, contrast=p.w_contrast * self.content_factor, range=p.w_range, sem=-p.w_sem)
        w.update(dict(clip=p.w_clip) if self.text else dict(style=p.w_style, mse=p.w_mse))
        return w

    def terms(self, pix: torch.Tensor, rng_seed: int, prev_cls: Optional[torch.Tensor] = None):
        """(unweighted loss terms, [CLS] of pix). `sem` is present only when prev_cls is given."""
        f = self.feats
        keys, cls = self.dino(pix)
        t = dict(ssim=self_similarity_loss(f.keys, keys), contrast=patch_nce_loss(f.keys, keys),
                 range=range_loss(pix))
        if self.text:
            cuts = cutouts(pix, self.p.cutouts, self.clip.size, random.Random(rng_seed))
            t["clip"] = directional_clip_loss(self.clip.image(cuts), f.direction)
        else:
            t["style"] = cls_distance(cls, f.style_cls)
            t["mse"] = torch.nn.functional.mse_loss(pix, f.style_pix)
        if prev_cls is not None:
            t["sem"] = cls_distance(cls, prev_cls)
        return t, cls

    def total(self, terms: dict) -> torch.Tensor:
        w = self.weights
        return sum(w[k] * v for k, v in terms.items())

    @classmethod
    def build(cls, p: DiffuseITParams, dino: DinoEncoder, clip: Optional[ClipEncoder], source_pix: torch.Tensor,
              style_pix: Optional[torch.Tensor] = None, cache=None, keys: tuple = ()) -> "Objective":
        """Source features, computed once per (encoder, image, text): `cache` (an LRUCache) with
        `keys` = (source image key, style image key) reuses them across edits."""
        img_key, style_key = (keys + (None, None))[:2]

        def cached(key, compute):
            if cache is None or key is None:
                return compute()
            return cache.get_or_compute(content_key(*key), compute)

        with torch.no_grad():
            src_keys, src_cls = cached(("dino", dino.aux.source, str(source_pix.device), img_key),
                                       lambda: dino(source_pix))
            feats = SourceFeatures(src_keys, src_cls)
            if p.prompt.strip():
                src_img = cached(("clip-image", clip.aux.source, str(source_pix.device), img_key),
                                 lambda: clip.image(source_pix))
                trg = cached(("clip-text", clip.aux.source, p.prompt), lambda: clip.text([p.prompt]))
                src_txt = (cached(("clip-text", clip.aux.source, p.source_prompt),
                                  lambda: clip.text([p.source_prompt])) if p.source_prompt.strip() else None)
                feats.direction = text_direction(trg, src_img, src_txt)
                feats.source_clip_cos = float((src_img.reshape(-1) * feats.direction.reshape(-1)).sum())
            else:
                feats.style_pix = style_pix
                feats.style_cls = cached(("dino-style", dino.aux.source, str(source_pix.device), style_key),
                                         lambda: dino(style_pix)[1])
        return cls(p, dino, clip, feats)


# ---- setup ---------------------------------------------------------------------------------------

def load_encoders(model: DiffusionModel, p: DiffuseITParams) -> tuple[DinoEncoder, Optional[ClipEncoder]]:
    """DINO always; CLIP for text guidance. One ModelUnavailable naming everything that is missing."""
    problems, dino, clip = [], None, None
    try:
        dino = DinoEncoder(load_aux("dino", model, source=p.dino_model.strip() or None, needed_by="DiffuseIT"))
    except ModelUnavailable as e:
        problems.append(str(e))
    if p.prompt.strip():
        source = p.clip_model.strip() or None
        if source is None and not (model.root and (model.root / "clip").is_dir()):
            source = CLIP_DEFAULT
        try:
            clip = ClipEncoder(load_aux("clip", model, source=source, needed_by="DiffuseIT"))
        except ModelUnavailable as e:
            problems.append(str(e))
    if problems:
        raise ModelUnavailable(" ".join(problems))
    return dino, clip


def load_style(ctx: EditContext, path: str) -> tuple[torch.Tensor, str]:
    """The style image at the working canvas (stretched to the picture's area), cropped like the
    source; and its content key. Pixels given with the request (a layer) win over the path."""
    src = ctx.inputs.get("style_image")
    if src is None:
        f = Path(path.strip()).expanduser()
        if not f.is_file():
            raise InvalidInput(f"Style image not found: {f}. Choose an existing image file.")
        src = images.load_image(f)
    pl = ctx.place
    place = images.Placement(pl.work_w, pl.work_h, pl.inner_w, pl.inner_h, pl.inner_w / src.size[0],
                             src.size[0], src.size[1])
    pix = images.to_working_tensor(src, place).to(ctx.device)
    return pix[..., :pl.inner_h, :pl.inner_w], src.content_hash() + f"@{pl.inner_w}x{pl.inner_h}"


@contextmanager
def checkpointed_decoder(model: DiffusionModel, enable: Optional[bool] = None):
    """Activation checkpointing of the VAE decoder's blocks while it is back-propagated: on a GPU the
    512 px decode's activations are the largest memory cost of a guided step. Off on CPU (it only
    costs time there) unless `enable` says otherwise."""
    dec = getattr(model.vae, "decoder", None)
    enable = (model.device.type == "cuda") if enable is None else enable
    if not enable or dec is None or not hasattr(dec, "gradient_checkpointing") or dec.gradient_checkpointing:
        yield
        return
    before = getattr(dec, "_gradient_checkpointing_func", None)
    dec._gradient_checkpointing_func = lambda module, *args: torch.utils.checkpoint.checkpoint(
        module.__call__, *args, use_reentrant=False)
    dec.gradient_checkpointing = True
    try:
        yield
    finally:
        dec.gradient_checkpointing = False
        dec._gradient_checkpointing_func = before


def posterior_variance(schedule: DDIMSchedule, t: int, t_prev: int) -> float:
    a, a_prev = schedule.alpha(t), schedule.alpha(t_prev)
    return (1 - a_prev) / (1 - a) * (1 - a / a_prev)


# ---- sampling ----------------------------------------------------------------------------------

def run(ctx: EditContext, p: DiffuseITParams) -> MethodOutput:
    model, rep = ctx.model, ctx.reporter
    h, w = ctx.place.inner_h, ctx.place.inner_w
    rep.stage("features", 1)
    dino, clip = load_encoders(model, p)
    style_pix, style_key = load_style(ctx, p.style_image) if p.style_image.strip() else (None, None)
    source_pix = ctx.image[..., :h, :w]
    objective = Objective.build(p, dino, clip, source_pix, style_pix, ctx.cache("diffuseit_features", 16),
                                (ctx.image_key, style_key))
    rep.step(1, 1)

    schedule = ctx.schedule(p.steps)
    start = schedule.index_for_strength(1 - p.skip)
    kept = p.steps - start
    src = ctx.encode_source()
    gen = ctx.generator(p.seed)  # each restart draws its fresh noise from the same seeded stream
    lmask = ctx.latent_mask()
    uncond = model.encode_text("")  # the paper's diffusion model is unconditional: CLIP does the steering
    guided = p.guidance_scale > 0
    clipped = torch.zeros((), device=ctx.device)
    last_terms: dict = {}
    prev_cls: Optional[torch.Tensor] = None
    noise = torch.randn(src.shape, generator=gen).to(ctx.device)

    def step(x: torch.Tensor, i: int, early: bool, rng_seed: int):
        nonlocal prev_cls, clipped, last_terms
        t, t_prev = schedule.timesteps[i], schedule.prev_timestep(i)
        if not guided:
            with torch.no_grad():
                x0, eps = schedule.x0_and_eps(x, unet_forward(model, x, t, uncond), t)
        else:
            x_in = x.detach().requires_grad_(True)
            with torch.enable_grad():
                x0, eps = schedule.x0_and_eps(x_in, unet_forward(model, x_in, t, uncond), t)
                with checkpointed_decoder(model):
                    pix = vae_decode(model, x0, clamp=False)[..., :h, :w]
                # Losses in float32 on a detached copy, then back through VAE and UNet with the pixel
                # gradient rescaled to max 1 (fp16 backward must neither underflow nor overflow).
                leaf = pix.detach().requires_grad_(True)
                terms, cls = objective.terms(leaf, rng_seed, prev_cls if early else None)
                (g_pix,) = torch.autograd.grad(objective.total(terms), leaf)
                s = g_pix.abs().amax().clamp_min(1e-30)
                (grad,) = torch.autograd.grad(pix, x_in, g_pix / s)
                grad = torch.nan_to_num(grad * s, nan=0.0, posinf=0.0, neginf=0.0)  # fp16 overflow: skip
            prev_cls, last_terms = cls.detach(), {k: v.detach() for k, v in terms.items()}
            objective.observe(last_terms)
        with torch.no_grad():
            x0, eps = x0.detach(), eps.detach()
            x_prev = schedule.from_x0(x0, eps, t_prev)
            if guided:
                var = posterior_variance(schedule, t, t_prev)
                update = p.guidance_scale * var * grad
                rms = update.pow(2).mean().sqrt()
                limit = var ** 0.5
                clipped += (rms > limit).float()
                x_prev = x_prev - update * torch.clamp(limit / (rms + 1e-12), max=1.0)
            if lmask is not None:
                known = src if t_prev < 0 else schedule.add_noise(src, noise, t_prev)
                x_prev = keep_outside(lmask, x_prev, known)
        return x_prev, x0

    def out_of_range() -> bool:
        return guided and "range" in last_terms and p.w_range * float(last_terms["range"]) > RANGE_RESTART_LOSS

    def sample() -> Optional[torch.Tensor]:
        """One run from `noise`: the final latent, or None when it must start again (range restart)."""
        nonlocal prev_cls, clipped, last_terms
        prev_cls, last_terms = None, {}
        clipped = torch.zeros((), device=ctx.device)
        objective.restart()
        x = schedule.add_noise(src, noise, schedule.timesteps[start])
        if p.resample > 0:
            rep.stage("resample", p.resample)
            t, t_prev = schedule.timesteps[start], schedule.prev_timestep(start)
            ratio = schedule.alpha(t) / schedule.alpha(t_prev)
            for r in range(p.resample):
                x_prev, x0 = step(x, start, semantic_divergence_at(schedule, t), p.seed * 1_000_003 + r)
                z = torch.randn(x.shape, generator=gen).to(ctx.device)
                x = math.sqrt(ratio) * x_prev + math.sqrt(1 - ratio) * z  # back to the first kept timestep
                rep.step(r + 1, p.resample, latent_preview(model, x0))
        rep.stage("guide", kept)
        for k, i in enumerate(range(start, p.steps)):
            early = semantic_divergence_at(schedule, schedule.timesteps[i])
            x, x0 = step(x, i, early, p.seed * 1_000_003 + p.resample + k)
            rep.step(k + 1, kept, latent_preview(model, x0))
            if i > start and restarts < p.range_restarts and out_of_range():
                return None
        return x

    restarts = 0
    while (x := sample()) is None:
        restarts += 1
        noise = torch.randn(src.shape, generator=gen).to(ctx.device)

    rep.stage("decode", 1)
    with torch.no_grad():
        out = vae_decode(model, x)
        matched = style_pix is not None and p.color_match
        if matched:
            region = None if ctx.mask is None else ctx.mask[..., :h, :w]
            out = out.clone()
            out[..., :h, :w] = mkl_transfer(out[..., :h, :w], style_pix, region).clamp(-1, 1)
    info = dict(start_timestep=schedule.timesteps[start], guided_steps=(kept + p.resample) if guided else 0,
                color_matched=matched,
                guidance_clipped_steps=int(clipped.item()),
                content_regularised_steps=objective.regularised_steps, range_restarts=restarts,
                losses={k: round(float(v), 6) for k, v in last_terms.items()})
    return MethodOutput(out, info)


METHOD = register(Method(
    name="diffuseit", label="Style from a picture — another image's look, the structure kept (DiffuseIT)",
    params=DiffuseITParams, run=run,
    stages=("features", "resample", "guide", "decode"), needs=("dino", "clip"),
    description="Translate the image toward a text prompt or a style image while DINO ViT losses keep "
                "its structure (DiffuseIT, guidance on the predicted clean image)."))
