"""Every UNet and VAE pass goes through here, so passes can be counted (tests, benchmarks) and
dtypes handled in one place: latents stay float32, the network runs in the model's precision."""
from __future__ import annotations

from collections import Counter

import torch

from .models import DiffusionModel


def counters(model: DiffusionModel) -> Counter:
    c = getattr(model, "_pass_counters", None)
    if c is None:
        c = Counter()
        model._pass_counters = c  # type: ignore[attr-defined]
    return c


def unet_forward(model: DiffusionModel, x: torch.Tensor, t: int | torch.Tensor, emb: torch.Tensor,
                 **kwargs) -> torch.Tensor:
    c = counters(model)
    c["unet"] += 1
    c["unet_samples"] += x.shape[0]
    c[f"unet_b{x.shape[0]}"] += 1  # per batch size: benchmarks price passes by batch
    if torch.is_grad_enabled():
        # A forward that builds a graph (to be back-propagated). Callers run plain passes under
        # no_grad, so this counts exactly the passes that pay for a backward.
        c["unet_grad"] += 1
        c[f"unet_grad_b{x.shape[0]}"] += 1
    if not torch.is_tensor(t):
        t = torch.tensor(t, device=model.device)
    out = model.unet(x.to(model.dtype), t, encoder_hidden_states=emb.to(model.dtype), return_dict=False,
                     **kwargs)[0]
    return out.float()


def vae_decode(model: DiffusionModel, latents: torch.Tensor, clamp: bool = True) -> torch.Tensor:
    c = counters(model)
    c["vae_decode"] += 1
    if torch.is_grad_enabled() and latents.requires_grad:
        c["vae_decode_grad"] += 1
    return model.decode_latents(latents, clamp=clamp)


def vae_encode(model: DiffusionModel, image: torch.Tensor) -> torch.Tensor:
    counters(model)["vae_encode"] += 1
    return model.encode_image(image)
