"""What a method's run function receives (`EditContext`) and returns (`MethodOutput`).

Methods import this module, never `core.engine`: the engine imports the registry, which imports
the methods, so a method importing the engine would close a cycle."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping, Optional

import torch

from .cache import LRUCache
from .events import Reporter
from .images import Placement, SourceImage
from .models import DiffusionModel
from .schedule import DDIMSchedule
from .unet_calls import vae_encode

if TYPE_CHECKING:  # only for annotations: importing the engine here would be the cycle above
    from .engine import Engine
    from .registry import Method


@dataclass
class MethodOutput:
    image: torch.Tensor            # [1,3,H,W] in -1..1 at working size
    info: dict = field(default_factory=dict)


@dataclass
class EditContext:
    """Everything a method's run function needs."""

    engine: "Engine"
    model: DiffusionModel
    source: SourceImage
    place: Placement
    image: torch.Tensor                 # [1,3,H,W] -1..1 working canvas, on the model's device
    mask: Optional[torch.Tensor]        # [1,1,H,W] 0..1 at working size, or None (edit everything)
    reporter: Reporter
    method: "Method"
    # Pixel inputs for the method's path fields (a style image taken from a layer), by field name.
    inputs: Mapping[str, SourceImage] = field(default_factory=dict)
    sampler: str = "ddim"  # the request's sampler: ctx.schedule(steps) follows it

    def schedule(self, steps: int) -> DDIMSchedule:
        """The denoising schedule of this edit: DDIM, or a few-step model's LCM/TCD timesteps."""
        return DDIMSchedule(self.model.scheduler_config, steps, self.sampler)

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def image_key(self) -> str:
        return self.source.content_hash() + f"@{self.place.work_w}x{self.place.work_h}"

    def latent_mask(self) -> Optional[torch.Tensor]:
        if self.mask is None:
            return None
        s = self.model.vae_scale
        return torch.nn.functional.interpolate(self.mask, scale_factor=1 / s, mode="area").to(self.device)

    def generator(self, seed: int) -> torch.Generator:
        # CPU generator: identical noise on every device, so a seed means the same picture everywhere.
        return torch.Generator("cpu").manual_seed(int(seed))

    def randn(self, shape, seed: int) -> torch.Tensor:
        return torch.randn(shape, generator=self.generator(seed)).to(self.device)

    def cache(self, name: str, max_items: int = 8) -> LRUCache:
        return self.engine.cache(name, max_items)

    def encode_source(self) -> torch.Tensor:
        """The input's latent, cached per (model, image)."""
        key = (self.model.model_id, str(self.device), self.image_key)
        cache = self.cache("source_latent")
        lat = cache.get(key)
        if lat is None:
            with torch.no_grad():
                lat = vae_encode(self.model, self.image)
            cache.put(key, lat)
        return lat

    def to_input_xy(self, x: float, y: float) -> tuple[float, float]:
        return self.place.to_input(x, y)

    def to_work_xy(self, x: float, y: float) -> tuple[float, float]:
        return self.place.to_work(x, y)
