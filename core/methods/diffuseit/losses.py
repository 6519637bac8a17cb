"""DiffuseIT's feature extractors and losses: DINO ViT keys and [CLS] for structure and image style,
CLIP for text-guided style. Everything here is differentiable w.r.t. the image (pixels in -1..1)
and knows nothing about diffusion."""
from __future__ import annotations

import random
from typing import Optional

import torch
import torch.nn.functional as F

from ...aux_models import AuxModel
from ...errors import ModelUnavailable
from ...vision import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD, normalisation, vit_pixels

NCE_TEMPERATURE = 0.07
CUTOUT_MIN = 0.5  # smallest cut-out side, as a fraction of the image's shorter side


def _side(value) -> int:
    return int(value[0] if isinstance(value, (tuple, list)) else value)


def last_key_projection(vit: torch.nn.Module) -> torch.nn.Module:
    """The key projection (Linear) of the last attention layer of a transformers ViT."""
    found = [m for name, m in vit.named_modules()
             if isinstance(m, torch.nn.Linear) and (name.endswith("k_proj") or name.endswith("attention.key"))]
    if not found:
        raise ModelUnavailable(f"{type(vit).__name__} has no attention key projection: DiffuseIT needs a ViT "
                               "(e.g. facebook/dino-vitb8).")
    return found[-1]


class DinoEncoder:
    """Last-layer attention keys (all tokens, heads concatenated) and last-layer [CLS] of a DINO ViT."""

    def __init__(self, aux: AuxModel):
        self.aux = aux
        self.model = aux.model
        self.size = _side(self.model.config.image_size)
        self.mean, self.std = normalisation(aux.processor, IMAGENET_MEAN, IMAGENET_STD, aux.source)
        self.key_proj = last_key_projection(self.model)
        self.dtype = next(self.model.parameters()).dtype

    def __call__(self, pix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """pix [B,3,H,W] in -1..1 -> (patch keys [B,N,D], [CLS] [B,D]), float32."""
        captured = []
        handle = self.key_proj.register_forward_hook(lambda _m, _i, out: captured.append(out))
        try:
            out = self.model(pixel_values=vit_pixels(pix, self.size, self.mean, self.std, self.dtype))
        finally:
            handle.remove()
        keys = captured[-1].float()[:, 1:]  # drop the [CLS] token: patches only
        return keys, out.last_hidden_state[:, 0].float()


def _pooled(out) -> torch.Tensor:
    return out if torch.is_tensor(out) else out.pooler_output


class ClipEncoder:
    """Normalised CLIP image and text embeddings."""

    def __init__(self, aux: AuxModel):
        self.aux = aux
        self.model = aux.model
        self.size = _side(self.model.config.vision_config.image_size)
        self.mean, self.std = normalisation(aux.processor, CLIP_MEAN, CLIP_STD, aux.source)
        self.dtype = next(self.model.parameters()).dtype

    def image(self, pix: torch.Tensor) -> torch.Tensor:
        """pix [B,3,H,W] in -1..1 (any size: resized) -> [B,P] unit vectors, float32."""
        x = vit_pixels(pix, self.size, self.mean, self.std, self.dtype)
        return F.normalize(_pooled(self.model.get_image_features(pixel_values=x)).float(), dim=-1)

    @torch.no_grad()
    def text(self, texts: list[str]) -> torch.Tensor:
        tok = self.aux.processor
        if tok is None or not callable(tok):
            raise ModelUnavailable(f"The CLIP model in {self.aux.source} has no tokenizer: DiffuseIT's text "
                                   "guidance needs one; use a full CLIP folder or hub id.")
        limit = int(self.model.config.text_config.max_position_embeddings)
        ids = tok(texts, padding=True, truncation=True, max_length=limit, return_tensors="pt")
        out = self.model.get_text_features(input_ids=ids["input_ids"].to(self.model.device),
                                           attention_mask=ids["attention_mask"].to(self.model.device))
        return F.normalize(_pooled(out).float(), dim=-1)


# ---- losses ----------------------------------------------------------------------------------------

def self_similarity(keys: torch.Tensor) -> torch.Tensor:
    """[B,N,D] -> [B,N,N] cosine self-similarity of the tokens."""
    k = F.normalize(keys, dim=-1)
    return k @ k.transpose(-1, -2)


def self_similarity_loss(keys_src: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """||S(x_src) - S(x)||_F^2 divided by the number of entries (the official weighting's scale):
    zero when the structure matches, whatever the appearance."""
    return F.mse_loss(self_similarity(keys), self_similarity(keys_src))


def patch_nce_loss(keys_src: torch.Tensor, keys: torch.Tensor, tau: float = NCE_TEMPERATURE) -> torch.Tensor:
    """Patch-wise InfoNCE: each patch of x should match the source patch at the same position
    (positive) rather than the source's other patches (negatives)."""
    q = F.normalize(keys, dim=-1)
    k = F.normalize(keys_src, dim=-1)
    logits = q @ k.transpose(-1, -2) / tau  # [B,N,N]
    b, n, _ = logits.shape
    target = torch.arange(n, device=logits.device).expand(b, n)
    return F.cross_entropy(logits.reshape(b * n, n), target.reshape(-1))


def cls_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared [CLS] distance, averaged over the feature dimension."""
    return F.mse_loss(a, b)


def range_loss(pix: torch.Tensor) -> torch.Tensor:
    """Penalises pixels outside -1..1 (the predicted clean image is decoded unclamped)."""
    return (pix - pix.clamp(-1, 1)).pow(2).mean()


def cutouts(pix: torch.Tensor, n: int, size: int, rng: random.Random) -> torch.Tensor:
    """n augmented crops of pix [1,3,H,W], each resized to size x size: the whole picture first, then
    random squares of CUTOUT_MIN..1 of the shorter side at random places, half of them mirrored."""
    h, w = pix.shape[-2:]
    side = min(h, w)
    out = [F.interpolate(pix, size=(size, size), mode="bilinear", align_corners=False, antialias=True)]
    for _ in range(n - 1):
        s = max(1, int(side * rng.uniform(CUTOUT_MIN, 1.0)))
        y, x = rng.randint(0, h - s), rng.randint(0, w - s)
        c = pix[..., y:y + s, x:x + s]
        if rng.random() < 0.5:
            c = c.flip(-1)
        out.append(F.interpolate(c, size=(size, size), mode="bilinear", align_corners=False, antialias=True))
    return torch.cat(out)[:n]


def text_direction(trg_text: torch.Tensor, src_image: torch.Tensor,
                   src_text: Optional[torch.Tensor], image_weight: float = 0.2,
                   text_weight: float = 0.4) -> torch.Tensor:
    """DiffuseIT's CLIP target: E_T(target) + 0.2 E_I(source) - 0.4 E_T(source text), normalised."""
    d = trg_text + image_weight * src_image
    if src_text is not None:
        d = d - text_weight * src_text
    return F.normalize(d, dim=-1)


def directional_clip_loss(image_embs: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """Mean over the cut-outs of 1 - cos(E_I(cut-out), direction)."""
    return (1 - image_embs @ direction.reshape(-1)).mean()
