"""`pnp`: Plug-and-Play diffusion features (Tumanyan et al., CVPR 2023).

Text-guided restyling that keeps the picture's layout. The image is DDIM-inverted with the source
prompt (cached: a second edit of the same image reuses the trajectory). Denoising then runs, at
every step, one batched UNet call

    [source latent at t (from the inversion trajectory), target uncond, target cond (, source-prompt)]

and copies the source branch's
  * spatial features of decoder layer 4 (SD 1.x `up_blocks[1].resnets[1]`): its *residual branch*,
    the output of its `conv2` before the skip connection is added, for the first τ_f of the steps
    (both official implementations inject there; replacing the block's whole output would also
    overwrite the target's own skip path and cast the source's colours over the result), and
  * self-attention queries and keys (not values) of decoder layers 4-11 (SD 1.x `attn1` of
    `up_blocks[1].attentions[1,2]`, `up_blocks[2..3].attentions[0..2]`) for the first τ_A,
into every target row. Other UNet shapes get the decoder layers at the same relative depth.

Negative prompting: the unconditional prediction becomes α_i·ε(∅) + (1−α_i)·ε(source prompt) with
the official schedules α_i = α·s_i: constant s_i = 1, linear s_i from 1 at the first step to 0 at
the last, exp s_i = e^(−6·i/(n−1)). So "linear" at α = 1 starts as plain guidance and ends pushing
fully away from the source prompt. The source-prompt row joins the same UNet call (batch 4) only
on steps where 1−α_i ≠ 0.

Local blending (not in the official PnP; Prompt-to-Prompt's `LocalBlend`, core/local_blend.py):
with a source prompt, the words the prompt changed (longest common subsequence of the tokens: "a
red circle" → "a blue circle" changes "red"/"blue") have their cross-attention maps summed, the
source's in the source branch, the prompt's in the target's, and from a fifth of the steps on the
target latent outside their union is reset to the source trajectory. PnP restyles the whole
picture by design; an editor's user who names one thing to change expects the rest to stay
(measured on ShapesBench in the README). Without a source prompt nothing tells what to keep, and
the whole picture is restyled as in the official method.

With a mask, the latent outside it is reset to the source trajectory after every step (blended
latent diffusion): the model then generates the edited region against the real surroundings, so the
engine's feathered composite cross-fades between nearly identical pixels instead of between the
restyled and the original picture (no halo or ghosting at the edge).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from ...conditioning import Conditioning
from ...attention import AttentionHook, AttnCall, attention_hooks
from ...context import EditContext, MethodOutput
from ...errors import InvalidInput
from ...events import Reporter
from ...models import DiffusionModel
from ...params import MethodParams, param
from ...registry import Method, register
from ...sampling import Trajectory, denoise, invert_cached, keep_outside_trajectory
from ...schedule import DDIMSchedule
from ...unet_calls import unet_forward, vae_decode
from ...layer_maps import LayerMap, layer_map
from ...local_blend import LocalBlend, changed_prompt_positions
from ...unet_layout import corresponding_index, decoder_layers, forward_hook

# SD 1.x decoder layers (numbered resnet by resnet, 0 = lowest resolution) named by the paper.
SD1_FEATURE_LAYER = 4
SD1_ATTENTION_LAYERS = range(4, 12)


@dataclass(frozen=True, kw_only=True)
class PnPParams(MethodParams):
    prompt: str = param("", "The target: what the picture should become (e.g. 'a marble statue of a horse').",
                        kind="text", required=True, label="Prompt")
    source_prompt: str = param("", "What the picture shows now (optional). Used for the inversion and as "
                                   "the negative prompt when negative alpha is below 1.", kind="text",
                               label="Picture shows")
    feature_injection: float = param(
        0.8, "τ_f: fraction of the steps (from the start) that inject the source's spatial features (the "
             "residual branch of decoder layer 4, before its skip connection, as the official code). "
             "Higher keeps more structure; 0.5 for sketches and silhouettes.", min=0.0, max=1.0,
        label="Structure kept")
    attention_injection: float = param(
        0.5, "τ_A: fraction of the steps that inject the source's self-attention queries and keys.",
        min=0.0, max=1.0, label="Layout kept")
    negative_alpha: float = param(
        1.0, "α: the unconditional branch is α·ε(empty) + (1−α)·ε(source prompt) (lower pushes harder "
             "away from the source's look). With the constant schedule 1 = plain guidance (real photos); "
             "0.75 with the linear schedule suits generated images.",
        min=0.0, max=1.0, advanced=True, label="Empty-prompt share")
    negative_schedule: str = param(
        "constant", "How α evolves over the steps (the official schedules): constant; linear from α at the "
                    "first step to 0 at the last; exp, α·e^(−6·i/(n−1)). Linear and exp push away from the "
                    "source prompt even at α = 1, so they need a source prompt.",
        choices=("constant", "linear", "exp"), advanced=True, label="Share over the steps")
    guidance: float = param(7.5, "Classifier-free guidance scale (10 suits real photos).", min=1.0, max=30.0,
                            label="Prompt strength")
    local_blend: bool = param(True, "Keep the rest: with a source prompt, only where the words that differ "
                                    "between it and the prompt are seen may the picture change (Prompt-to-"
                                    "Prompt's local blending; not in the official PnP). Off, or with no source "
                                    "prompt, the whole picture is restyled: untick it for a restyle of the whole "
                                    "picture ('a photo' -> 'a watercolour').", label="Only change what the words name")

    def check(self) -> None:
        if self.negative_schedule == "constant" and self.negative_alpha < 1.0 and not self.source_prompt.strip():
            raise InvalidInput("negative_alpha below 1 pushes away from the source prompt, which is empty: "
                               "describe the picture in source_prompt, or set negative_alpha to 1.")
        if self.negative_schedule != "constant" and not self.source_prompt.strip():
            raise InvalidInput(f"The {self.negative_schedule} negative schedule pushes away from the source prompt, "
                               "which is empty: describe the picture in source_prompt, or use the constant schedule.")


# ---- which layers ------------------------------------------------------------------------------

@dataclass(frozen=True)
class InjectionPlan:
    feature_layer: int                       # decoder layer index whose residual branch is injected
    feature_module: torch.nn.Module          # that resnet's conv2: the residual branch's last op
    feature_name: str                        # "up_blocks.B.resnets.S.conv2"
    attention_layers: frozenset              # {(up block, attention index)} whose attn1 q/k are injected
    attention_names: tuple


def injection_plan(unet, lmap: Optional[LayerMap] = None) -> InjectionPlan:
    """The family's layers (core/layer_maps.py: SD 1.x/2.x by the paper's names, SDXL at the same
    latent resolutions); for other UNet shapes the layers at the same relative decoder depth."""
    layers = decoder_layers(unet)
    n = len(layers)
    if lmap is not None:
        feat = next(lay for lay in layers if (lay.block, lay.sub) == lmap.pnp_feature)
        attn = [lay for lay in layers if (lay.block, lay.sub) in lmap.pnp_attention and lay.attention_prefix]
    else:
        feat = layers[corresponding_index(SD1_FEATURE_LAYER, n)]
        chosen = sorted({corresponding_index(i, n) for i in SD1_ATTENTION_LAYERS})
        attn = [layers[i] for i in chosen if layers[i].attention_prefix is not None]
    return InjectionPlan(
        feature_layer=feat.index, feature_module=residual_branch_output(feat.resnet),
        feature_name=f"up_blocks.{feat.block}.resnets.{feat.sub}.conv2",
        attention_layers=frozenset((lay.block, lay.sub) for lay in attn),
        attention_names=tuple(f"{lay.attention_prefix}.*.attn1" for lay in attn))


def residual_branch_output(resnet: torch.nn.Module) -> torch.nn.Module:
    """The module whose output is a diffusers ResnetBlock2D's residual branch just before
    `(shortcut(input) + branch) / output_scale_factor`: its conv2 (dropout comes before it)."""
    conv2 = getattr(resnet, "conv2", None)
    if conv2 is None:
        raise TypeError(f"{type(resnet).__name__} has no conv2: PnP needs diffusers ResnetBlock2D decoder layers")
    return conv2


def injected_steps(fraction: float, steps: int) -> int:
    """How many of the first steps inject: τ·steps rounded down (0.8·50 = 40, 0.5·50 = 25)."""
    return max(0, min(steps, math.floor(fraction * steps + 1e-6)))


def negative_alpha_at(p: PnPParams, i: int, steps: int) -> float:
    """α_i = α·s_i with the official plug-and-play schedules s (1 → 0 over the steps, or constant 1)."""
    frac = i / (steps - 1) if steps > 1 else 0.0
    if p.negative_schedule == "linear":
        return p.negative_alpha * (1.0 - frac)
    if p.negative_schedule == "exp":
        return p.negative_alpha * math.exp(-6.0 * frac)
    return p.negative_alpha


def _from_source(x: torch.Tensor) -> torch.Tensor:
    """Every row replaced by row 0 (the source branch)."""
    return x[:1].expand_as(x).contiguous()


class QKInjection(AttentionHook):
    """Copies the source row's self-attention queries and keys into the target rows (values stay)."""

    def __init__(self, layers: frozenset):
        self.layers = layers
        self.active = False

    def applies(self, call: AttnCall) -> bool:
        lay = call.layer
        return (self.active and lay.place == "up" and lay.kind == "attn1"
                and (lay.block, lay.index) in self.layers)

    def qkv(self, call, q, k, v):
        return _from_source(q), _from_source(k), v


class FeatureInjection:
    """Forward hook on the resnet's conv2: the residual branch of every target row becomes the
    source row's; each row's own skip connection is then added to it."""

    def __init__(self) -> None:
        self.active = False

    def __call__(self, module, inputs, output):
        return _from_source(output) if self.active else None


# ---- the edit ----------------------------------------------------------------------------------

def changed_words_blend(model: DiffusionModel, p: PnPParams, latent_hw: tuple[int, int],
                        steps: int) -> Optional[LocalBlend]:
    """Local blending of the words the prompt changed against the source prompt (the source's in
    the source branch, the prompt's in the target's); None when off, without a source prompt or
    when the two prompts say the same."""
    if not p.local_blend or not p.source_prompt.strip():
        return None
    src_pos, tgt_pos, _ = changed_prompt_positions(model, p.source_prompt, p.prompt)
    if not src_pos and not tgt_pos:
        return None
    return LocalBlend.for_unet(model.unet, src_pos, tgt_pos, latent_hw, steps)


def pnp_denoise(model: DiffusionModel, schedule: DDIMSchedule, traj: Trajectory, p: PnPParams,
                reporter: Optional[Reporter] = None, keep_mask: Optional[torch.Tensor] = None,
                observers: Sequence[AttentionHook] = ()) -> tuple[torch.Tensor, dict]:
    """Denoise from the trajectory's x_T with the target prompt, injecting from the source branch.

    keep_mask ([1,1,h,w] latent-size, 1 = editable): outside it the latent is reset to the source
    trajectory after every step. observers: attention hooks run after the injection (tests)."""
    n = schedule.steps
    plan = injection_plan(model.unet, layer_map(model))
    n_feat = injected_steps(p.feature_injection, n)
    n_attn = injected_steps(p.attention_injection, n)
    source_emb, uncond_emb, cond_emb = model.encode_text([p.source_prompt, "", p.prompt]).chunk(3)
    cfg = p.guidance != 1.0
    # ε(source prompt) only matters when it differs from ε(∅).
    negative_possible = cfg and p.source_prompt != ""
    # Rows of one UNet call: the source trajectory's (only while something is injected from it),
    # ε(∅) and ε(target) for the target latent (without guidance, only the target's), and
    # ε(source prompt) for the target latent when the negative schedule mixes it in. After the
    # injection window the source row has nothing left to give, and is dropped (batch 3 → 2).
    target_rows = [uncond_emb, cond_emb] if cfg else [cond_emb]
    n_inject = max(n_feat, n_attn)
    keep_source = bool(observers)  # observers (tests) read the source row at every step
    embs = {(src, neg): Conditioning.cat(([source_emb] if src else []) + target_rows + ([source_emb] if neg else []))
            for src in (False, True) for neg in (False, True)}
    qk = QKInjection(plan.attention_layers)
    feat = FeatureInjection()
    blend = changed_words_blend(model, p, tuple(traj.clean.shape[-2:]), n)
    batches: dict[int, int] = {}

    def predict(x: torch.Tensor, i: int, t: int) -> torch.Tensor:
        alpha = negative_alpha_at(p, i, n)
        negative = negative_possible and alpha != 1.0
        with_source = keep_source or i < n_inject
        emb = embs[with_source, negative]
        rows = len(emb)
        batches[rows] = batches.get(rows, 0) + 1
        feat.active = i < n_feat
        qk.active = i < n_attn
        target = x.expand(rows - with_source, *x.shape[1:])
        if blend is not None:  # the conditional target row; the source row over the injection window
            blend.rows = (int(with_source) + int(cfg), 0 if i < n_inject else None)
        latents = torch.cat([traj.at(i).to(x.device), target]) if with_source else target
        out = unet_forward(model, latents, t, emb)[int(with_source):]
        if not cfg:
            return out[0:1]
        uncond, cond = out[0:1], out[1:2]
        if negative:
            uncond = alpha * uncond + (1.0 - alpha) * out[2:3]
        return uncond + p.guidance * (cond - uncond)

    after_step = keep_outside_trajectory(keep_mask, traj)
    if blend is not None:
        after_step = blend.after_step(traj, then=after_step)
    hooks = [qk] + ([blend] if blend is not None else []) + list(observers)
    with attention_hooks(model.unet, *hooks), forward_hook(plan.feature_module, feat):
        latent = denoise(model, schedule, traj.noisiest, predict, reporter, stage="edit",
                         after_step=after_step)
    info = {"feature_layer": plan.feature_name, "feature_steps": n_feat,
            "attention_layers": list(plan.attention_names), "attention_steps": n_attn,
            "unet_batches": {f"batch {b}": c for b, c in sorted(batches.items())},
            "local_blend": None if blend is None else blend.report()}
    return latent, info


def run(ctx: EditContext, p: PnPParams) -> MethodOutput:
    schedule = ctx.schedule(p.steps)
    traj = invert_cached(ctx, schedule, p.source_prompt)
    latent, info = pnp_denoise(ctx.model, schedule, traj, p, ctx.reporter, keep_mask=ctx.latent_mask())
    with torch.no_grad():
        image = vae_decode(ctx.model, latent)
    return MethodOutput(image, info)


METHOD = register(Method(
    name="pnp", label="Restyle — keep the layout, change the look (Plug-and-Play)",
    params=PnPParams, run=run, stages=("invert", "edit"),
    samplers=("ddim", "lcm", "tcd"),
    description="Restyle the picture from a text prompt while keeping its layout: the source's decoder "
                "features and self-attention are plugged into the generation (Plug-and-Play, 2023)."))
