"""The engine's entry point: `Engine.run(request, events, cancel)` (and `core.run`).

It validates the request, loads (or reuses) the model, prepares the image at working size, calls
the method, and composites the result back to the input's exact size. Front ends (CLI, GUI
worker, benchmarks) all come through here."""
from __future__ import annotations

import time
from typing import Optional

import numpy as np
import torch

from . import images
from .cache import LRUCache
from .context import EditContext, MethodOutput
from .errors import InvalidInput, out_of_memory_hint
from .events import CancelToken, EventSink, Reporter
from .images import Placement
from .models import DiffusionModel, ModelManager, ModelSpec
from .registry import get_method
from .request import EditRequest, EditResult
from .unet_calls import counters


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
        params, source, mask = request.params, request.image, request.mask

        reporter = Reporter(events, cancel)
        reporter.stage("load", 1)
        model = self.load_model(request.model)
        if model.family not in method.families:
            label = model.family_info.label
            raise InvalidInput(f"{method.plain_name} does not work with {label} models"
                               + (f": {method.family_note}" if method.family_note else "")
                               + f". Use a model of another family ({', '.join(method.families)}).")
        place = images.plan_working_size(*source.size, model.native_size, model.grid)
        work = images.to_working_tensor(source, place).to(model.device)
        reporter.preview_transform = _preview_crop(place)
        work_mask = images.mask_to_working(mask, place).to(model.device) if mask is not None else None
        ctx = EditContext(self, model, source, place, work, work_mask, reporter, method, request.inputs,
                          request.sampler)
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
                          time.perf_counter() - started, reporter.timer.close(), out.info, passes,
                          request.origin, model.family)


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
