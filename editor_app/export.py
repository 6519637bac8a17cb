"""Exporting pixels to a picture file as an ExportOptions says (widgets/export_dialog.py).

What is written:
- the whole picture: the layers composited as the canvas shows them;
- one layer: its pixels with its layer mask applied, alone (its opacity and visibility are view
  settings of the stack, not part of the layer's picture);
- only the selection (either of the above): cropped to the selection's bounding box, each pixel's
  alpha multiplied by how much it is selected, so unselected pixels are transparent;
- formats without transparency (JPEG) are flattened onto white, as a printed page would be.

The edits' parameters, when asked, go into PNG text chunks ("Software", and "Malleable edits":
JSON, one record per result layer in the export: layer name, method, parameters, model) or a JPEG
comment (the same JSON). Files are written through core.files.atomic_write: a failed export leaves
no half-written file and the previous file, if any, untouched."""
from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from core.files import atomic_write
from widgets.compositing import apply_mask
from widgets.export_dialog import ExportOptions, export_formats, format_for

from .selection import bounding_box

SOFTWARE = "Malleable"
EDITS_KEY = "Malleable edits"
TIFF_CODECS = {"lzw": "tiff_lzw", "deflate": "tiff_adobe_deflate", "none": None}


class ExportError(Exception):
    """The export could not be made; str(err) is the message to show."""


def export_pixels(doc, options: ExportOptions) -> np.ndarray:
    if options.layer_id is None:
        rgba = doc.composite_rgba()
    else:
        try:
            layer = doc.layer_by_id(options.layer_id)
        except KeyError:
            raise ExportError("The layer to export is not in the picture any more: choose another (File ▸ Export…).") from None
        rgba = apply_mask(layer.pixels, layer.mask).copy()
    if options.selection_only:
        mask = doc.edit_mask_array()
        box = bounding_box(mask)
        if box is None:
            raise ExportError("Nothing is selected: select what to export, or export the whole picture.")
        x, y, w, h = box
        rgba = apply_mask(rgba[y:y + h, x:x + w], mask[y:y + h, x:x + w]).copy()
    return rgba


def edit_records(doc, options: ExportOptions) -> list[dict]:
    """The result layers that make up the export, with how each was made."""
    if options.layer_id is not None:
        layers = [l for l in doc.layers if l.id == options.layer_id]
    else:
        layers = [l for l in doc.layers if l.visible and l.opacity > 0]
    return [{"layer": l.name, **{k: l.metadata[k] for k in ("method", "params", "model") if k in l.metadata}}
            for l in layers if l.metadata.get("method")]


def encode(rgba: np.ndarray, options: ExportOptions, records: list[dict] | None = None) -> bytes:
    fmt = options.format
    if fmt not in export_formats():
        raise ExportError(f"Cannot export as {fmt}: choose one of {', '.join(export_formats())}.")
    img = Image.fromarray(np.ascontiguousarray(rgba, np.uint8))
    opaque = not np.any(rgba[..., 3] < 255)
    text = json.dumps(records, ensure_ascii=False, default=str) if options.embed_parameters and records else None
    kwargs: dict = {}
    if fmt == "PNG":
        kwargs["compress_level"] = int(options.png_compression)
        if options.embed_parameters:
            info = PngInfo()
            info.add_text("Software", SOFTWARE)
            if text:
                info.add_text(EDITS_KEY, text)  # iTXt when it is not Latin-1 (prompts may be any language)
            kwargs["pnginfo"] = info
        if opaque:
            img = img.convert("RGB")
    elif fmt == "JPEG":
        background = Image.new("RGB", img.size, (255, 255, 255))
        background.paste(img, mask=img.getchannel("A"))
        img = background
        q = int(options.quality)
        kwargs.update(quality=q, subsampling=0 if q >= 90 else 2, optimize=True)
        if text:
            kwargs["comment"] = text.encode("utf-8")
    elif fmt == "WEBP":
        if options.lossless:
            kwargs.update(lossless=True, quality=100, method=4, exact=True)
        else:
            kwargs.update(quality=int(options.quality), method=4)
        if opaque:
            img = img.convert("RGB")
    elif fmt == "TIFF":
        codec = TIFF_CODECS.get(options.tiff_compression)
        if codec:
            kwargs["compression"] = codec
        if opaque:
            img = img.convert("RGB")
    elif opaque:
        img = img.convert("RGB")
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def export_document(doc, options: ExportOptions) -> Path:
    path = Path(options.path)
    if not options.path:
        raise ExportError("Choose the file to export to.")
    if format_for(str(path)) is None:
        names = ", ".join(e for exts in export_formats().values() for e in exts[:1])
        raise ExportError(f"Cannot export to “{path.suffix or path.name}”: use {names}.")
    if path.is_dir():
        raise ExportError(f"“{path.name}” is a folder: choose a file name.")
    # The extension wins over a format chosen elsewhere: it is what other programs go by.
    options = replace(options, format=format_for(str(path)))
    data = encode(export_pixels(doc, options), options, edit_records(doc, options))
    try:
        atomic_write(path, lambda fh: fh.write(data))
    except OSError as exc:
        raise ExportError(f"Could not export “{path.name}”: {exc.strerror or exc}.") from None
    return path
