"""Auxiliary encoders some methods need (CLIP, DINO ViT, BLIP), loaded like every other model:
bundled beside the diffusion model (the demo ships tiny ones), a local folder, or a hub id."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from .errors import ModelUnavailable
from .models import DiffusionModel, download_from_hub_generic, transformers_dtype_kwargs

# kind -> (default hub id, what it is for people)
AUX_DEFAULTS = {
    "clip": ("openai/clip-vit-base-patch16", "a CLIP model (image and text encoder)"),
    "dino": ("facebook/dino-vitb8", "DINO ViT-B/8 (structure features)"),
    "blip": ("Salesforce/blip-image-captioning-base", "BLIP captioner"),
}


@dataclass
class AuxModel:
    kind: str
    source: str
    model: torch.nn.Module
    processor: object = None  # tokenizer for CLIP text, image processor config, …


_lock = threading.Lock()
_cache: dict = {}


def _load_from(kind: str, folder: Path, device, dtype) -> AuxModel:
    from transformers import AutoTokenizer, BlipForConditionalGeneration, BlipProcessor, CLIPModel, ViTModel

    proc = None
    kw = dict(local_files_only=True, **transformers_dtype_kwargs(dtype))
    if kind == "clip":
        model = CLIPModel.from_pretrained(folder, **kw)
        try:
            proc = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError):  # an image-only CLIP folder: callers tokenize with the base model's
            proc = None
    elif kind == "dino":
        model = ViTModel.from_pretrained(folder, add_pooling_layer=False, **kw)
    elif kind == "blip":
        model = BlipForConditionalGeneration.from_pretrained(folder, **kw)
        proc = BlipProcessor.from_pretrained(folder, local_files_only=True)
    else:
        raise ValueError(kind)
    model.requires_grad_(False).eval().to(device)
    return AuxModel(kind, str(folder), model, proc)


def load_aux(kind: str, base: DiffusionModel, source: Optional[str] = None, needed_by: str = "") -> AuxModel:
    """The auxiliary model `kind` for `base`: an explicit source, else one bundled beside the
    diffusion model (resources/models/demo/<kind>), else the default hub id (cache, then download)."""
    default_id, what = AUX_DEFAULTS[kind]
    key = (kind, source, base.model_id, str(base.device))
    with _lock:
        if key in _cache:
            return _cache[key]
        folder: Optional[Path] = None
        if source:
            p = Path(source).expanduser()
            folder = p if p.is_dir() else None
            hub_id = None if folder else source
        else:
            bundled = base.root / kind if base.root else None
            folder = bundled if bundled and bundled.is_dir() else None
            hub_id = None if folder else default_id
        if folder is None:
            try:
                folder = download_from_hub_generic(hub_id)
            except ModelUnavailable as e:
                who = f"{needed_by} needs " if needed_by else "Needs "
                raise ModelUnavailable(f"{who}{what} ('{hub_id}'), which is not available: {e}") from e
        dtype = torch.float32 if base.device.type == "cpu" else base.dtype
        try:
            aux = _load_from(kind, folder, base.device, dtype)
        except (OSError, ValueError) as e:
            raise ModelUnavailable(f"Could not load {what} from {folder}: {str(e).splitlines()[0]}") from e
        _cache[key] = aux
        return aux


def provide_aux(kind: str, base: DiffusionModel, model: torch.nn.Module, processor=None,
                source: Optional[str] = None) -> AuxModel:
    """Make an already built encoder the one `load_aux(kind, base, source)` returns (benchmarks
    with random SD 1.5-sized encoders, tests with tiny ones)."""
    aux = AuxModel(kind, source or f"provided:{kind}", model.requires_grad_(False).eval(), processor)
    with _lock:
        _cache[(kind, source, base.model_id, str(base.device))] = aux
    return aux
