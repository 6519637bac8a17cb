"""Image normalisation in and out of the engine.

In: any Pillow-readable file or array -> 8-bit RGB plus optional alpha, EXIF orientation applied.
Working size: the model's native size, aspect kept, padded (never stretched) to the latent grid.
Out: the edit brought back to the input's exact size; with a mask, pixels outside it (past a
small feather) are the input's own, bit for bit, and the input's alpha is restored.
"""
from __future__ import annotations

import hashlib
import os
import re
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

from .errors import InvalidInput
from .files import atomic_write, unreadable
from .formats import OUTPUT_FORMATS, READ_FORMATS, describe_outputs

MIN_SIDE = 16
# The one pixel limit for every picture Malleable decodes: CLI inputs, pictures the editor opens,
# layers inside projects, style images, masks.
MAX_PIXELS = 100_000_000
FEATHER_PX = 3

# Pillow's own decompression-bomb guard raises above 2 × MAX_IMAGE_PIXELS: set it to our limit
# exactly, never above, so a plain Image.open anywhere in the process refuses what ours refuse.
# Its warning (between half the limit and the limit) is not a bomb by our rule and is silenced.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS // 2
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

# Modes every caller converts safely; anything else a file declares is converted here or refused.
_KNOWN_MODES = {"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr",
                "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
# What hostile or damaged bytes make Pillow's decoders raise (besides its own error types).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError,
                  KeyError, TypeError, OverflowError, ZeroDivisionError, UnicodeDecodeError,
                  RuntimeError, AttributeError)
READ_NAMES = "PNG, JPEG, WebP, TIFF or BMP"

ImageLike = Union[str, os.PathLike, Image.Image, np.ndarray]


@dataclass(frozen=True, eq=False)
class SourceImage:
    """The input as the engine sees it: RGB uint8 HxWx3 and alpha uint8 HxW (or None). Immutable:
    the arrays are made read-only, so a request that holds one can be shared between threads."""

    rgb: np.ndarray
    alpha: Optional[np.ndarray] = None
    name: str = "image"

    def __post_init__(self) -> None:
        for arr in (self.rgb, self.alpha):
            if arr is not None and arr.flags.writeable:
                arr.flags.writeable = False

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)"""
        return self.rgb.shape[1], self.rgb.shape[0]

    def content_hash(self) -> str:
        """sha256 of the RGB pixels (alpha is restored from the input, never edited), computed once."""
        cached = self.__dict__.get("_hash")
        if cached is None:
            h = hashlib.sha256()
            h.update(str(self.rgb.shape).encode())
            h.update(np.ascontiguousarray(self.rgb).tobytes())
            cached = h.hexdigest()[:32]
            object.__setattr__(self, "_hash", cached)
        return cached


def _to_8bit_rgb_alpha(im: Image.Image) -> tuple[np.ndarray, Optional[np.ndarray]]:
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if arr.max() > 255 or mode.startswith("I;16") else 255.0
        gray = np.clip(np.round(arr / top * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2), None
    if mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        gray = np.clip(np.round(arr * 255.0 if arr.max() <= 1.0 else arr), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2), None
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in im.info)
    if has_alpha:
        rgba = np.asarray(im.convert("RGBA"))
        alpha = rgba[..., 3].copy()
        if alpha.min() == 255:
            alpha = None  # fully opaque: nothing to restore
        return np.ascontiguousarray(rgba[..., :3]), alpha
    return np.ascontiguousarray(np.asarray(im.convert("RGB"))), None


def too_large_message(what: str, w: int, h: int) -> str:
    return (f"{what} is {w}x{h} ({w * h / 1e6:.0f} MP): the limit is {MAX_PIXELS // 1_000_000} megapixels; "
            "downscale it first.")


def check_size(w: int, h: int, what: str = "Image", min_side: int = MIN_SIDE) -> None:
    if w < min_side or h < min_side:
        raise InvalidInput(f"{what} is {w}x{h}: both sides must be at least {min_side} pixels.")
    if w * h > MAX_PIXELS:
        raise InvalidInput(too_large_message(what, w, h))


def decode_file(src: Union[str, os.PathLike, BinaryIO], what: str = "The image",
                formats: tuple[str, ...] = READ_FORMATS) -> Image.Image:
    """The one way Malleable decodes a picture (a path or a binary file object), for the CLI, the
    editor and project layers alike:
      - only the formats in `formats` (core.formats.READ_FORMATS by default) are tried, so a
        PostScript or other exotic file, whatever its name, never reaches its decoder (Ghostscript);
      - the size is checked from the header against MAX_PIXELS before any pixel is decoded;
      - the first frame is decoded, EXIF orientation applied, and an unusual mode converted.
    Any failure is an InvalidInput whose message starts with `what`."""
    try:
        with Image.open(src, formats=list(formats)) as im:
            w, h = im.size
            if w < 1 or h < 1:
                raise InvalidInput(f"{what} is damaged: it declares a size of {w}x{h}.")
            if w * h > MAX_PIXELS:
                raise InvalidInput(too_large_message(what, w, h))
            im.load()
            out = ImageOps.exif_transpose(im) or im
            if out.mode not in _KNOWN_MODES:
                out = out.convert("RGBA" if "A" in out.getbands() else "RGB")
            if out is im:
                out = im.copy()  # the file closes when the with-block ends
            return out
    except InvalidInput:
        raise
    except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
        raise InvalidInput(f"{what} {unreadable(e, 'picture')}") from None
    except UnidentifiedImageError:
        raise InvalidInput(f"{what} is not a picture Malleable reads: use {READ_NAMES}.") from None
    except Image.DecompressionBombError as e:
        # Pillow's guard (set to our limit) fired while parsing the header; it names the pixel count.
        found = re.search(r"\((\d+) pixels\)", str(e))
        size = f"{int(found.group(1)) / 1e6:.0f} MP" if found else f"more than {MAX_PIXELS // 1_000_000} MP"
        raise InvalidInput(f"{what} is {size}: the limit is {MAX_PIXELS // 1_000_000} megapixels; "
                           "downscale it first.") from None
    except MemoryError:
        raise InvalidInput(f"There is not enough memory to open {what}.") from None
    except _DECODE_ERRORS as e:
        raise InvalidInput(f"{what} is damaged or truncated ({_short(e)}).") from None


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    text = text if len(text) <= 80 else text[:77] + "..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def open_pil(src: Union[ImageLike, BinaryIO], what: str = "Image", min_side: int = MIN_SIDE) -> Image.Image:
    """A picture for the engine, decoded under the one policy (decode_file), at least `min_side`.
    `src` may also be a binary file object (a layer inside a project archive), named by `what`."""
    if isinstance(src, Image.Image):
        return ImageOps.exif_transpose(src)
    if isinstance(src, np.ndarray):
        return Image.fromarray(src)
    if not hasattr(src, "read") and not Path(src).is_file():
        raise InvalidInput(f"{what} file not found: {src}")
    im = decode_file(src, _label(src, what))
    check_size(*im.size, what=_label(src, what), min_side=min_side)
    return im


def _label(src, what: str) -> str:
    """How messages name a picture: "Image photo.png" for a file, `what` itself for a stream."""
    if hasattr(src, "read"):
        return what
    return f"{what} {Path(src).name}"


def load_image(src: ImageLike, name: str | None = None) -> SourceImage:
    im = open_pil(src)
    rgb, alpha = _to_8bit_rgb_alpha(im)
    h, w = rgb.shape[:2]
    check_size(w, h)
    if name is None:
        name = Path(src).name if isinstance(src, (str, os.PathLike)) else "image"
    return SourceImage(rgb, alpha, name)


def load_rgba(src: Union[ImageLike, BinaryIO], what: str = "Image",
              formats: tuple[str, ...] = READ_FORMATS) -> np.ndarray:
    """HxWx4 uint8 (alpha 255 where the picture has none), decoded under the one policy
    (decode_file) and converted exactly as `load_image` converts (16-bit, float and palette rules,
    EXIF orientation): the editor and project files read through this, so a picture has the same
    pixels in the GUI as in the CLI. No minimum size: a small picture still opens as a layer (the
    engine refuses it only when it is edited)."""
    if isinstance(src, Image.Image):
        im = ImageOps.exif_transpose(src)
    elif isinstance(src, np.ndarray):
        im = Image.fromarray(src)
    else:
        im = decode_file(src, _label(src, what), formats)
    try:
        rgb, alpha = _to_8bit_rgb_alpha(im)
    except _DECODE_ERRORS as e:  # a mode the conversions cannot handle
        raise InvalidInput(f"{_label(src, what)} cannot be converted to RGB ({_short(e)}).") from None
    if alpha is None:
        alpha = np.full(rgb.shape[:2], 255, np.uint8)
    return np.ascontiguousarray(np.dstack([rgb, alpha]))


def load_mask(src: ImageLike, size: tuple[int, int]) -> np.ndarray:
    """A mask as float32 HxW in 0..1 (white = editable). It must match the input's size."""
    im = open_pil(src, what="Mask")
    if im.size != size:
        raise InvalidInput(f"The mask is {im.size[0]}x{im.size[1]} but the image is {size[0]}x{size[1]}: "
                           "they must be the same size.")
    if im.mode in ("RGBA", "LA") and np.asarray(im.getchannel("A")).min() < 255:
        arr = np.asarray(im.getchannel("A"), dtype=np.float32) / 255.0
    else:
        arr = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    if arr.max() <= 0.0:
        raise InvalidInput("The mask is empty (all black): paint the region to edit in white.")
    return arr


# ---- working size -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Placement:
    """Where the resized input sits inside the padded working canvas."""

    work_w: int
    work_h: int
    inner_w: int
    inner_h: int
    scale: float  # working pixels per input pixel

    def to_work(self, x: float, y: float) -> tuple[float, float]:
        """Input-image pixel coordinates -> working-canvas pixel coordinates."""
        return x * self.inner_w / self.src_w, y * self.inner_h / self.src_h

    def to_input(self, x: float, y: float) -> tuple[float, float]:
        return x * self.src_w / self.inner_w, y * self.src_h / self.inner_h

    src_w: int = 0
    src_h: int = 0


def plan_working_size(w: int, h: int, native: int, grid: int) -> Placement:
    """Scale so the longer side is `native`, keep the aspect, pad up to multiples of `grid`."""
    scale = native / max(w, h)
    inner_w = max(1, round(w * scale))
    inner_h = max(1, round(h * scale))
    work_w = max(grid, -(-inner_w // grid) * grid)
    work_h = max(grid, -(-inner_h // grid) * grid)
    return Placement(work_w, work_h, inner_w, inner_h, scale, w, h)


def to_working_tensor(img: SourceImage, place: Placement) -> torch.Tensor:
    """[1,3,H,W] float32 in -1..1, resized (Lanczos) and edge-padded to the working canvas."""
    im = Image.fromarray(img.rgb)
    if (place.inner_w, place.inner_h) != img.size:
        im = im.resize((place.inner_w, place.inner_h), Image.LANCZOS)
    arr = np.asarray(im, dtype=np.float32) / 127.5 - 1.0
    pad = ((0, place.work_h - place.inner_h), (0, place.work_w - place.inner_w), (0, 0))
    arr = np.pad(arr, pad, mode="edge")
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)[None]


def mask_to_working(mask: np.ndarray, place: Placement, grid_scale: int = 1) -> torch.Tensor:
    """[1,1,h,w] float mask at working size divided by `grid_scale` (e.g. the VAE factor for latents).
    The padding is outside the picture, so it is never editable."""
    im = Image.fromarray((mask * 255).astype(np.uint8))
    im = im.resize((place.inner_w, place.inner_h), Image.BILINEAR)
    arr = np.asarray(im, dtype=np.float32) / 255.0
    arr = np.pad(arr, ((0, place.work_h - place.inner_h), (0, place.work_w - place.inner_w)))
    t = torch.from_numpy(arr)[None, None]
    if grid_scale > 1:
        t = F.interpolate(t, size=(place.work_h // grid_scale, place.work_w // grid_scale), mode="area")
    return t


def from_working_tensor(x: torch.Tensor, place: Placement) -> np.ndarray:
    """[1,3,H,W] in -1..1 -> uint8 HxWx3 at the input's exact size."""
    arr = ((x[0].detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
    arr = arr[: place.inner_h, : place.inner_w]
    im = Image.fromarray(np.ascontiguousarray(arr))
    if im.size != (place.src_w, place.src_h):
        im = im.resize((place.src_w, place.src_h), Image.LANCZOS)
    return np.asarray(im)


def feathered(mask: np.ndarray, feather: int = FEATHER_PX) -> np.ndarray:
    """Mask grown by `feather` px with a soft edge: 1 inside the mask, 0 beyond the feather."""
    if feather <= 0:
        return (mask > 0).astype(np.float32) * mask
    im = Image.fromarray((np.clip(mask, 0, 1) * 255).astype(np.uint8))
    grown = im.filter(ImageFilter.MaxFilter(2 * feather + 1))
    soft = grown.filter(ImageFilter.GaussianBlur(feather / 2))
    out = np.maximum(np.asarray(soft, dtype=np.float32) / 255.0, mask)
    # Outside the grown region nothing may leak, not even blur tails.
    out[np.asarray(grown) == 0] = 0.0
    return out


def composite(src: SourceImage, edited_rgb: np.ndarray, mask: Optional[np.ndarray]) -> Image.Image:
    """The final output at the input's size: masked blend, exact input pixels outside, alpha restored."""
    if mask is None:
        out = edited_rgb
    else:
        m = feathered(mask)[..., None]
        blend = np.round(src.rgb.astype(np.float32) * (1 - m) + edited_rgb.astype(np.float32) * m)
        out = np.where(m > 0, blend.clip(0, 255).astype(np.uint8), src.rgb)
    if src.alpha is not None:
        return Image.fromarray(np.dstack([out, src.alpha]), "RGBA")
    return Image.fromarray(np.ascontiguousarray(out), "RGB")


def check_output_path(path: Path) -> str:
    """The Pillow format for `path`, or InvalidInput, checked before any work is done."""
    path = Path(path)
    fmt = OUTPUT_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InvalidInput(f"Unknown output format '{path.suffix}': use {describe_outputs()}.")
    if not path.parent.is_dir():
        raise InvalidInput(f"Output folder does not exist: {path.parent}")
    return fmt


def save_atomic(image: Image.Image, path: Path) -> None:
    """Write next to the target then rename: a crash never leaves a half-written file."""
    path = Path(path)
    fmt = check_output_path(path)
    if fmt in ("JPEG", "BMP") and image.mode == "RGBA":
        image = image.convert("RGB")
    kwargs = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    try:
        atomic_write(path, lambda fh: image.save(fh, format=fmt, **kwargs))
    except OSError as e:
        raise InvalidInput(f"Cannot write {path}: {e.strerror or e}") from None
