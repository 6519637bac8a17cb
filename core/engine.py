"""The engine's entry point: `Engine.run(request, events, cancel)` (and `core.run`).

It validates the request, loads (or reuses) the model, prepares the image at working size, calls
the method, and composites the result back to the input's exact size. Front ends (CLI, GUI
worker, benchmarks) all come through here."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import numpy as np
import torch
from PIL import Image

from . import images
from .cache import LRUCache, content_key
from .errors import Cancelled, InvalidInput, MalleableError, out_of_memory_hint
from .events import CancelToken, EventSink, Reporter
from .images import ImageLike, Placement, SourceImage
from .models import DiffusionModel, ModelManager, ModelSpec
from .params import MethodParams
from .registry import Method, get_method
from .unet_calls import counters, vae_encode


@dataclass
class EditRequest:
    method: str
    image: Union[ImageLike, SourceImage]
    params: Union[MethodParams, dict] = field(default_factory=dict)
    mask: Optional[Union[ImageLike, np.ndarray]] = None  # white/1 = editable; float array or image
    model: ModelSpec = field(default_factory=ModelSpec)


@dataclass
class EditResult:
    image: Image.Image        # at the input's exact size (RGBA when the input had alpha)
    method: str
    model_id: str
    params: dict
    seconds: float
    stages: dict
    info: dict = field(default_factory=dict)   # method-specific results (e.g. drag "handles")
    passes: dict = field(default_factory=dict)  # UNet/VAE pass counts of this run

    @property
    def width(self) -> int:
        return self.image.size[0]

    @property
    def height(self) -> int:
        return self.image.size[1]


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
    method: Method

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


class Engine:
    """Owns the resident model and the content-keyed caches. One per worker thread."""

    def __init__(self) -> None:
        self.models = ModelManager()
        self._caches: dict[str, LRUCache] = {}

    def cache(self, name: str, max_items: int = 8) -> LRUCache:
        if name not in self._caches:
            self._caches[name] = LRUCache(max_items)
        return self._caches[name]

    def clear_caches(self) -> None:
        for c in self._caches.values():
            c.clear()

    def load_model(self, spec: ModelSpec, progress=None) -> DiffusionModel:
        try:
            return self.models.get(spec, progress)
        except torch.cuda.OutOfMemoryError:
            raise out_of_memory_hint(spec.device) from None

    def run(self, request: EditRequest, events: Optional[EventSink] = None,
            cancel: Optional[CancelToken] = None) -> EditResult:
        started = time.perf_counter()
        method = get_method(request.method)
        params = request.params
        if isinstance(params, dict):
            params = method.params.from_dict(params)
        elif not isinstance(params, method.params):
            raise InvalidInput(f"Parameters for {method.name} must be {method.params.__name__}.")
        params.validate()
        source = request.image if isinstance(request.image, SourceImage) else images.load_image(request.image)
        mask = None
        if request.mask is not None:
            if isinstance(request.mask, np.ndarray) and request.mask.dtype != np.uint8:
                mask = np.clip(request.mask.astype(np.float32), 0, 1)
                if mask.shape != source.rgb.shape[:2]:
                    raise InvalidInput("The mask must have the image's size.")
                if mask.max() <= 0:
                    raise InvalidInput("The mask is empty: paint the region to edit.")
            else:
                mask = images.load_mask(request.mask, source.size)

        reporter = Reporter(events, cancel)
        reporter.stage("load", 1)
        model = self.load_model(request.model)
        place = images.plan_working_size(*source.size, model.native_size, model.grid)
        work = images.to_working_tensor(source, place).to(model.device)
        reporter.preview_transform = _preview_crop(place)
        work_mask = images.mask_to_working(mask, place).to(model.device) if mask is not None else None
        ctx = EditContext(self, model, source, place, work, work_mask, reporter, method)
        before = dict(counters(model))
        try:
            out: MethodOutput = method.run(ctx, params)
            reporter.cancel.check()
        except torch.cuda.OutOfMemoryError:
            raise out_of_memory_hint(str(model.device)) from None
        except RuntimeError as e:
            if "out of memory" in str(e).lower():
                raise out_of_memory_hint(str(model.device)) from None
            raise
        finally:
            if model.device.type == "cuda":
                torch.cuda.empty_cache()
        edited = images.from_working_tensor(out.image, place)
        result_image = images.composite(source, edited, mask)
        after = counters(model)
        passes = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
        return EditResult(result_image, method.name, model.model_id, params.to_dict(),
                          time.perf_counter() - started, reporter.timer.close(), out.info, passes)


def _preview_crop(place: Placement):
    def crop(preview: np.ndarray) -> np.ndarray:
        sy = preview.shape[0] / place.work_h
        sx = preview.shape[1] / place.work_w
        return preview[: max(1, round(place.inner_h * sy)), : max(1, round(place.inner_w * sx))]
    return crop


_default_engine: Optional[Engine] = None


def default_engine() -> Engine:
    global _default_engine
    if _default_engine is None:
        _default_engine = Engine()
    return _default_engine


def run(request: EditRequest, events: Optional[EventSink] = None,
        cancel: Optional[CancelToken] = None) -> EditResult:
    return default_engine().run(request, events, cancel)
