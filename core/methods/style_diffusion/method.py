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
  of the steps; self-attention maps injected from the source for the first τ_s (at the resolutions
  of SD's ≤16×16 layers, as P2P does);
- the target's value input taken from the learned embedding (aligned to the target's tokens) for
  the first τ_v of the steps, its own prompt embedding afterwards;
- "improved unconditional branch": Prompt-to-Prompt edits only the conditional half of CFG; for the
  first τ_u of the steps the same control (source → target cross- and self-attention maps) is also
  applied to the unconditional half, so the negative branch keeps the source's layout too.
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
from ...events import Reporter
from ...models import DiffusionModel
from ...params import MethodParams, param
from ...previews import latent_preview
from ...registry import Method, register
from ...sampling import Trajectory, denoise, invert_cached, keep_outside_trajectory
from ...schedule import DDIMSchedule
from ...unet_calls import unet_forward, vae_decode
from ...vision import CLIP_MEAN, CLIP_STD, normalisation, vit_pixels

ATTN_REG_WEIGHT = 1.0      # weight of the attention regularisation against the latent loss
EARLY_STOP = (1e-5, 2e-5)  # stop a step's iterations when loss < a + b·i (looser at later steps)


@dataclass(frozen=True, kw_only=True)
class StyleDiffusionParams(MethodParams):
    source_prompt: str = param("", "What the image shows now (optional): the reconstruction is learned for "
                               "this prompt, and the target prompt is aligned to it word by word.", kind="text",
                               label="Picture shows")
    prompt: str = param("", "What the image should become: the source prompt with words swapped, added or "
                        "restyled (e.g. 'a cat' -> 'a watercolor cat').", kind="text", required=True,
                        label="New caption")
    tau_v: float = param(0.5, "Fraction of the steps whose cross-attention values come from the image "
                         "(higher keeps more of the original look).", min=0.0, max=1.0, label="Original look kept")
    tau_c: float = param(0.6, "Fraction of the steps that copy the source's cross-attention maps "
                         "(higher keeps the layout more strictly).", min=0.0, max=1.0, advanced=True,
                         label="Layout kept")
    tau_s: float = param(0.6, "Fraction of the steps that inject the source's self-attention maps "
                         "(structure).", min=0.0, max=1.0, advanced=True, label="Structure kept")
    tau_u: float = param(0.0, "Fraction of the steps that also control the unconditional branch of "
                         "guidance (keeps the layout under strong guidance).", min=0.0, max=1.0, advanced=True,
                         label="Layout kept under strong guidance")
    guidance: float = param(7.5, "Classifier-free guidance scale (the reconstruction is learned for it).",
                            min=1.0, max=30.0, label="Prompt strength")
    steps: int = param(30, "DDIM steps for inversion, training and editing.", min=2, max=200)
    train_iters_scale: int = param(100, "Optimisation iterations at the first step (step i gets about "
                                   "scale·e^(-0.1·i)); more reconstructs more faithfully, slower.",
                                   min=1, max=1000, advanced=True, label="Learning effort")
    train_lr: float = param(1e-2, "Learning rate of the mapping networks (decays linearly over the steps).",
                            min=1e-5, max=1.0, advanced=True, label="Learning rate")
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
        return cond.float() * scale + shift


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


def _content_length(ids: list[int], eos: int) -> int:
    """Number of tokens between BOS and the first EOS."""
    for j in range(1, len(ids)):
        if ids[j] == eos:
            return j - 1
    return len(ids) - 1


def _lcs_pairs(a: list[int], b: list[int]) -> list[tuple[int, int]]:
    """Index pairs (i in a, j in b) of a longest common subsequence."""
    n, m = len(a), len(b)
    table = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n - 1, -1, -1):
        for j in range(m - 1, -1, -1):
            table[i][j] = table[i + 1][j + 1] + 1 if a[i] == b[j] else max(table[i + 1][j], table[i][j + 1])
    pairs, i, j = [], 0, 0
    while i < n and j < m:
        if a[i] == b[j]:
            pairs.append((i, j))
            i, j = i + 1, j + 1
        elif table[i + 1][j] >= table[i][j + 1]:
            i += 1
        else:
            j += 1
    return pairs


def align_tokens(model: DiffusionModel, source: str, target: str) -> Alignment:
    """Prompt-to-Prompt token alignment. Equal token counts: word swap (position j ↔ j, every map
    replaced). Otherwise refinement: content tokens matched by longest common subsequence; tokens only
    in the target keep their own maps; BOS ↔ BOS; EOS and padding aligned by offset."""
    ids = model.tokenize([source, target])
    src, tgt = ids[0].tolist(), ids[1].tolist()
    length = len(tgt)
    eos = model.tokenizer.eos_token_id
    ns, nt = _content_length(src, eos), _content_length(tgt, eos)
    if ns == nt:
        return Alignment(torch.arange(length), torch.ones(length), "word swap")
    mapping = torch.zeros(length, dtype=torch.long)
    alphas = torch.zeros(length)
    mapping[0], alphas[0] = 0, 1.0
    for i, j in _lcs_pairs(src[1: 1 + ns], tgt[1: 1 + nt]):
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
    """(regularised cross-attention layers, self-attention layers controlled by P2P). P2P injects
    self-attention only at ≤16×16 in SD 1.x: the regularised level and every deeper one."""
    lvl = regularised_level(unet)
    up = len(unet.config.up_block_types) - 1 - lvl

    def reg(layer: LayerInfo) -> bool:
        return layer.is_cross and ((layer.place == "down" and layer.block == lvl)
                                   or (layer.place == "up" and layer.block == up))

    def self_ctrl(layer: LayerInfo) -> bool:
        return layer.kind == "attn1" and ((layer.place == "down" and layer.block >= lvl)
                                          or layer.place == "mid" or (layer.place == "up" and layer.block <= up))

    return reg, self_ctrl


# UNet batch layout while editing: target and source, unconditional then conditional.
TGT_U, SRC_U, TGT_C, SRC_C = 0, 1, 2, 3


class PromptToPromptControl(AttentionHook):
    """Replaces the target branch's attention maps by the source branch's in one batched call."""

    def __init__(self, alignment: Alignment, self_layers: Callable[[LayerInfo], bool],
                 cross_steps: int, self_steps: int, uncond_steps: int):
        self.alignment = alignment
        self.self_layers = self_layers
        self.cross_steps, self.self_steps, self.uncond_steps = cross_steps, self_steps, uncond_steps
        self.step = 0

    def applies(self, call: AttnCall) -> bool:
        return call.layer.is_cross or self.self_layers(call.layer)

    def wants_probs(self, call: AttnCall) -> bool:
        limit = self.cross_steps if call.layer.is_cross else self.self_steps
        return self.step < max(limit, self.uncond_steps)

    def probs(self, call, p):
        cross = call.layer.is_cross
        out = p.clone()
        if self.step < (self.cross_steps if cross else self.self_steps):
            out[TGT_C] = aligned(p[SRC_C], p[TGT_C], self.alignment, -1) if cross else p[SRC_C]
        if self.step < self.uncond_steps:
            out[TGT_U] = p[SRC_U]  # both unconditional prompts are the same: identity alignment
        return out


# ---- training ------------------------------------------------------------------------------------

@dataclass
class LearnedValues:
    """Trained mapping networks of one image and the value embedding they give at each step."""

    mappers: nn.ModuleList
    values: torch.Tensor                 # [steps, L, D] float32: value input of the conditional branch
    iterations: int = 0
    first_losses: list = field(default_factory=list)  # per step: loss before optimising
    last_losses: list = field(default_factory=list)   # per step: loss of the kept embedding


def iterations_at(step: int, scale: int) -> int:
    return math.ceil(scale * math.exp(-0.1 * step))


def train_value_mappers(model: DiffusionModel, schedule: DDIMSchedule, traj: Trajectory, tokens: torch.Tensor,
                        cond: torch.Tensor, uncond: torch.Tensor, guidance: float, iters_scale: int, lr: float,
                        seed: int = 0, reporter: Optional[Reporter] = None,
                        attn_weight: float = ATTN_REG_WEIGHT) -> LearnedValues:
    """Learn one mapping network per DDIM step so that denoising with guidance, with the learned
    value embedding in the conditional branch, follows the inversion trajectory; attention maps of
    the SD-16×16-level cross-attention layers are kept close to the plain prompt's. Each step's
    network starts from the previous step's (the first from `seed`); Adam's learning rate decays
    linearly over the steps; a step stops early once its loss is low."""
    n = schedule.steps
    length, dim = cond.shape[1], cond.shape[2]
    reg_layer, _ = layer_selectors(model.unet)
    gen = torch.Generator("cpu").manual_seed(int(seed))
    proto = ValueMapper(tokens.shape[1], length).reset(gen).to(model.device)
    tokens, cond32 = tokens.float(), cond.embeds.float()
    mappers = nn.ModuleList()
    values = torch.zeros((n, length, dim), device=model.device)
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
        step_lr = lr * (1 - i / n)
        opt = torch.optim.Adam(mapper.parameters(), lr=step_lr)
        n_iter = iterations_at(i, iters_scale)
        threshold = EARLY_STOP[0] + EARLY_STOP[1] * i
        best = None  # (loss, value, x_next, x0, mapper state): the best iterate is the one kept
        for it in range(n_iter + 1):
            if reporter:
                reporter.cancel.check()
            with torch.set_grad_enabled(it < n_iter):  # the last evaluation is never back-propagated
                value = mapper.value(tokens, cond32)
                hook.set(value)
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
                    loss = loss + attn_weight * sum(F.mse_loss(m, r) for m, r in zip(maps, ref_maps)) / len(maps)
                lv = float(loss.detach())
                if it == 0:
                    first.append(lv)
                if best is None or lv < best[0]:
                    best = (lv, value.detach(), x_next.detach(), x0.detach(),
                            {k: v.detach().clone() for k, v in mapper.state_dict().items()})
                if it == n_iter or lv < threshold:
                    break
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total_iters += 1
        lv, value, x, x0, state = best
        mapper.load_state_dict(state)
        last.append(lv)
        mappers.append(mapper.requires_grad_(False))
        values[i] = value[0]
        if reporter:
            reporter.step(i + 1, n, latent_preview(model, x0))
    return LearnedValues(mappers, values, total_iters, first, last)


def learned_values_cached(ctx: EditContext, p: StyleDiffusionParams, schedule: DDIMSchedule,
                          traj: Trajectory, tokens: torch.Tensor, clip_source: str) -> tuple[LearnedValues, bool]:
    """The trained mapping networks for (model, image, source prompt, training settings); trains
    only on a cache miss. Returns (learned, trained_now)."""
    key = content_key("style-diffusion", ctx.model.model_id, str(ctx.device), ctx.image_key, clip_source,
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

def steps_for(tau: float, n: int) -> int:
    return int(round(tau * n))


def edit_latents(model: DiffusionModel, schedule: DDIMSchedule, traj: Trajectory, learned: LearnedValues,
                 c_src: torch.Tensor, c_tgt: torch.Tensor, uncond: torch.Tensor, alignment: Alignment,
                 p: StyleDiffusionParams, reporter: Optional[Reporter] = None,
                 latent_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Denoise target and source together (one UNet call of 4 per step) and return the target's
    clean latent. Outside the mask the target follows the inversion trajectory."""
    n = schedule.steps
    _, self_layers = layer_selectors(model.unet)
    control = PromptToPromptControl(alignment, self_layers, steps_for(p.tau_c, n), steps_for(p.tau_s, n),
                                    steps_for(p.tau_u, n))
    values = ValueHook()
    v_steps = steps_for(p.tau_v, n)
    emb = Conditioning.cat([uncond, uncond, c_tgt, c_src])
    c_tgt32 = c_tgt.embeds.float()

    def predict(x, i, t):
        control.step = i
        src_value = learned.values[i: i + 1]
        if i < v_steps:
            tgt_value = aligned(src_value, c_tgt32, alignment, 1)
            values.set(torch.cat([tgt_value, src_value]), [TGT_C, SRC_C])
        else:
            values.set(src_value, [SRC_C])
        with attention_hooks(model.unet, values, control):
            out = unet_forward(model, torch.cat([x, x]), t, emb)
        u, c = out.chunk(2)
        return u + p.guidance * (c - u)

    after = keep_outside_trajectory(latent_mask, traj, rows=1)  # row 0 is the target
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
    latent = edit_latents(model, schedule, traj, learned, model.encode_text(p.source_prompt),
                          model.encode_text(p.prompt), model.encode_text(""), alignment, p, ctx.reporter,
                          ctx.latent_mask())
    ctx.reporter.stage("decode", 1)
    with torch.no_grad():
        image = vae_decode(model, latent)
    info = {"alignment": alignment.kind, "clip_tokens": int(tokens.shape[1]), "trained": trained,
            "train_iterations": learned.iterations if trained else 0,
            "train_loss_first": sum(learned.first_losses), "train_loss_last": sum(learned.last_losses)}
    return MethodOutput(image, info)


METHOD = register(Method(
    name="style-diffusion", label="Reword — change the caption, keep the photo's own look (StyleDiffusion)",
    params=StyleDiffusionParams, run=run,
    stages=("invert", "train", "edit"), needs=("clip",),
    description="Learn how the photo enters cross-attention values from its CLIP embedding, then restyle "
                "it Prompt-to-Prompt style while its structure stays (the first edit of an image trains "
                "for a while; later edits reuse the training)."))
