"""`style-diffusion`: StyleDiffusion (Li et al., 2023) — reconstruct a real photo through what enters
the cross-attention *values*, then restyle it Prompt-to-Prompt style without breaking its structure.

Keys carry structure, values carry appearance. For every DDIM step a small mapping network turns
the CLIP image tokens of the input (computed once per image) into a per-token scale and shift of
the source prompt's embedding; the result (value = c·scale + shift) replaces only the *value*
input of every cross-attention layer in the conditional branch, while keys stay the prompt's.
The networks are trained per image along the DDIM inversion trajectory (latent reconstruction +
attention regularisation) and cached, so a second edit of the same image skips training.

Editing runs the source (reconstruction) and target branches, each with classifier-free guidance,
in one batched UNet call per step, with Prompt-to-Prompt control:
- cross-attention maps of the target replaced by the (token-aligned) source maps for the first τ_c
  of the steps; self-attention maps injected from the source for the first τ_s, in every layer
  below the UNet's top resolution (the official ≤ 32×32 of SD 1.x at 512 px, i.e. at most half the
  latent's side, so it scales with the picture and the UNet);
- the target's value input is the *target* prompt's embedding through the learned scale and shift
  of that step (value = c_target·scale + shift) for the first τ_v of the steps, its plain embedding
  afterwards: so a word swap acts on the values from the first step, as in the official code;
- the new words emphasised: while the maps are copied, the target's cross-attention on the words
  the source lacks is multiplied by `new_word_weight` (P2P's `AttentionReweight`, which every
  official StyleDiffusion edit stacks on the replacement: `eq_params` = the new word, ×2);
- "improved unconditional branch": Prompt-to-Prompt edits only the conditional half of CFG; for the
  first τ_u of the steps the source's self-attention maps are also injected into the unconditional
  half, so the negative branch keeps the source's layout too.
- local blending (core/local_blend.py), as every official word-swap edit passes a blend word pair:
  the swapped words' cross-attention maps (source word in the source branch, target word in the
  target) mark where the picture may change; from a fifth of the steps on, the target latent outside
  that region is reset to the source's after every step. `blend_words` names the words instead
  (an edit that adds words, e.g. a restyle, is blended only then).

Training follows the official schedule: Adam's learning rate at step i is lr·(1 − 0.3·i/n) (the
official 1e-2·(1 − i/100) over its 30 steps, ending at 0.71·lr), and the attention regularisation
is the sum over the regularised layers of each layer's MSE (the official sum, not a mean). Through
an fp16 UNet the loss is scaled (core/loss_scaling.py).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...conditioning import Conditioning
from ...attention import AttentionHook, AttentionRecorder, AttnCall, LayerInfo, attention_hooks
from ...aux_models import AuxModel, load_aux
from ...cache import content_key
from ...context import EditContext, MethodOutput
from ...errors import InvalidInput
from ...events import Reporter
from ...local_blend import (LocalBlend, changed_prompt_positions, content_length, lcs_pairs,
                           swapped_positions, token_positions)
from ...loss_scaling import LossScaler
from ...models import DiffusionModel
from ...params import MethodParams, param
from ...previews import latent_preview
from ...registry import Method, register
from ...sampling import Trajectory, denoise, invert_cached, keep_outside_trajectory
from ...schedule import DDIMSchedule
from ...unet_calls import unet_forward, vae_decode
from ...vision import CLIP_MEAN, CLIP_STD, normalisation, vit_pixels

ATTN_REG_WEIGHT = 1.0      # weight of the attention regularisation (summed over layers) against the latent loss
EARLY_STOP = (1e-5, 2e-5)  # stop a step's iterations when loss < a + b·i (looser at later steps)
LR_DECAY = 0.3             # lr falls linearly by this share over the steps (official: 1 − i/100 over 30)


@dataclass(frozen=True, kw_only=True)
class StyleDiffusionParams(MethodParams):
    source_prompt: str = param("", "What the image shows now (optional): the reconstruction is learned for "
                               "this prompt, and the target prompt is aligned to it word by word.", kind="text",
                               label="Picture shows")
    prompt: str = param("", "What the image should become: the source prompt with words swapped, added or "
                        "restyled (e.g. 'a cat' -> 'a watercolor cat'); a swapped word acts from the first "
                        "step (its values are the target prompt through the learned mapping).", kind="text",
                        required=True, label="New caption")
    tau_v: float = param(0.5, "Fraction of the steps whose cross-attention values come from the image "
                         "(higher keeps more of the original look).", min=0.0, max=1.0, label="Original look kept")
    tau_c: float = param(0.6, "Fraction of the steps that copy the source's cross-attention maps "
                         "(higher keeps the layout more strictly).", min=0.0, max=1.0, advanced=True,
                         label="Layout kept")
    tau_s: float = param(0.6, "Fraction of the steps that inject the source's self-attention maps "
                         "(structure), on every level below the top resolution (the official ≤ 32² of 64²).",
                         min=0.0, max=1.0, advanced=True, label="Structure kept")
    tau_u: float = param(0.0, "Fraction of the steps that also control the unconditional branch of "
                         "guidance (keeps the layout under strong guidance).", min=0.0, max=1.0, advanced=True,
                         label="Layout kept under strong guidance")
    new_word_weight: float = param(2.0, "Emphasis of the new words while the layout is copied: their "
                                   "cross-attention is multiplied by this (the official editing's equalizer, "
                                   "2 for a word swap; 1 = off, higher pushes the new word harder; needs a "
                                   "source prompt).",
                                   min=0.0, max=10.0, advanced=True, label="New words' emphasis")
    local_blend: bool = param(True, "Keep the rest: only where the swapped words are seen may the picture "
                              "change (Prompt-to-Prompt local blending, as the official word-swap edits). "
                              "Off for a restyle of the whole picture.", label="Change only the swapped words")
    blend_words: str = param("", "The words whose region may change, from either prompt (e.g. 'cat tiger'); "
                             "empty: the swapped words of a word swap. An edit that adds words is blended "
                             "only when they are named here.", kind="text", advanced=True,
                             label="Region of these words")
    guidance: float = param(7.5, "Classifier-free guidance scale (the reconstruction is learned for it).",
                            min=1.0, max=30.0, label="Prompt strength")
    steps: int = param(30, "DDIM steps for inversion, training and editing.", min=2, max=200)
    train_iters_scale: int = param(100, "Optimisation iterations at the first step (step i gets about "
                                   "scale·e^(-0.1·i)); more reconstructs more faithfully, slower.",
                                   min=1, max=1000, advanced=True, label="Learning effort")
    train_lr: float = param(1e-2, "Learning rate of the mapping networks; it decays linearly to 0.7 of this "
                            "over the steps (the official schedule).", min=1e-5, max=1.0, advanced=True,
                            label="Learning rate")
    seed: int = param(0, "Seeds the mapping networks' initialisation (the edit itself is deterministic).",
                      min=0, max=2**32 - 1)


# ---- CLIP image tokens ---------------------------------------------------------------------------

def _vision_tower(model: nn.Module) -> nn.Module:
    """The vision transformer of a CLIPModel or CLIPVisionModel (any transformers layout)."""
    return getattr(model, "vision_model", model)


def _vision_config(model: nn.Module):
    cfg = model.config
    return getattr(cfg, "vision_config", cfg)


def clip_pixels(image: torch.Tensor, size: int, mean=CLIP_MEAN, std=CLIP_STD) -> torch.Tensor:
    """[1,3,H,W] in -1..1 -> CLIP's input: shortest side resized to `size` (bicubic), centre crop,
    normalised with CLIP's mean and std."""
    return vit_pixels(image, size, mean, std, centre_crop=True, mode="bicubic")


@torch.no_grad()
def encode_clip_tokens(clip_model: nn.Module, image: torch.Tensor, text_dim: int,
                       processor: object = None) -> torch.Tensor:
    """All tokens of the CLIP vision tower's last layer (class token + patches; 197 for ViT-B/16 at
    224), layer-normed with the tower's post-layernorm, as [1, T, text_dim] float32.

    Where the vision hidden size differs from the text encoder's, the tokens are brought to the text
    size by (1) CLIP's own visual projection when it lands exactly on that size (e.g. ViT-L/14 →
    768), else (2) a fixed, parameter-free linear resampling along the feature axis. The mapping
    networks only mix tokens (Conv1d over the token axis), so the features just need the text width."""
    tower = _vision_tower(clip_model)
    cfg = _vision_config(clip_model)
    mean, std = normalisation(processor, CLIP_MEAN, CLIP_STD)
    dtype = next(clip_model.parameters()).dtype
    pixels = clip_pixels(image, int(cfg.image_size), mean, std).to(dtype)
    hidden = tower(pixel_values=pixels).last_hidden_state
    post = getattr(tower, "post_layernorm", None)
    if post is not None:
        hidden = post(hidden)
    if hidden.shape[-1] != text_dim:
        proj = getattr(clip_model, "visual_projection", None)
        if proj is not None and proj.out_features == text_dim:
            hidden = proj(hidden)
        else:
            hidden = F.interpolate(hidden.float(), size=text_dim, mode="linear", align_corners=True)
    return hidden.float()


def clip_image_tokens(ctx: EditContext) -> tuple[torch.Tensor, str]:
    """The input image's CLIP tokens at the text width, computed once per (CLIP, model, image)."""
    aux: AuxModel = load_aux("clip", ctx.model, needed_by="StyleDiffusion")
    key = content_key(aux.source, ctx.model.model_id, str(ctx.device), ctx.image_key)
    cache = ctx.cache("style_diffusion_clip", 8)
    tokens = cache.get(key)
    if tokens is None:
        tokens = encode_clip_tokens(aux.model, ctx.image, text_hidden_size(ctx.model), aux.processor)
        cache.put(key, tokens)
    return tokens.to(ctx.device), aux.source


def text_hidden_size(model: DiffusionModel) -> int:
    """The width of the prompt embeddings (both SDXL encoders together)."""
    return model.text_width


# ---- the per-timestep mapping network ------------------------------------------------------------

class ValueMapper(nn.Module):
    """CLIP tokens [1, T, D] -> (scale, shift) [1, L, D] each: Conv1d(T→2L), [Conv1d(2L→2L) +
    BatchNorm + LeakyReLU], Conv1d(2L→2L), split in half. Convolutions mix tokens (the feature axis
    is the conv's length). BatchNorm normalises over the feature axis of the one image (batch
    statistics, identical in training and editing). The last layer starts at zero with bias
    (1, 0), so an untrained mapper gives value = c: the plain prompt's reconstruction."""

    def __init__(self, tokens: int, length: int):
        super().__init__()
        width = 2 * length
        self.length = length
        self.net = nn.Sequential(
            nn.Conv1d(tokens, width, 1),
            nn.Conv1d(width, width, 1), nn.BatchNorm1d(width, track_running_stats=False), nn.LeakyReLU(0.2),
            nn.Conv1d(width, width, 1))

    def reset(self, generator: torch.Generator) -> "ValueMapper":
        with torch.no_grad():
            for conv in (self.net[0], self.net[1]):
                bound = 1 / math.sqrt(conv.in_channels)
                conv.weight.copy_(torch.rand(conv.weight.shape, generator=generator) * 2 * bound - bound)
                conv.bias.copy_(torch.rand(conv.bias.shape, generator=generator) * 2 * bound - bound)
            last = self.net[4]
            last.weight.zero_()
            last.bias.copy_(torch.cat([torch.ones(self.length), torch.zeros(self.length)]))
        return self

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(tokens)
        return out[:, : self.length], out[:, self.length:]

    def value(self, tokens: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        scale, shift = self(tokens)
        return apply_value(cond, scale, shift)


def apply_value(cond, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """The value embedding of a prompt embedding `cond` (a tensor or a Conditioning's embeddings)
    under a learned (scale, shift)."""
    embeds = cond.embeds if isinstance(cond, Conditioning) else cond
    return embeds.float() * scale + shift


# ---- attention hooks -----------------------------------------------------------------------------

class ValueHook(AttentionHook):
    """Replaces the values of cross-attention (attn2) for chosen batch rows with
    `attn.to_v(value_embedding)`; queries and keys are left exactly as computed from the prompt."""

    def __init__(self) -> None:
        self.embeddings: Optional[torch.Tensor] = None  # [R, L, D]
        self.rows: Optional[list[int]] = None

    def set(self, embeddings: Optional[torch.Tensor], rows: Optional[list[int]] = None) -> None:
        self.embeddings = embeddings
        self.rows = rows

    def applies(self, call: AttnCall) -> bool:
        return call.layer.is_cross and self.embeddings is not None

    def qkv(self, call, q, k, v):
        attn = call.attn
        emb = self.embeddings.to(attn.to_v.weight.dtype)
        if attn.norm_cross:
            emb = attn.norm_encoder_hidden_states(emb)
        new = call.split_heads(attn.to_v(emb)).to(v.dtype)
        rows = self.rows if self.rows is not None else list(range(new.shape[0]))
        if rows == list(range(v.shape[0])):
            return q, k, new
        idx = torch.tensor(rows, device=v.device)
        return q, k, v.index_copy(0, idx, new)


@dataclass
class Alignment:
    """Target token j takes the source's token mapping[j] with weight alphas[j] (0: its own)."""

    mapping: torch.Tensor   # [L] long
    alphas: torch.Tensor    # [L] float
    kind: str               # "word swap" | "refinement"


def align_tokens(model: DiffusionModel, source: str, target: str) -> Alignment:
    """Prompt-to-Prompt token alignment. Equal token counts: word swap (position j ↔ j, every map
    replaced). Otherwise refinement: content tokens matched by longest common subsequence; tokens only
    in the target keep their own maps; BOS ↔ BOS; EOS and padding aligned by offset."""
    ids = model.tokenize([source, target])
    src, tgt = ids[0].tolist(), ids[1].tolist()
    length = len(tgt)
    eos = model.tokenizer.eos_token_id
    ns, nt = content_length(src, eos), content_length(tgt, eos)
    if ns == nt:
        return Alignment(torch.arange(length), torch.ones(length), "word swap")
    mapping = torch.zeros(length, dtype=torch.long)
    alphas = torch.zeros(length)
    mapping[0], alphas[0] = 0, 1.0
    for i, j in lcs_pairs(src[1: 1 + ns], tgt[1: 1 + nt]):
        mapping[1 + j], alphas[1 + j] = 1 + i, 1.0
    for j in range(1 + nt, length):
        mapping[j], alphas[j] = min(length - 1, j - nt + ns), 1.0
    return Alignment(mapping, alphas, "refinement")


def aligned(source: torch.Tensor, target: torch.Tensor, al: Alignment, dim: int) -> torch.Tensor:
    """Mix along token axis `dim`: alpha·source[mapping] + (1 − alpha)·target."""
    mapped = source.index_select(dim, al.mapping.to(source.device))
    shape = [1] * target.dim()
    shape[dim] = -1
    a = al.alphas.to(target.device, target.dtype).view(shape)
    return a * mapped.to(target.dtype) + (1 - a) * target


def regularised_level(unet) -> int:
    """The UNet level of SD 1.x's 16×16 cross-attention layers: the deepest down level with
    cross-attention (level 2 of 4 in SD 1.x; level 1 of 3 in the demo UNet)."""
    levels = [i for i, t in enumerate(unet.config.down_block_types) if "CrossAttn" in t]
    return max(levels) if levels else 0


def layer_selectors(unet) -> tuple[Callable[[LayerInfo], bool], Callable[[LayerInfo], bool]]:
    """(regularised cross-attention layers, self-attention layers controlled by P2P). The official
    code injects self-attention where a layer has ≤ 32² tokens, which in SD 1.x at 512 px (a 64²
    latent) is every level but the top one: here every level below the top resolution, whatever
    the picture's size (a 768 px picture's 48² level counts, as its 32² level would at 512)."""
    lvl = regularised_level(unet)
    n_up = len(unet.config.up_block_types)
    up = n_up - 1 - lvl

    def reg(layer: LayerInfo) -> bool:
        return layer.is_cross and ((layer.place == "down" and layer.block == lvl)
                                   or (layer.place == "up" and layer.block == up))

    def self_ctrl(layer: LayerInfo) -> bool:
        return layer.kind == "attn1" and ((layer.place == "down" and layer.block >= 1)
                                          or layer.place == "mid" or (layer.place == "up" and layer.block <= n_up - 2))

    return reg, self_ctrl


# UNet batch layout while editing: target and source, unconditional then conditional.
TGT_U, SRC_U, TGT_C, SRC_C = 0, 1, 2, 3


class PromptToPromptControl(AttentionHook):
    """Replaces the target branch's attention maps by the source branch's in one batched call.

    equalizer ([77] or None): multiplies the target's replaced cross-attention maps per text token
    (Prompt-to-Prompt's `AttentionReweight`, which every official StyleDiffusion edit stacks on the
    replacement: the new word ×2). Not renormalised, as the official."""

    def __init__(self, alignment: Alignment, self_layers: Callable[[LayerInfo], bool],
                 cross_steps: int, self_steps: int, uncond_steps: int,
                 equalizer: Optional[torch.Tensor] = None):
        self.alignment = alignment
        self.equalizer = equalizer
        self.self_layers = self_layers
        self.cross_steps, self.self_steps, self.uncond_steps = cross_steps, self_steps, uncond_steps
        self.step = 0

    def applies(self, call: AttnCall) -> bool:
        return call.layer.is_cross or self.self_layers(call.layer)

    def wants_probs(self, call: AttnCall) -> bool:
        if call.layer.is_cross:
            return self.step < self.cross_steps
        return self.step < max(self.self_steps, self.uncond_steps)

    def probs(self, call, p):
        cross = call.layer.is_cross
        out = p.clone()
        if self.step < (self.cross_steps if cross else self.self_steps):
            if not cross:
                out[TGT_C] = p[SRC_C]
            elif self.equalizer is None:
                out[TGT_C] = aligned(p[SRC_C], p[TGT_C], self.alignment, -1)
            else:
                out[TGT_C] = aligned(p[SRC_C], p[TGT_C], self.alignment, -1) * self.equalizer.to(out)
        if not cross and self.step < self.uncond_steps:
            out[TGT_U] = p[SRC_U]  # the official improved unconditional branch: self-attention only
        return out


# ---- training ------------------------------------------------------------------------------------

@dataclass
class LearnedValues:
    """Trained mapping networks of one image and the scale and shift they give at each step."""

    mappers: nn.ModuleList
    scales: torch.Tensor                 # [steps, L, D] float32
    shifts: torch.Tensor                 # [steps, L, D] float32
    iterations: int = 0
    first_losses: list = field(default_factory=list)  # per step: loss before optimising
    last_losses: list = field(default_factory=list)   # per step: loss of the kept embedding

    def value(self, i: int, cond: torch.Tensor) -> torch.Tensor:
        """Step i's value embedding [1, L, D] of a prompt embedding (the source's or the target's)."""
        return apply_value(cond, self.scales[i: i + 1], self.shifts[i: i + 1])


def attention_regularisation(maps: list, references: list) -> torch.Tensor:
    """Σ over the regularised layers of MSE(map, reference map): the official sum (a mean over the
    layers would weaken it by their number, 4 in SD 1.x)."""
    return sum(F.mse_loss(m, r) for m, r in zip(maps, references))


def train_lr_at(lr: float, step: int, steps: int) -> float:
    """Adam's learning rate at DDIM step `step`: the official 1e-2·(1 − i/100) over 30 steps,
    i.e. a linear fall to 0.71·lr, for any number of steps."""
    return lr * (1 - LR_DECAY * step / steps)


def iterations_at(step: int, scale: int) -> int:
    return math.ceil(scale * math.exp(-0.1 * step))


def train_value_mappers(model: DiffusionModel, schedule: DDIMSchedule, traj: Trajectory, tokens: torch.Tensor,
                        cond: torch.Tensor, uncond: torch.Tensor, guidance: float, iters_scale: int, lr: float,
                        seed: int = 0, reporter: Optional[Reporter] = None,
                        attn_weight: float = ATTN_REG_WEIGHT) -> LearnedValues:
    """Learn one mapping network per DDIM step so that denoising with guidance, with the learned
    value embedding in the conditional branch, follows the inversion trajectory; attention maps of
    the SD-16×16-level cross-attention layers are kept close to the plain prompt's (the sum over
    layers of each one's MSE). Each step's network starts from the previous step's (the first from
    `seed`); Adam's learning rate decays linearly to (1 − LR_DECAY)·lr over the steps; a step stops
    early once its loss is low."""
    n = schedule.steps
    length, dim = cond.shape[1], cond.shape[2]
    reg_layer, _ = layer_selectors(model.unet)
    gen = torch.Generator("cpu").manual_seed(int(seed))
    proto = ValueMapper(tokens.shape[1], length).reset(gen).to(model.device)
    tokens, cond32 = tokens.float(), cond.embeds.float()
    mappers = nn.ModuleList()
    scales = torch.zeros((n, length, dim), device=model.device)
    shifts = torch.zeros((n, length, dim), device=model.device)
    scaler = LossScaler.for_dtype(model.dtype)
    first, last = [], []
    total_iters = 0
    hook = ValueHook()
    x = traj.noisiest.float()
    if reporter:
        reporter.stage("train", n)
    for i in range(n):
        t = schedule.timesteps[i]
        target = traj.latents[i + 1: i + 2]
        mapper = copy.deepcopy(mappers[-1] if len(mappers) else proto).requires_grad_(True)
        # Reference: the unconditional prediction and the plain prompt's attention maps at x (one pass).
        ref = AttentionRecorder(lambda layer: reg_layer(layer), what=("probs",))
        with torch.no_grad(), attention_hooks(model.unet, ref):
            out = unet_forward(model, torch.cat([x, x]), t, Conditioning.cat([uncond, cond]))
        eps_u = out[:1]
        ref_maps = [r[0]["probs"][1:] for r in ref.records.values()]
        step_lr = train_lr_at(lr, i, n)
        opt = torch.optim.Adam(mapper.parameters(), lr=step_lr)
        n_iter = iterations_at(i, iters_scale)
        threshold = EARLY_STOP[0] + EARLY_STOP[1] * i
        best = None  # (loss, x_next, x0, mapper state): the best iterate is the one kept
        for it in range(n_iter + 1):
            if reporter:
                reporter.cancel.check()
            with torch.set_grad_enabled(it < n_iter):  # the last evaluation is never back-propagated
                scale, shift = mapper(tokens)
                hook.set(apply_value(cond32, scale, shift))
                rec = AttentionRecorder(lambda layer: reg_layer(layer), what=("probs",), detach=False)
                with attention_hooks(model.unet, hook, rec):
                    eps_c = unet_forward(model, x, t, cond)
                hook.set(None)
                model_out = eps_u + guidance * (eps_c - eps_u)
                x0, eps = schedule.x0_and_eps(x, model_out, t)
                x_next = schedule.from_x0(x0, eps, schedule.prev_timestep(i))
                loss = F.mse_loss(x_next, target)
                maps = [r[0]["probs"] for r in rec.records.values()]
                if maps and attn_weight:
                    loss = loss + attn_weight * attention_regularisation(maps, ref_maps)
                lv = float(loss.detach())
                if it == 0:
                    first.append(lv)
                if best is None or lv < best[0]:
                    best = (lv, x_next.detach(), x0.detach(),
                            {k: v.detach().clone() for k, v in mapper.state_dict().items()})
                if it == n_iter or lv < threshold:
                    break
                opt.zero_grad(set_to_none=True)
                scaler.backward(loss, list(mapper.parameters()))
                opt.step()
                total_iters += 1
        lv, x, x0, state = best
        mapper.load_state_dict(state)
        last.append(lv)
        mappers.append(mapper.requires_grad_(False))
        with torch.no_grad():
            scale, shift = mapper(tokens)
        scales[i], shifts[i] = scale[0], shift[0]
        if reporter:
            reporter.step(i + 1, n, latent_preview(model, x0))
    return LearnedValues(mappers, scales, shifts, total_iters, first, last)


def learned_values_cached(ctx: EditContext, p: StyleDiffusionParams, schedule: DDIMSchedule,
                          traj: Trajectory, tokens: torch.Tensor, clip_source: str) -> tuple[LearnedValues, bool]:
    """The trained mapping networks for (model, image, source prompt, training settings); trains
    only on a cache miss. Returns (learned, trained_now)."""
    key = content_key("style-diffusion-2", ctx.model.model_id, str(ctx.device), ctx.image_key, clip_source,
                      p.source_prompt, p.steps, p.guidance, p.train_iters_scale, p.train_lr, p.seed,
                      ATTN_REG_WEIGHT)
    cache = ctx.cache("style_diffusion_mappers", 4)
    learned = cache.get(key)
    if learned is not None:
        ctx.reporter.stage("train", 1)
        ctx.reporter.step(1, 1, latent_preview(ctx.model, traj.clean), message="reused")
        return learned, False
    learned = train_value_mappers(ctx.model, schedule, traj, tokens, ctx.model.encode_text(p.source_prompt),
                                  ctx.model.encode_text(""), p.guidance, p.train_iters_scale, p.train_lr,
                                  p.seed, ctx.reporter)
    cache.put(key, learned)
    return learned, True


# ---- editing -------------------------------------------------------------------------------------

def local_blend_for(model: DiffusionModel, p: StyleDiffusionParams, alignment: Alignment,
                    latent_hw: tuple[int, int], steps: int) -> Optional[LocalBlend]:
    """The official local blending of the edited words: the swapped tokens of a word swap, or the
    named `blend_words` found in each prompt. None when it is off or no word is edited."""
    if not p.local_blend:
        return None
    ids = model.tokenize([p.source_prompt, p.prompt])
    src, tgt = ids[0].tolist(), ids[1].tolist()
    if p.blend_words.strip():
        src_pos, tgt_pos = [], []
        for word in p.blend_words.split():
            word_ids = list(model.tokenizer(word, add_special_tokens=False).input_ids)
            src_pos += token_positions(src, word_ids)
            tgt_pos += token_positions(tgt, word_ids)
        if not src_pos and not tgt_pos:
            raise InvalidInput(f"None of the blend words {p.blend_words!r} is in the prompts: name words of "
                               "the source or the new caption, or leave the field empty.")
    elif alignment.kind == "word swap":
        src_pos = tgt_pos = swapped_positions(src, tgt)
    else:
        return None
    if not src_pos and not tgt_pos:
        return None
    return LocalBlend.for_unet(model.unet, src_pos, tgt_pos, latent_hw, steps)


def new_word_equalizer(model: DiffusionModel, p: StyleDiffusionParams) -> Optional[torch.Tensor]:
    """[77] per-token weights of the target's cross-attention: `new_word_weight` on the tokens the
    target prompt has that the source lacks (the swapped or added words; the official names them in
    `eq_params`), 1 elsewhere. None when the weight is 1, without a source prompt (every word would
    be new: there is no swap to emphasise) or when no word is new."""
    if p.new_word_weight == 1.0 or not p.source_prompt.strip():
        return None
    _, new_positions, length = changed_prompt_positions(model, p.source_prompt, p.prompt)
    if not new_positions:
        return None
    eq = torch.ones(length)
    eq[new_positions] = p.new_word_weight
    return eq


def steps_for(tau: float, n: int) -> int:
    return int(round(tau * n))


def edit_latents(model: DiffusionModel, schedule: DDIMSchedule, traj: Trajectory, learned: LearnedValues,
                 c_src: torch.Tensor, c_tgt: torch.Tensor, uncond: torch.Tensor, alignment: Alignment,
                 p: StyleDiffusionParams, reporter: Optional[Reporter] = None,
                 latent_mask: Optional[torch.Tensor] = None, keep_source: bool = False,
                 blend: Optional[LocalBlend] = None) -> torch.Tensor:
    """Denoise target and source together (one UNet call of 4 per step) and return the target's
    clean latent. Outside the mask the target follows the inversion trajectory.

    blend: the local blending of the edited words. The official resets the target to its source
    *branch* outside the words' region; here to the inversion trajectory at the same step, which
    is what the source branch is trained to reproduce (the training loss is the distance to it),
    so the source rows can still leave the call once the attention control ends.

    Once the attention control has ended, nothing of the source branch reaches the target any more
    (the target's learned values come from its own prompt): the source rows leave the call (batch
    4 -> 2 over the last 40 % of the steps at the defaults) and the source latent just repeats the
    target's step, never read again. keep_source runs them to the end (the equality test)."""
    n = schedule.steps
    _, self_layers = layer_selectors(model.unet)
    control = PromptToPromptControl(alignment, self_layers, steps_for(p.tau_c, n), steps_for(p.tau_s, n),
                                    steps_for(p.tau_u, n), new_word_equalizer(model, p))
    control_end = n if keep_source else max(control.cross_steps, control.self_steps, control.uncond_steps)
    values = ValueHook()
    v_steps = steps_for(p.tau_v, n)
    emb = Conditioning.cat([uncond, uncond, c_tgt, c_src])
    emb_target = Conditioning.cat([uncond, c_tgt])
    c_tgt32 = c_tgt.embeds.float()

    blend_hooks = (blend,) if blend is not None else ()

    def predict(x, i, t):
        if i >= control_end:
            values.set(learned.value(i, c_tgt32) if i < v_steps else None, [1])  # [∅, target]
            if blend is not None:
                blend.rows = (1, None)  # the source word's map stays as summed so far
            with attention_hooks(model.unet, values, *blend_hooks):
                u, c = unet_forward(model, torch.cat([x[:1], x[:1]]), t, emb_target).chunk(2)
            return (u + p.guidance * (c - u)).expand_as(x)
        control.step = i
        src_value = learned.value(i, c_src)
        if i < v_steps:
            # The target prompt through this step's learned scale and shift (official): the swapped
            # word's value acts from the first step, the image's look rides on the rest.
            values.set(torch.cat([learned.value(i, c_tgt32), src_value]), [TGT_C, SRC_C])
        else:
            values.set(src_value, [SRC_C])
        if blend is not None:
            blend.rows = (TGT_C, SRC_C)
        # the blend records the target's own maps, before the control replaces them (as P2P's store)
        with attention_hooks(model.unet, values, *blend_hooks, control):
            out = unet_forward(model, torch.cat([x, x]), t, emb)
        u, c = out.chunk(2)
        return u + p.guidance * (c - u)

    after = keep_outside_trajectory(latent_mask, traj, rows=1)  # row 0 is the target
    if blend is not None:
        after = blend.after_step(traj, then=after, rows=1)

    x = torch.cat([traj.noisiest, traj.noisiest])  # [target, source]: previews show the target
    out = denoise(model, schedule, x, predict, reporter, stage="edit", after_step=after)
    return out[:1]


def run(ctx: EditContext, p: StyleDiffusionParams) -> MethodOutput:
    tokens, clip_source = clip_image_tokens(ctx)  # first: a missing CLIP fails before any work
    schedule = ctx.schedule(p.steps)
    traj = invert_cached(ctx, schedule, p.source_prompt)
    learned, trained = learned_values_cached(ctx, p, schedule, traj, tokens, clip_source)
    model = ctx.model
    alignment = align_tokens(model, p.source_prompt, p.prompt)
    blend = local_blend_for(model, p, alignment, tuple(traj.clean.shape[-2:]), schedule.steps)
    latent = edit_latents(model, schedule, traj, learned, model.encode_text(p.source_prompt),
                          model.encode_text(p.prompt), model.encode_text(""), alignment, p, ctx.reporter,
                          ctx.latent_mask(), blend=blend)
    ctx.reporter.stage("decode", 1)
    with torch.no_grad():
        image = vae_decode(model, latent)
    info = {"alignment": alignment.kind, "clip_tokens": int(tokens.shape[1]), "trained": trained,
            "train_iterations": learned.iterations if trained else 0,
            "train_loss_first": sum(learned.first_losses), "train_loss_last": sum(learned.last_losses),
            "local_blend": None if blend is None else blend.report()}
    return MethodOutput(image, info)


METHOD = register(Method(
    name="style-diffusion", label="Reword — change the caption, keep the photo's own look (StyleDiffusion)",
    params=StyleDiffusionParams, run=run,
    stages=("invert", "train", "edit"), needs=("clip",),
    description="Learn how the photo enters cross-attention values from its CLIP embedding, then restyle "
                "it Prompt-to-Prompt style while its structure stays (the first edit of an image trains "
                "for a while; later edits reuse the training)."))
