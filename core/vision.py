"""Preparing pictures for the ViT encoders several methods use (CLIP, DINO): one place for the
normalisation constants, reading them from the encoder's own processor, and the resize/crop."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def normalisation(processor, default_mean: Sequence[float], default_std: Sequence[float],
                  source: str | None = None):
    """(mean, std) from an encoder's image processor, or the preprocessor_config.json in its folder
    `source`; else the defaults."""
    proc = processor
    for obj in (proc, getattr(proc, "image_processor", None)):
        mean, std = getattr(obj, "image_mean", None), getattr(obj, "image_std", None)
        if mean is not None and std is not None:
            return tuple(mean), tuple(std)
    cfg = Path(source) / "preprocessor_config.json" if source else None
    if cfg is not None and cfg.is_file():
        try:
            data = json.loads(cfg.read_text())
            if data.get("image_mean") and data.get("image_std"):
                return tuple(data["image_mean"]), tuple(data["image_std"])
        except (OSError, ValueError):
            pass
    return tuple(default_mean), tuple(default_std)


def vit_pixels(pix: torch.Tensor, size: int, mean: Sequence[float], std: Sequence[float],
               dtype: torch.dtype = torch.float32, *, centre_crop: bool = False,
               mode: str = "bilinear") -> torch.Tensor:
    """-1..1 pixels [B,3,H,W] -> a ViT's input at size x size, normalised. Differentiable.

    centre_crop=False stretches the whole picture to the square (every pixel stays seen: losses
    on the picture); True resizes the shorter side to `size` and crops the centre (CLIP's own
    preprocessing: embeddings that match what the encoder saw in training)."""
    x = (pix.float() + 1) / 2
    if centre_crop:
        h, w = x.shape[-2:]
        s = size / min(h, w)
        nh, nw = max(size, round(h * s)), max(size, round(w * s))
        x = F.interpolate(x, size=(nh, nw), mode=mode, align_corners=False, antialias=True).clamp(0, 1)
        top, left = (nh - size) // 2, (nw - size) // 2
        x = x[..., top: top + size, left: left + size]
    elif x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode=mode, align_corners=False, antialias=True)
    m = torch.tensor(mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    sd = torch.tensor(std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return ((x - m) / sd).to(dtype)
