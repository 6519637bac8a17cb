"""Every UNet and VAE pass goes through here, so passes can be counted (tests, benchmarks) and
dtypes handled in one place: latents stay float32, the network runs in the model's precision."""
from __future__ import annotations

from collections import Counter
from typing import Union

import torch

from .conditioning import Conditioning, as_conditioning
from .models import DiffusionModel


def counters(model: DiffusionModel) -> Counter:
    c = getattr(model, "_pass_counters", None)
    if c is None:
        c = Counter()
        model._pass_counters = c  # type: ignore[attr-defined]
    return c


def unet_forward(model: DiffusionModel, x: torch.Tensor, t: int | torch.Tensor,
                 cond: Union[Conditioning, torch.Tensor], **kwargs) -> torch.Tensor:
    """One UNet pass on x [B,C,h,w] conditioned on `cond` (rows matching x, or one row for all).
    For families with added conditioning (SDXL) the pooled embedding and the size/crop time ids go
    in `added_cond_kwargs`: the time ids say "a picture of the working size, uncropped", which is
    what the engine feeds (the input resized to the working canvas)."""
    c = counters(model)
    c["unet"] += 1
    c["unet_samples"] += x.shape[0]
    c[f"unet_b{x.shape[0]}"] += 1  # per batch size: benchmarks price passes by batch
    if torch.is_grad_enabled():
        # A forward that builds a graph (to be back-propagated). Callers run plain passes under
        # no_grad, so this counts exactly the passes that pay for a backward.
        c["unet_grad"] += 1
        c[f"unet_grad_b{x.shape[0]}"] += 1
    cond = as_conditioning(cond)
    if len(cond) != x.shape[0]:
        cond = cond.expand(x.shape[0])
    if not torch.is_tensor(t):
        t = torch.tensor(t, device=model.device)
    if getattr(model.unet.config, "time_cond_proj_dim", None):
        # An LCM-distilled UNet takes its guidance scale as an embedding instead of a second branch.
        kwargs.setdefault("timestep_cond", guidance_embedding(LCM_GUIDANCE, model.unet.config.time_cond_proj_dim,
                                                              x.shape[0]).to(x.device, model.dtype))
    if model.family_info.added_conditioning:
        if cond.pooled is None:
            raise ValueError(f"{model.family_info.label} needs the pooled text embedding: pass the "
                             "Conditioning from model.encode_text")
        kwargs["added_cond_kwargs"] = {"text_embeds": cond.pooled.to(model.dtype), "time_ids": size_time_ids(model, x)}
    out = model.unet(x.to(model.dtype), t, encoder_hidden_states=cond.embeds.to(model.dtype), return_dict=False,
                     **kwargs)[0]
    return out.float()


LCM_GUIDANCE = 8.5  # the guidance LCM checkpoints are distilled for (their pipeline's default)


def guidance_embedding(w: float, dim: int, batch: int) -> torch.Tensor:
    """The sinusoidal embedding of (w − 1) an LCM-distilled UNet reads as `timestep_cond`
    (the same construction as its timestep embedding, on w·1000)."""
    half = dim // 2
    freqs = torch.exp(torch.arange(half, dtype=torch.float32) * -(torch.log(torch.tensor(10000.0)) / (half - 1)))
    arg = torch.full((batch, 1), (w - 1.0) * 1000.0) * freqs[None]
    emb = torch.cat([torch.sin(arg), torch.cos(arg)], dim=1)
    return torch.nn.functional.pad(emb, (0, 1)) if dim % 2 else emb


def size_time_ids(model: DiffusionModel, x: torch.Tensor) -> torch.Tensor:
    """SDXL's micro-conditioning: (original h, w, crop top, left, target h, w) in pixels, per row."""
    h, w = x.shape[-2] * model.vae_scale, x.shape[-1] * model.vae_scale
    ids = torch.tensor([h, w, 0, 0, h, w], dtype=model.dtype, device=x.device)
    return ids.expand(x.shape[0], -1)


def vae_decode(model: DiffusionModel, latents: torch.Tensor, clamp: bool = True) -> torch.Tensor:
    c = counters(model)
    c["vae_decode"] += 1
    if torch.is_grad_enabled() and latents.requires_grad:
        c["vae_decode_grad"] += 1
    return model.decode_latents(latents, clamp=clamp)


def vae_encode(model: DiffusionModel, image: torch.Tensor) -> torch.Tensor:
    counters(model)["vae_encode"] += 1
    return model.encode_image(image)
