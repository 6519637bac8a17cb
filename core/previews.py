"""Cheap previews: the predicted clean latent projected to RGB with a linear map (no VAE pass)."""
from __future__ import annotations

import numpy as np
import torch

from .models import DiffusionModel


def latent_preview(model: DiffusionModel, latents: torch.Tensor) -> np.ndarray:
    """[1,C,h,w] latents -> HxWx3 uint8 at latent resolution (first item of the batch)."""
    with torch.no_grad():
        lat = latents[0].detach().float()
        factors = torch.tensor(model.latent_rgb, dtype=torch.float32, device=lat.device)  # [C,3]
        bias = torch.tensor(model.latent_rgb_bias, dtype=torch.float32, device=lat.device)
        rgb = torch.einsum("chw,cr->hwr", lat, factors) + bias
        rgb = ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return rgb.cpu().numpy()
