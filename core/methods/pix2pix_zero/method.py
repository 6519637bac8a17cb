"""`pix2pix-zero` (Parmar et al., SIGGRAPH 2023): translate along a word direction (cat -> dog)
without writing a full target prompt.

1. Caption c: the user's source prompt, else BLIP (when a captioner is available).
2. Invert the image with DDIM (guidance 1, prompt c) and pix2pix-zero's noise regularisation
   (core/noise_regularization.py), cached like every inversion.
3. Edit direction Δc from the sentence bank (directions.py), cached per word pair, times the
   official edit multiplier (`edit_multiplier`, the official demo's "Edit multiplier" slider).
4. Reference maps: the cross-attention maps of the *inversion trajectory* itself, c at the inverted
   latent of every step (head-averaged, one [tokens, 77] map per attn2 layer and step, stored in
   the model dtype), cached per inversion. The official code re-generates a reconstruction from x_T
   and reads its maps; DDIM inversion is not exact, so that reconstruction drifts from the input and
   the guidance then holds the layout of the drift. Reading the trajectory (Direct Inversion, Ju et
   al. 2024: P2P-Zero's PIE-Bench structure distance 61.7 -> 49.2) anchors it to the input and costs
   the same one pass per step.
5. Edit pass from the same x_T with c + Δc: at each step one gradient step on x_t lowering
   Σ‖M_edit − M_ref‖² (step size `xa_guidance`; the loss is scaled through an fp16 UNet), then the
   CFG step with guidance `guidance` and the caption as the negative prompt. With a mask, the
   inverted trajectory is re-imposed outside it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

from ...attention import AttentionHook, AttnCall, attention_hooks
from ...cache import content_key
from .directions import check_word_pair, edit_direction, word_token_ids
from ...local_blend import LocalBlend, token_positions
from ...context import EditContext, MethodOutput
from ...errors import InvalidInput, ModelUnavailable
from ...events import Reporter
from ...models import DiffusionModel
from .noise_regularization import NoiseRegularizer
from ...params import MethodParams, param
from ...previews import latent_preview
from ...registry import Method, register
from ...loss_scaling import LossScaler
from ...sampling import Trajectory, denoise, invert_cached, keep_outside_trajectory, predict_cfg
from ...schedule import DDIMSchedule
from ...unet_calls import unet_forward, vae_decode

NAME = "pix2pix-zero"
# The official note: the cross-attention guidance step should be <= 0.01 on v-prediction models
# (SD 2.x at 768) against 0.1 on epsilon models, whose attention-loss gradients are about ten times
# smaller. So the step the user sets is the epsilon-model step, scaled for the model at hand.
V_PREDICTION_XA_SCALE = 0.1


def xa_step(model, xa_guidance: float) -> float:
    """The cross-attention guidance step for this model (see V_PREDICTION_XA_SCALE)."""
    return xa_guidance * (V_PREDICTION_XA_SCALE if model.prediction_type == "v_prediction" else 1.0)


@dataclass(frozen=True, kw_only=True)
class Pix2PixZeroParams(MethodParams):
    source_word: str = param("", "The word for what to change, as it appears in the image (e.g. cat).",
                             required=True, label="Change this word")
    target_word: str = param("", "The word for what it should become (e.g. dog).", required=True,
                             label="Into this word")
    source_prompt: str = param("", "A caption of the input image (e.g. 'a cat sitting on a sofa'). Leave "
                               "empty to caption it with BLIP when that model is available.", kind="text",
                               label="Picture shows")
    xa_guidance: float = param(0.1, "Cross-attention guidance step: holds the cross-attention maps to those of "
                               "the input's own inversion trajectory, keeping its layout (0 = off; "
                               "0.1 for photos, 0.15 for generated images; on v-prediction models (SD 2.x) the step "
                               "taken is a tenth of it, the official <= 0.01).",
                               min=0.0, max=2.0, label="Layout kept")
    guidance: float = param(5.0, "How strongly to push towards the target word (classifier-free guidance "
                            "against the caption).", min=1.0, max=30.0, label="Change strength")
    edit_multiplier: float = param(1.0, "Scales the edit direction (the official demo's edit multiplier, "
                                   "0-2): raise it when the edit does not show, lower it when it goes too far.",
                                   min=0.0, max=4.0, label="Edit amount")
    local_blend: bool = param(True, "Keep the rest: only where the word is seen may the picture change "
                              "(Prompt-to-Prompt's local blending of the caption's word; needs the word in "
                              "the caption). Off lets the whole picture follow the edit.",
                              label="Change only the word's region")
    steps: int = param(50, "Inversion and denoising steps.", min=2, max=1000)
    reg_steps: int = param(5, "Noise-regularisation rounds per inversion step (0 = plain DDIM inversion).",
                           min=0, max=50, advanced=True, label="Noise clean-up rounds")
    lambda_ac: float = param(20.0, "Weight (step size) of the auto-correlation term of the noise "
                             "regularisation.", min=0.0, max=1000.0, advanced=True, label="Clean-up: pattern weight")
    lambda_kl: float = param(20.0, "Weight (step size) of the KL term of the noise regularisation.",
                             min=0.0, max=1000.0, advanced=True, label="Clean-up: spread weight")

    def check(self) -> None:
        if " ".join(self.source_word.lower().split()) == " ".join(self.target_word.lower().split()):
            raise InvalidInput(f"The source and target words are the same ({self.source_word!r}): choose a "
                               "different target word (e.g. cat -> dog).")


# ---- cross-attention maps -------------------------------------------------------------------------

class CrossAttentionMaps(AttentionHook):
    """Records the head-averaged cross-attention map of every attn2 layer ([B, tokens, 77])."""

    def __init__(self, dtype: torch.dtype = torch.float32):
        self.dtype = dtype
        self.maps: dict[str, torch.Tensor] = {}

    def applies(self, call: AttnCall) -> bool:
        return call.layer.is_cross

    def wants_probs(self, call: AttnCall) -> bool:
        return True

    def probs(self, call: AttnCall, p: torch.Tensor) -> torch.Tensor:
        self.maps[call.layer.name] = p.detach().mean(1).to(self.dtype)
        return p


class CrossAttentionLoss(AttentionHook):
    """Σ over attn2 layers of ‖mean_heads(M) − M_ref‖², differentiable (for guidance on x_t)."""

    def __init__(self, reference: dict[str, torch.Tensor]):
        self.reference = reference
        self.loss: Optional[torch.Tensor] = None

    def applies(self, call: AttnCall) -> bool:
        return call.layer.is_cross and call.layer.name in self.reference

    def wants_probs(self, call: AttnCall) -> bool:
        return True

    def probs(self, call: AttnCall, p: torch.Tensor) -> torch.Tensor:
        term = ((p.mean(1) - self.reference[call.layer.name].float()) ** 2).sum()
        self.loss = term if self.loss is None else self.loss + term
        return p


def reference_pass(model: DiffusionModel, schedule: DDIMSchedule, traj: Trajectory, cond: torch.Tensor,
                   reporter: Optional[Reporter] = None, stage: str = "reference") -> list[dict]:
    """The caption's cross-attention maps at every step of the inversion trajectory (the source
    branch of Direct Inversion): [per step {layer: map}]."""
    maps: list[dict[str, torch.Tensor]] = []
    if reporter:
        reporter.stage(stage, schedule.steps)
    for i, t in enumerate(schedule.timesteps):
        rec = CrossAttentionMaps(model.dtype)
        x = traj.at(i)
        with torch.no_grad(), attention_hooks(model.unet, rec):
            out = unet_forward(model, x, t, cond)
        maps.append(rec.maps)
        if reporter:
            reporter.step(i + 1, schedule.steps, latent_preview(model, schedule.x0_and_eps(x, out, t)[0]))
    return maps


@dataclass
class EditPass:
    latent: torch.Tensor
    xa_losses: list = field(default_factory=list)  # loss at each step before its guidance step (tensors)
    # ‖guidance step‖ / ‖x_t‖ at each guided step (tensors): how far the guidance moves the latent,
    # comparable between models (the demo's is about 2e-4 at the official 0.1; see the README)
    xa_moves: list = field(default_factory=list)


def edit_pass(model: DiffusionModel, schedule: DDIMSchedule, x_T: torch.Tensor, cond_edit: torch.Tensor,
              negative: torch.Tensor, reference: list[dict], guidance: float, xa_guidance: float,
              reporter: Optional[Reporter] = None, after_step: Optional[Callable] = None,
              measure: bool = False, stage: str = "edit", blend: Optional[LocalBlend] = None,
              traj: Optional[Trajectory] = None) -> EditPass:
    """Denoise x_T with `cond_edit`, guiding each x_t towards the reference cross-attention maps
    (one gradient step of size `xa_guidance`), then a CFG step with `negative` as the
    unconditional prompt. `measure` records the attention loss even without guidance.

    blend (with the trajectory `traj`): local blending of the caption's word, its source map read
    from the reference maps (the trajectory's), its target map from the edit branch; outside them
    the latent is reset to the trajectory after every step."""
    result = EditPass(x_T)
    cfg_rows = 2 if guidance != 1.0 else 1  # predict_cfg's batch: [negative, edit] or [edit]
    scaler = LossScaler.for_dtype(model.dtype)

    def guide(x, i, t):
        if xa_guidance <= 0 and not measure:
            return x
        hook = CrossAttentionLoss(reference[i])
        grad_on = xa_guidance > 0
        with torch.set_grad_enabled(grad_on), attention_hooks(model.unet, hook):
            xv = x.detach().requires_grad_(grad_on)
            unet_forward(model, xv, t, cond_edit)
            loss = hook.loss
            if loss is None:
                return x
            if grad_on:
                (g,) = scaler.grad(loss, [xv])
                step = xa_guidance * g
                result.xa_moves.append(step.norm() / x.detach().norm().clamp_min(1e-12))
                x = x.detach() - step
        result.xa_losses.append(loss.detach())
        return x

    def predict(x, i, t):
        if blend is None:
            return predict_cfg(model, x, t, cond_edit, negative, guidance)
        for name, m in reference[i].items():
            if "mid_block" not in name:
                blend.add("source", m[0])
        blend.rows = (cfg_rows - 1, None)  # the conditional (edited) row
        with attention_hooks(model.unet, blend):
            return predict_cfg(model, x, t, cond_edit, negative, guidance)

    after = blend.after_step(traj, then=after_step) if blend is not None else after_step
    result.latent = denoise(model, schedule, x_T, predict, reporter, stage=stage, guide=guide,
                            after_step=after)
    return result


def word_blend(model: DiffusionModel, p: "Pix2PixZeroParams", caption: str, latent_hw: tuple[int, int],
               steps: int) -> Optional[LocalBlend]:
    """The local blending of the source word's tokens in the caption (the same positions in the edit
    branch, whose embedding is the caption's plus the direction); None when off or the caption
    does not contain the word."""
    if not p.local_blend:
        return None
    ids = model.tokenize([caption])[0].tolist()
    positions = token_positions(ids, word_token_ids(model.tokenizer, p.source_word))
    if not positions:
        return None
    return LocalBlend.for_unet(model.unet, positions, positions, latent_hw, steps)


# ---- captioning -----------------------------------------------------------------------------------

def caption_image(ctx: EditContext) -> str:
    """A BLIP caption of the input (cached per image), or ModelUnavailable asking for a caption."""
    from ...aux_models import load_aux

    cache = ctx.cache("captions", 32)
    key = (ctx.image_key, "blip")
    hit = cache.get(key)
    if hit is not None:
        return hit
    try:
        aux = load_aux("blip", ctx.model, needed_by=NAME)
    except ModelUnavailable as e:
        raise ModelUnavailable(f"{NAME} needs a caption: type a source prompt describing the image (e.g. 'a cat "
                               f"sitting on a sofa'), or make the BLIP captioner available ({e}).") from e
    from PIL import Image

    inputs = aux.processor(images=Image.fromarray(ctx.source.rgb), return_tensors="pt")
    inputs = {k: (v.to(ctx.device, next(aux.model.parameters()).dtype) if v.is_floating_point() else v.to(ctx.device))
              for k, v in inputs.items()}
    with torch.no_grad():
        ids = aux.model.generate(**inputs, max_new_tokens=40)
    text = " ".join(aux.processor.decode(ids[0], skip_special_tokens=True).split())
    if not text:
        raise InvalidInput(f"The captioner found nothing to say about this image: type a source prompt for {NAME}.")
    cache.put(key, text)
    return text


# ---- the method -----------------------------------------------------------------------------------

def run(ctx: EditContext, p: Pix2PixZeroParams) -> MethodOutput:
    model = ctx.model
    check_word_pair(model.tokenizer, p.source_word, p.target_word)
    caption = " ".join(p.source_prompt.split()) or caption_image(ctx)
    schedule = ctx.schedule(p.steps)

    refiner = NoiseRegularizer(p.reg_steps, p.lambda_ac, p.lambda_kl, seed=p.seed, schedule=schedule)
    refiner_on = refiner.active
    traj = invert_cached(ctx, schedule, caption, eps_refiner=refiner if refiner_on else None,
                         refiner_key=refiner.key if refiner_on else None, stage="invert")

    direction = edit_direction(model, p.source_word, p.target_word, ctx.cache("edit_directions", 16),
                               check=ctx.reporter.cancel.check)
    cond = model.encode_text(caption).float()
    # embeddings and (SDXL) pooled embedding, the direction times the official edit multiplier
    cond_edit = cond + direction.to(cond.device).scaled(p.edit_multiplier)
    x_T = traj.noisiest

    ref_cache = ctx.cache("p2pz_reference", 2)
    ref_key = content_key("trajectory", model.model_id, str(ctx.device), ctx.image_key, caption, p.steps,
                          refiner.key if refiner_on else None)
    reference = ref_cache.get(ref_key)
    if reference is None:
        reference = reference_pass(model, schedule, traj, cond, ctx.reporter)
        ref_cache.put(ref_key, reference)
    else:
        ctx.reporter.stage("reference", 1)
        ctx.reporter.step(1, 1, latent_preview(model, traj.clean), message="reused")

    after_step = keep_outside_trajectory(ctx.latent_mask(), traj)
    step = xa_step(model, p.xa_guidance)
    blend = word_blend(model, p, caption, tuple(x_T.shape[-2:]), schedule.steps)
    edited = edit_pass(model, schedule, x_T, cond_edit, cond, reference, p.guidance, step,
                       ctx.reporter, after_step, blend=blend, traj=traj)
    ctx.reporter.stage("decode", 1)
    with torch.no_grad():
        image = vae_decode(model, edited.latent)
    losses = torch.stack(edited.xa_losses).tolist() if edited.xa_losses else []
    moves = torch.stack(edited.xa_moves).float() if edited.xa_moves else None
    info = {"caption": caption, "source_word": p.source_word, "target_word": p.target_word,
            "xa_loss": [round(v, 6) for v in losses], "xa_step": step,
            # how far the layout guidance moved the latent per step, relative to its norm (mean, max)
            "xa_move": None if moves is None else {"mean": float(moves.mean()), "max": float(moves.max())},
            "local_blend": None if blend is None else blend.report()}
    return MethodOutput(image, info)


METHOD = register(Method(
    name=NAME, label="Swap a word — cat → dog, the rest stays (pix2pix-zero)",
    params=Pix2PixZeroParams, run=run,
    stages=("invert", "reference", "edit"),
    description="Change one thing into another (cat -> dog) along a word direction, keeping the picture's "
                "layout through cross-attention guidance. Captions the image with BLIP when no source "
                "prompt is given.",
    needs=("blip",)))
