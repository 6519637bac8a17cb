"""Measures on ViT encoders, as PIE-Bench computes them.

- structure distance (Tumanyan et al.'s, PIE-Bench's first column): the keys of the last attention
  layer of a DINO ViT (ViT-B/8 in the paper), their cosine self-similarity matrix for each picture,
  and the mean squared difference of the two matrices (PIE-Bench prints it x 10^3). Lower keeps
  the layout better, whatever the colours.
- CLIP score: 100 x cosine of CLIP's image and text embeddings, floored at 0 (PIE-Bench uses
  ViT-L/14), of the whole picture and of the edited region alone (the rest set to black).

Both use the encoders the model folder ships (the demo's are tiny random networks: the numbers are
computable, not meaningful) or those given with --dino / --clip; where none loads, the caller
reports the measure as unavailable."""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from core.aux_models import AuxModel
from core.errors import ModelUnavailable
from core.vision import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD, normalisation


def _side(v) -> int:
    return int(v[0] if isinstance(v, (list, tuple)) else v)


def _pixels(rgb: np.ndarray, size: int, mean, std, device, dtype) -> torch.Tensor:
    x = torch.tensor(np.asarray(rgb, np.float32)).permute(2, 0, 1)[None] / 255.0
    x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    return ((x - m) / s).to(device=device, dtype=dtype)


class StructureDistance:
    def __init__(self, aux: AuxModel):
        self.model = aux.model
        self.size = _side(self.model.config.image_size)
        self.mean, self.std = normalisation(None, IMAGENET_MEAN, IMAGENET_STD, source=aux.source)
        keys = [m for name, m in self.model.named_modules()
                if isinstance(m, torch.nn.Linear) and name.endswith(("attention.key", "k_proj"))]
        if not keys:
            raise ModelUnavailable(f"{type(self.model).__name__} has no attention keys: structure distance needs "
                                   "a ViT such as facebook/dino-vitb8.")
        self.last_key = keys[-1]
        p = next(self.model.parameters())
        self.device, self.dtype = p.device, p.dtype

    @torch.no_grad()
    def self_similarity(self, rgb: np.ndarray) -> torch.Tensor:
        captured = []
        handle = self.last_key.register_forward_hook(lambda _m, _i, out: captured.append(out))
        try:
            self.model(pixel_values=_pixels(rgb, self.size, self.mean, self.std, self.device, self.dtype))
        finally:
            handle.remove()
        k = F.normalize(captured[-1][0, 1:].float(), dim=-1)  # patch tokens, [CLS] dropped
        return k @ k.T

    def __call__(self, a: np.ndarray, b: np.ndarray) -> float:
        return float(F.mse_loss(self.self_similarity(a), self.self_similarity(b)))


class ClipScore:
    def __init__(self, aux: AuxModel):
        if aux.processor is None or not callable(aux.processor):
            raise ModelUnavailable(f"the CLIP model in {aux.source} has no tokenizer: the CLIP score needs one.")
        self.model = aux.model
        self.tokenizer = aux.processor
        self.size = _side(self.model.config.vision_config.image_size)
        self.mean, self.std = normalisation(None, CLIP_MEAN, CLIP_STD, source=aux.source)
        p = next(self.model.parameters())
        self.device, self.dtype = p.device, p.dtype

    @staticmethod
    def _pooled(out) -> torch.Tensor:
        return out if torch.is_tensor(out) else out.pooler_output

    @torch.no_grad()
    def __call__(self, rgb: np.ndarray, text: str, region: Optional[np.ndarray] = None) -> float:
        if region is not None:
            rgb = rgb * region[..., None].astype(rgb.dtype)
        img = self._pooled(self.model.get_image_features(
            pixel_values=_pixels(rgb, self.size, self.mean, self.std, self.device, self.dtype)))
        limit = int(self.model.config.text_config.max_position_embeddings)
        tok = self.tokenizer([text], padding=True, truncation=True, max_length=limit, return_tensors="pt")
        txt = self._pooled(self.model.get_text_features(input_ids=tok["input_ids"].to(self.device),
                                                        attention_mask=tok["attention_mask"].to(self.device)))
        cos = F.cosine_similarity(img.float(), txt.float()).item()
        return max(100.0 * cos, 0.0)
