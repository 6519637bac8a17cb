"""What a front end asks the engine for (`EditRequest`) and what comes back (`EditResult`).

Both are frozen and hold everything: the pixels (not a path that may change under the job), the
validated parameters, the model spec and an opaque `origin` tag that only the front end reads
(the GUI puts its document and layer ids there to route the result back). Nothing is patched
after submit. Both serialise to JSON (`to_dict`): pixels inline as base64 PNG, or as content
hashes only (`pixels=False`) for manifests and logs."""
from __future__ import annotations

import base64
import dataclasses
import io
import json
import types
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Union

import numpy as np
from PIL import Image

from . import images
from .errors import InvalidInput
from .images import ImageLike, SourceImage
from .models import ModelSpec
from .params import MethodParams

MaskLike = Union[ImageLike, np.ndarray]


def _frozen_mapping(values: Optional[Mapping]) -> Mapping:
    return types.MappingProxyType(dict(values or {}))


def _as_mask(mask: Optional[MaskLike], size: tuple[int, int]) -> Optional[np.ndarray]:
    """float32 HxW in 0..1 (white/1 = editable), read-only; or None."""
    if mask is None:
        return None
    if isinstance(mask, np.ndarray) and mask.dtype != np.uint8:
        arr = np.clip(mask.astype(np.float32), 0, 1)
        if arr.ndim != 2 or (arr.shape[1], arr.shape[0]) != size:
            raise InvalidInput(f"The mask must have the image's size ({size[0]}x{size[1]}).")
        if arr.max() <= 0:
            raise InvalidInput("The mask is empty: paint the region to edit.")
    else:
        arr = images.load_mask(mask, size)
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    arr.flags.writeable = False
    return arr


def check_sampler(method, sampler: str) -> None:
    """The sampler exists and holds up with the method (also checked by a batch before it runs)."""
    from .schedule import SAMPLERS

    if sampler not in SAMPLERS:
        raise InvalidInput(f"Unknown sampler '{sampler}': use {', '.join(SAMPLERS)}.")
    if sampler not in method.samplers:
        raise InvalidInput(f"{method.plain_name} does not hold up with the few-step {sampler.upper()} sampler: "
                           f"use {' or '.join(method.samplers)} for it.")


@dataclass(frozen=True, eq=False)
class EditRequest:
    """One edit. `params` may be given as a dict (validated into the method's dataclass here), the
    image and mask as paths, PIL images or arrays (decoded here, once)."""

    method: str
    image: Union[ImageLike, SourceImage]
    params: Union[MethodParams, Mapping] = field(default_factory=dict)
    mask: Optional[MaskLike] = None  # white/1 = editable; float array 0..1 or an image of the input's size
    model: ModelSpec = field(default_factory=ModelSpec)
    # Pixel inputs for the method's path-kind fields, by field name (a style image taken from a
    # layer): the engine reads these instead of the file the field names.
    inputs: Mapping[str, Union[ImageLike, SourceImage]] = field(default_factory=dict)
    origin: Mapping[str, Any] = field(default_factory=dict)  # opaque to the engine: routing for the front end
    sampler: str = "ddim"  # ddim, or lcm / tcd for few-step models (core/schedule.py)

    def __post_init__(self) -> None:
        from .registry import get_method

        method = get_method(self.method)
        check_sampler(method, self.sampler)
        params = self.params
        if isinstance(params, Mapping):
            params = method.params.from_dict(dict(params))
        elif not isinstance(params, method.params):
            raise InvalidInput(f"Parameters for {method.name} must be {method.params.__name__}.")
        params.validate()
        source = self.image if isinstance(self.image, SourceImage) else images.load_image(self.image)
        kinds = {f.name: f.metadata["kind"] for f in method.params.fields()}
        inputs = {}
        for name, value in dict(self.inputs or {}).items():
            if kinds.get(name) != "path":
                raise InvalidInput(f"{method.name} has no image field named {name!r}.")
            inputs[name] = value if isinstance(value, SourceImage) else images.load_image(value, name=name)
        set_ = object.__setattr__
        set_(self, "method", method.name)
        set_(self, "params", params)
        set_(self, "image", source)
        set_(self, "mask", _as_mask(self.mask, source.size))
        set_(self, "inputs", _frozen_mapping(inputs))
        set_(self, "origin", _frozen_mapping(self.origin))

    def replace(self, **changes) -> "EditRequest":
        return dataclasses.replace(self, **changes)

    def content_key(self) -> str:
        """A stable hash of everything that decides the result (not the origin)."""
        from .cache import content_key

        return content_key(self.method, self.sampler, json.dumps(self.params.to_dict(), sort_keys=True),
                           self.image.content_hash(), self.mask, dataclasses.astuple(self.model),
                           tuple(sorted((k, v.content_hash()) for k, v in self.inputs.items())))

    # ---- serialisation ---------------------------------------------------------------------------
    def to_dict(self, pixels: bool = True) -> dict:
        out = dict(method=self.method, params=self.params.to_dict(), model=dataclasses.asdict(self.model),
                   origin=_jsonable(dict(self.origin)), sampler=self.sampler, image=_image_dict(self.image, pixels),
                   inputs={k: _image_dict(v, pixels) for k, v in self.inputs.items()},
                   mask=None if self.mask is None else _mask_dict(self.mask, pixels))
        return out

    @classmethod
    def from_dict(cls, data: Mapping) -> "EditRequest":
        try:
            image = _image_from(data["image"])
            mask = None if data.get("mask") is None else _mask_from(data["mask"])
            inputs = {k: _image_from(v) for k, v in (data.get("inputs") or {}).items()}
            model = ModelSpec(**dict(data.get("model") or {}))
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidInput(f"Not a serialised edit request ({type(e).__name__}: {e}).") from None
        return cls(data["method"], image, dict(data.get("params") or {}), mask=mask, model=model,
                   inputs=inputs, origin=dict(data.get("origin") or {}), sampler=data.get("sampler", "ddim"))


@dataclass(frozen=True, eq=False)
class EditResult:
    image: Image.Image        # at the input's exact size (RGBA when the input had alpha)
    method: str
    model_id: str
    params: Mapping
    seconds: float
    stages: Mapping
    info: Mapping = field(default_factory=dict)    # method-specific results (e.g. drag "handles")
    passes: Mapping = field(default_factory=dict)  # UNet/VAE pass counts of this run
    origin: Mapping = field(default_factory=dict)  # the request's origin, for routing
    family: str = ""                               # the model's family (sd1, sd2, sdxl)

    @property
    def width(self) -> int:
        return self.image.size[0]

    @property
    def height(self) -> int:
        return self.image.size[1]

    def to_dict(self, pixels: bool = False) -> dict:
        out = dict(method=self.method, model=self.model_id, family=self.family, params=_jsonable(dict(self.params)),
                   seconds=round(self.seconds, 3), stages={k: round(v, 3) for k, v in self.stages.items()},
                   info=_jsonable(dict(self.info)), passes=dict(self.passes), origin=_jsonable(dict(self.origin)),
                   width=self.width, height=self.height)
        if pixels:
            out["image"] = _png_b64(self.image)
        return out

    @classmethod
    def from_dict(cls, data: Mapping, origin: Optional[Mapping] = None) -> "EditResult":
        """The inverse of to_dict(pixels=True) (a result coming back from another process);
        `origin` replaces the serialised one with the caller's own mapping."""
        try:
            image = Image.open(io.BytesIO(base64.b64decode(data["image"])))
            image.load()
        except (KeyError, TypeError, ValueError, OSError) as e:
            raise InvalidInput(f"Not a serialised edit result ({type(e).__name__}: {e}).") from None
        return cls(image, data["method"], data["model"], _frozen_mapping(data.get("params")),
                   float(data.get("seconds", 0.0)), _frozen_mapping(data.get("stages")),
                   _frozen_mapping(data.get("info")), _frozen_mapping(data.get("passes")),
                   _frozen_mapping(data.get("origin") if origin is None else origin), data.get("family", ""))


# ---- pixels in JSON ---------------------------------------------------------------------------------

def _png_b64(im: Image.Image) -> str:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _image_dict(src: SourceImage, pixels: bool) -> dict:
    d = dict(name=src.name, width=src.size[0], height=src.size[1], sha256=src.content_hash())
    if pixels:
        arr = src.rgb if src.alpha is None else np.dstack([src.rgb, src.alpha])
        d["png"] = _png_b64(Image.fromarray(np.ascontiguousarray(arr)))
    return d


def _image_from(d: Mapping) -> SourceImage:
    if "png" not in d:
        raise ValueError("the image was serialised without its pixels")
    pixels = images.decode_file(io.BytesIO(base64.b64decode(d["png"])), "The serialised image", ("PNG",))
    src = images.load_image(pixels, name=d.get("name", "image"))
    if d.get("sha256") and src.content_hash() != d["sha256"]:
        raise ValueError("the image's pixels do not match its hash")
    return src


def _mask_dict(mask: np.ndarray, pixels: bool) -> dict:
    from .cache import content_key

    d = dict(width=mask.shape[1], height=mask.shape[0], sha256=content_key(mask))
    if pixels:  # float32 exactly (.npy bytes): a soft mask survives the trip bit for bit
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(mask, dtype=np.float32), allow_pickle=False)
        d["npy"] = base64.b64encode(buf.getvalue()).decode("ascii")
    return d


def _mask_from(d: Mapping) -> np.ndarray:
    if "npy" not in d:
        raise ValueError("the mask was serialised without its pixels")
    arr = np.load(io.BytesIO(base64.b64decode(d["npy"])), allow_pickle=False)
    if arr.dtype != np.float32 or arr.ndim != 2:
        raise ValueError("the mask is not a 2-D float32 array")
    return arr


def _jsonable(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return str(v)
