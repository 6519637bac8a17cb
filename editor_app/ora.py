"""OpenRaster (.ora) project files: a zip of PNG layers and stack.xml that Krita, GIMP and MyPaint
open, plus Malleable's own entries under malleable/ (edit mask, each layer's point pairs, layer
masks, the edit parameters of each result layer).

Other programs see each layer with its layer mask already applied to alpha, so the picture looks
the same everywhere; Malleable keeps the unmasked pixels beside it so nothing is lost on reopening.

Reading never writes anything to disk: entries are looked up by name in the archive and decoded in
memory, so a hostile entry name ("../../x") cannot escape the project. Any problem with a file
becomes an OraError with a message; the caller's document is untouched until reading succeeded.
"""
from __future__ import annotations

import io
import json
import math
import os
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from core.errors import InvalidInput
from core.files import atomic_write
from core.images import load_rgba
from widgets.compositing import apply_mask, composite_rgba

MIMETYPE = b"image/openraster"
META_ENTRY = "malleable/document.json"
META_VERSION = 1
# Bounds that keep a damaged or hostile file from eating all memory.
MAX_SIDE = 32768
MAX_PIXELS = 200_000_000
MAX_ENTRY_BYTES = 1 << 30
MAX_XML_BYTES = 16 << 20


def encode_png(rgba_or_grey: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgba_or_grey)).save(buf, format="PNG", compress_level=4)
    return buf.getvalue()


class OraError(Exception):
    """The project could not be read or written; str(err) is the message to show."""


@dataclass
class LayerData:
    name: str
    pixels: np.ndarray
    visible: bool = True
    opacity: float = 1.0
    mask: np.ndarray | None = None
    metadata: dict = field(default_factory=dict)
    points: list = field(default_factory=list)  # this layer's (hx, hy, tx, ty) pairs
    group: str = ""                             # a set of variations it belongs to


@dataclass
class ProjectData:
    width: int
    height: int
    layers: list[LayerData]          # bottom to top
    edit_mask: np.ndarray | None = None
    # Pairs for the active layer from a project written before layers kept their own (read only;
    # written as the active layer's pairs, so an older Malleable still finds them).
    points: list = field(default_factory=list)
    active_index: int | None = None


# ---------------------------------------------------------------------------------------- writing
def _thumbnail_png(rgba: np.ndarray) -> bytes:
    img = Image.fromarray(rgba)
    img.thumbnail((256, 256))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def write_ora(path, project: ProjectData) -> None:
    w, h = project.width, project.height
    stack = ET.Element("stack")
    entries: list[tuple[str, bytes]] = []
    meta_layers = []
    for i, layer in enumerate(project.layers):
        src = f"data/layer{i:03d}.png"
        meta = {"src": src, "metadata": layer.metadata, "points": [list(map(float, p)) for p in layer.points]}
        if layer.group:
            meta["group"] = layer.group
        entries.append((src, encode_png(apply_mask(layer.pixels, layer.mask))))
        if layer.mask is not None:
            meta["unmasked"] = f"malleable/layers/layer{i:03d}.png"
            meta["mask"] = f"malleable/masks/layer{i:03d}.png"
            entries.append((meta["unmasked"], encode_png(layer.pixels)))
            entries.append((meta["mask"], encode_png(layer.mask)))
        meta_layers.append(meta)
        el = ET.Element("layer", {
            "name": layer.name, "src": src, "x": "0", "y": "0",
            "opacity": f"{layer.opacity:.6g}",
            "visibility": "visible" if layer.visible else "hidden",
            "composite-op": "svg:src-over",
        })
        # stack.xml lists the top layer first. Variations of one group (consecutive) go into a
        # nested stack, which other programs show as a layer group.
        below = stack[0] if len(stack) else None
        if layer.group and below is not None and below.tag == "stack" and below.get("name") == layer.group:
            below.insert(0, el)
        elif layer.group:
            group = ET.Element("stack", {"name": layer.group, "visibility": "visible", "opacity": "1",
                                         "isolation": "auto", "composite-op": "svg:src-over"})
            group.append(el)
            stack.insert(0, group)
        else:
            stack.insert(0, el)
    image = ET.Element("image", {"version": "0.0.5", "w": str(w), "h": str(h),
                                 "xres": "72", "yres": "72"})
    image.append(stack)
    stack_xml = ET.tostring(image, encoding="utf-8", xml_declaration=True)

    merged = composite_rgba(project.layers, w, h)
    edit_mask = project.edit_mask if project.edit_mask is not None else np.zeros((h, w), np.uint8)
    meta_doc = {
        "format": "malleable", "version": META_VERSION,
        "edit_mask": "malleable/edit_mask.png",
        "points": [list(map(float, p)) for p in (project.layers[project.active_index].points
                                                 if project.active_index is not None else project.points)],
        "active_layer": project.active_index,
        "layers": meta_layers,  # bottom to top, matching data/layerNNN.png
    }

    def write(fh):
        with zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as zf:
            # The spec wants "mimetype" first and uncompressed so file(1) can recognise it.
            zf.writestr(zipfile.ZipInfo("mimetype"), MIMETYPE, compress_type=zipfile.ZIP_STORED)
            zf.writestr("stack.xml", stack_xml)
            for name, data in entries:
                zf.writestr(name, data, compress_type=zipfile.ZIP_STORED)  # PNG is compressed already
            zf.writestr("mergedimage.png", encode_png(merged), compress_type=zipfile.ZIP_STORED)
            zf.writestr("Thumbnails/thumbnail.png", _thumbnail_png(merged), compress_type=zipfile.ZIP_STORED)
            zf.writestr("malleable/edit_mask.png", encode_png(edit_mask), compress_type=zipfile.ZIP_STORED)
            zf.writestr(META_ENTRY, json.dumps(meta_doc, indent=1, default=_json_default))

    try:
        atomic_write(path, write)
    except OSError as exc:
        raise OraError(f"Could not save “{Path(path).name}”: {exc.strerror or exc}.") from None


# ---------------------------------------------------------------------------------------- reading
def read_ora(path) -> ProjectData:
    name = Path(path).name
    try:
        with zipfile.ZipFile(path) as zf:
            return _read(zf, name)
    except OraError:
        raise
    except FileNotFoundError:
        raise OraError(f"“{name}” does not exist.") from None
    except zipfile.BadZipFile:
        raise OraError(f"“{name}” is not an OpenRaster project (it is not a valid zip archive).") from None
    except (OSError, EOFError, zipfile.LargeZipFile, RuntimeError, NotImplementedError) as exc:
        # RuntimeError: encrypted entries; NotImplementedError: unknown compression.
        raise OraError(f"“{name}” could not be read: {exc}.") from None
    except MemoryError:
        raise OraError(f"There is not enough memory to open “{name}”.") from None


def _entry(zf: zipfile.ZipFile, member: str, what: str, limit: int = MAX_ENTRY_BYTES) -> bytes:
    try:
        info = zf.getinfo(member)
    except KeyError:
        raise OraError(f"The project is damaged: {what} (“{member}”) is missing.") from None
    if info.file_size > limit:
        raise OraError(f"The project is damaged or too large: {what} is {info.file_size} bytes.")
    try:
        return zf.read(info)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:  # bad CRC, truncated data
        raise OraError(f"The project is damaged: {what} cannot be read ({exc}).") from None


def _png(zf, member, what, size=None, grey=False) -> np.ndarray:
    try:
        rgba = load_rgba(io.BytesIO(_entry(zf, member, what)), what=what)
    except InvalidInput as exc:
        raise OraError(f"The project is damaged: {exc}") from None
    if size is not None and rgba.shape[:2] != (size[1], size[0]):
        raise OraError(f"The project is damaged: {what} has the wrong size.")
    if grey:
        return np.ascontiguousarray(rgba[..., 0])  # load_rgba made R=G=B from the grey value
    return rgba


def _int_attr(el, key, default=None, lo=-MAX_SIDE, hi=MAX_SIDE) -> int:
    raw = el.get(key)
    if raw is None:
        if default is None:
            raise OraError(f"The project is damaged: stack.xml has no “{key}”.")
        return default
    try:
        value = int(float(raw))
    except ValueError:
        raise OraError(f"The project is damaged: “{key}” is “{raw}”, not a number.") from None
    if not lo <= value <= hi:
        raise OraError(f"The project is damaged or too large: “{key}” is {value}.")
    return value


def _float_attr(el, key, default) -> float:
    try:
        value = float(el.get(key, default))
    except ValueError:
        return default
    return min(1.0, max(0.0, value)) if math.isfinite(value) else default


def _walk_stack(stack, inherited_opacity=1.0, inherited_visible=True):
    """Layers top-to-bottom; groups (Krita, MyPaint) are flattened into their children."""
    for el in stack:
        opacity = inherited_opacity * _float_attr(el, "opacity", 1.0)
        visible = inherited_visible and el.get("visibility", "visible") != "hidden"
        if el.tag == "stack":
            yield from _walk_stack(el, opacity, visible)
        elif el.tag == "layer":
            yield el, opacity, visible
        # text, filters and unknown elements are skipped: they have no pixels of their own


def _read(zf: zipfile.ZipFile, name: str) -> ProjectData:
    xml = _entry(zf, "stack.xml", "the layer list", MAX_XML_BYTES)
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise OraError(f"The project is damaged: its layer list cannot be parsed ({exc}).") from None
    if root.tag != "image":
        raise OraError(f"“{name}” is not an OpenRaster project (stack.xml has no image).")
    w, h = _int_attr(root, "w", lo=1), _int_attr(root, "h", lo=1)
    if w * h > MAX_PIXELS:
        raise OraError(f"“{name}” is {w}x{h} pixels, too large to open safely.")
    stack = root.find("stack")
    if stack is None:
        raise OraError("The project is damaged: stack.xml has no layer stack.")

    meta = _read_meta(zf)
    meta_layers = meta.get("layers")
    meta_by_src = {m["src"]: m for m in (meta_layers if isinstance(meta_layers, list) else [])
                   if isinstance(m, dict) and isinstance(m.get("src"), str)}

    layers: list[LayerData] = []
    for el, opacity, visible in _walk_stack(stack):
        src = el.get("src")
        if not src:
            continue
        lname = el.get("name") or f"Layer {len(layers) + 1}"
        m = meta_by_src.get(src, {})
        what = f"layer “{lname}”"
        mask = None
        if isinstance(m.get("mask"), str) and isinstance(m.get("unmasked"), str):
            pixels = _png(zf, m["unmasked"], what, (w, h))
            mask = _png(zf, m["mask"], f"the mask of {what}", (w, h), grey=True)
        else:
            pixels = _place(_png(zf, src, what), _int_attr(el, "x", 0), _int_attr(el, "y", 0), w, h)
        md = m.get("metadata")
        group = m.get("group") if isinstance(m.get("group"), str) else ""
        layers.append(LayerData(lname, pixels, visible, opacity, mask, md if isinstance(md, dict) else {},
                                _points(m.get("points")), group))
    if not layers:
        raise OraError(f"“{name}” has no layers Malleable can show.")
    layers.reverse()  # stack.xml is top first; the document is bottom first

    edit_mask = None
    if isinstance(meta.get("edit_mask"), str) and meta["edit_mask"] in zf.namelist():
        # Present but unreadable is damage, and is reported as such.
        edit_mask = _png(zf, meta["edit_mask"], "the edit mask", (w, h), grey=True)
    active = meta.get("active_layer")
    active = active if isinstance(active, int) and 0 <= active < len(layers) else None
    # Projects from before layers kept their own points: the document's pairs go to the active layer.
    per_layer = any(isinstance(m.get("points"), list) for m in meta_by_src.values())
    points = [] if per_layer else _points(meta.get("points"))
    return ProjectData(w, h, layers, edit_mask, points, active)


def _points(raw) -> list:
    """Valid (hx, hy, tx, ty) pairs from JSON; anything else is dropped."""
    points = []
    for p in raw if isinstance(raw, list) else []:
        if (isinstance(p, (list, tuple)) and len(p) == 4
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in p)):
            points.append(tuple(float(v) for v in p))
    return points


def _read_meta(zf: zipfile.ZipFile) -> dict:
    """Malleable's own entry; a foreign file has none, a damaged one is ignored rather than fatal
    because the layers themselves are still good."""
    if META_ENTRY not in zf.namelist():
        return {}
    try:
        meta = json.loads(_entry(zf, META_ENTRY, "Malleable's metadata", MAX_XML_BYTES))
    except (ValueError, UnicodeDecodeError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _place(rgba: np.ndarray, x: int, y: int, w: int, h: int) -> np.ndarray:
    """A layer PNG at offset (x, y), cropped/padded to the canvas."""
    lh, lw = rgba.shape[:2]
    if (x, y, lw, lh) == (0, 0, w, h):
        return rgba
    out = np.zeros((h, w, 4), np.uint8)
    sx0, sy0, tx0, ty0 = max(0, -x), max(0, -y), max(0, x), max(0, y)
    cw, ch = min(lw - sx0, w - tx0), min(lh - sy0, h - ty0)
    if cw > 0 and ch > 0:
        out[ty0:ty0 + ch, tx0:tx0 + cw] = rgba[sy0:sy0 + ch, sx0:sx0 + cw]
    return out


def _json_default(value):
    """Edit parameters may hold numpy scalars or arrays, paths, enums: store them as plain values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "value") and isinstance(getattr(value, "value"), (str, int, float)):
        return value.value
    return str(value)
