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
import struct
import xml.etree.ElementTree as ET
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from PIL import Image

from core import images
from core.errors import InvalidInput
from core.files import atomic_write, unreadable
from widgets.compositing import apply_mask, composite_rgba

MIMETYPE = b"image/openraster"
META_ENTRY = "malleable/document.json"
META_VERSION = 1
# Bounds that keep a damaged or hostile file from eating all memory (see also ReadLimits; the
# canvas and every layer PNG obey core.images.MAX_PIXELS, the limit for every picture).
MAX_SIDE = 32768
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


def write_ora(path, project: ProjectData, backup: bool = False) -> None:
    """Write atomically (core.files.atomic_write: permissions and symlinks kept); backup=True keeps
    the version being replaced as NAME.ora~."""
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
        atomic_write(path, write, backup=backup)
    except OSError as exc:
        raise OraError(f"Could not save “{Path(path).name}”: {exc.strerror or exc}.") from None


# ---------------------------------------------------------------------------------------- reading
@dataclass(frozen=True)
class ReadLimits:
    """What a project may ask for, checked from stack.xml and each PNG's header before any pixel is
    decoded, so a small hostile file is refused in milliseconds instead of eating memory for
    minutes. `pixels` counts what the document will hold: one canvas-sized array per layer and per
    mask (about 4 bytes each for layers; the editor keeps roughly twice that while it shows them)."""

    layers: int = 256
    pixels: int = 400_000_000   # ≈ 1.6 GB of layer pixels
    side: int = MAX_SIDE


DEFAULT_LIMITS = ReadLimits()


class ReadCancelled(Exception):
    """The caller's cancel() answered True between two layers; nothing was changed."""


Progress = Callable[[int, int, str], None]   # (done, total, what is being read)


def read_ora(path, progress: Optional[Progress] = None, cancel: Optional[Callable[[], bool]] = None,
             limits: ReadLimits = DEFAULT_LIMITS) -> ProjectData:
    """Read a project. Any bytes at all give a ProjectData, an OraError naming the problem, or
    ReadCancelled (cancel() is asked between layers); nothing else escapes. `path` may also be a
    binary file object."""
    name = Path(path).name if isinstance(path, (str, os.PathLike)) else "the project"
    try:
        with zipfile.ZipFile(path) as zf:
            return _read(zf, name, progress, cancel or (lambda: False), limits)
    except (OraError, ReadCancelled):
        raise
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        raise OraError(f"“{name}” {unreadable(exc, 'project')}") from None
    except zipfile.BadZipFile as exc:
        raise OraError(f"“{name}” is not an OpenRaster project (it is not a valid zip archive: {exc}).") from None
    except zlib.error as exc:
        raise OraError(f"“{name}” is damaged: compressed data is corrupt ({exc}).") from None
    except UnicodeDecodeError:
        raise OraError(f"“{name}” is damaged: an entry name is not valid text.") from None
    except (OverflowError, struct.error, ValueError) as exc:
        raise OraError(f"“{name}” is damaged: its zip directory is inconsistent ({exc}).") from None
    except RuntimeError as exc:  # encrypted entries
        raise OraError(f"“{name}” could not be read: {exc}.") from None
    except NotImplementedError as exc:  # a compression method zipfile does not know
        raise OraError(f"“{name}” uses a compression Malleable cannot read ({exc}).") from None
    except (OSError, EOFError, zipfile.LargeZipFile) as exc:
        raise OraError(f"“{name}” could not be read: {exc}.") from None
    except MemoryError:
        raise OraError(f"There is not enough memory to open “{name}”.") from None


def _open_entry(zf: zipfile.ZipFile, member: str, what: str) -> zipfile.ZipInfo:
    try:
        return zf.getinfo(member)
    except KeyError:
        raise OraError(f"The project is damaged: {what} (“{member}”) is missing.") from None


def _entry(zf: zipfile.ZipFile, member: str, what: str, limit: int = MAX_ENTRY_BYTES) -> bytes:
    info = _open_entry(zf, member, what)
    if info.file_size > limit:
        raise OraError(f"The project is damaged or too large: {what} is {info.file_size} bytes.")
    try:
        return zf.read(info)
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, ValueError) as exc:  # bad CRC, truncated
        raise OraError(f"The project is damaged: {what} cannot be read ({exc}).") from None


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_size(zf: zipfile.ZipFile, member: str, what: str) -> tuple[int, int]:
    """(width, height) from the PNG's IHDR chunk, reading 24 bytes of the entry: only PNG data is
    accepted (a layer of any other format, PostScript included, is never handed to a decoder)."""
    info = _open_entry(zf, member, what)
    try:
        with zf.open(info) as fh:
            head = fh.read(24)
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, ValueError) as exc:
        raise OraError(f"The project is damaged: {what} cannot be read ({exc}).") from None
    if len(head) < 24 or head[:8] != PNG_SIGNATURE or head[12:16] != b"IHDR":
        raise OraError(f"The project is damaged: {what} is not PNG data (layers must be PNG).")
    w, h = struct.unpack(">II", head[16:24])
    if w < 1 or h < 1:
        raise OraError(f"The project is damaged: {what} declares a size of {w}x{h}.")
    if w * h > images.MAX_PIXELS:
        raise OraError(f"The project is too large: {images.too_large_message(what, w, h)}")
    return w, h


def _png(zf, member, what, size=None, grey=False) -> np.ndarray:
    try:
        rgba = images.load_rgba(io.BytesIO(_entry(zf, member, what)), what=what, formats=("PNG",))
    except InvalidInput as exc:
        raise OraError(f"The project is damaged: {exc}") from None
    if size is not None and rgba.shape[:2] != (size[1], size[0]):
        raise OraError(f"The project is damaged: {what} has the wrong size.")
    if grey:
        return np.ascontiguousarray(rgba[..., 0])  # load_rgba made R=G=B from the grey value
    return rgba


def _number(el, key, lo: float, hi: float, default=None) -> float:
    """A finite number attribute within [lo, hi]: "inf", "nan", "1e999" and absurd values refused."""
    raw = el.get(key)
    if raw is None:
        if default is None:
            raise OraError(f"The project is damaged: stack.xml has no “{key}”.")
        return default
    try:
        value = float(raw)
    except ValueError:
        raise OraError(f"The project is damaged: “{key}” is “{raw[:40]}”, not a number.") from None
    if not math.isfinite(value):
        raise OraError(f"The project is damaged: “{key}” is “{raw[:40]}”, not a finite number.")
    if not lo <= value <= hi:
        raise OraError(f"The project is damaged or too large: “{key}” is {raw[:40]} "
                       f"(it must be between {lo:g} and {hi:g}).")
    return value


def _float_attr(el, key, default) -> float:
    try:
        value = float(el.get(key, default))
    except ValueError:
        return default
    return min(1.0, max(0.0, value)) if math.isfinite(value) else default


MAX_NESTING = 64  # groups inside groups; deeper is a hostile file, not a drawing


def _walk_stack(stack):
    """(layer element, opacity, visible) top to bottom; groups (Krita, MyPaint) are flattened into
    their children. Iterative, so a deeply nested hostile stack.xml cannot exhaust the stack."""
    todo = [(iter(stack), 1.0, True)]
    while todo:
        children, opacity, visible = todo[-1]
        el = next(children, None)
        if el is None:
            todo.pop()
            continue
        op = opacity * _float_attr(el, "opacity", 1.0)
        vis = visible and el.get("visibility", "visible") != "hidden"
        if el.tag == "stack":
            if len(todo) >= MAX_NESTING:
                raise OraError(f"The project is damaged: its groups are nested more than {MAX_NESTING} deep.")
            todo.append((iter(el), op, vis))
        elif el.tag == "layer":
            yield el, op, vis
        # text, filters and unknown elements are skipped: they have no pixels of their own


@dataclass
class _PlannedLayer:
    name: str
    opacity: float
    visible: bool
    metadata: dict
    src: str = ""            # a plain OpenRaster layer: this PNG at (x, y)
    x: int = 0
    y: int = 0
    points: list = field(default_factory=list)
    group: str = ""
    unmasked: str = ""       # Malleable's masked layer: unmasked pixels + mask, canvas-sized
    mask: str = ""


def _plan(zf, root, name, limits: ReadLimits):
    """Everything the read will decode, sized from stack.xml and PNG headers alone."""
    w = int(_number(root, "w", 1, limits.side))
    h = int(_number(root, "h", 1, limits.side))
    if w * h > images.MAX_PIXELS:
        raise OraError(f"“{name}” is too large to open: {images.too_large_message('its canvas', w, h)}")
    stack = root.find("stack")
    if stack is None:
        raise OraError("The project is damaged: stack.xml has no layer stack.")

    meta = _read_meta(zf)
    meta_layers = meta.get("layers")
    meta_by_src = {m["src"]: m for m in (meta_layers if isinstance(meta_layers, list) else [])
                   if isinstance(m, dict) and isinstance(m.get("src"), str)}

    planned: list[_PlannedLayer] = []
    for el, opacity, visible in _walk_stack(stack):
        src = el.get("src")
        if not src:
            continue
        if len(planned) >= limits.layers:
            raise OraError(f"“{name}” has more than {limits.layers} layers, more than Malleable opens: "
                           "merge some in Krita or GIMP first.")
        lname = (el.get("name") or f"Layer {len(planned) + 1}")[:200]
        m = meta_by_src.get(src, {})
        md = m.get("metadata")
        group = m.get("group") if isinstance(m.get("group"), str) else ""
        layer = _PlannedLayer(lname, opacity, visible, md if isinstance(md, dict) else {},
                              points=_points(m.get("points")), group=group[:200])
        if isinstance(m.get("mask"), str) and isinstance(m.get("unmasked"), str):
            layer.unmasked, layer.mask = m["unmasked"], m["mask"]
        else:
            layer.src = src
            layer.x = int(_number(el, "x", -limits.side, limits.side, 0))
            layer.y = int(_number(el, "y", -limits.side, limits.side, 0))
        planned.append(layer)
    if not planned:
        raise OraError(f"“{name}” has no layers Malleable can show.")

    edit_mask = meta.get("edit_mask")
    edit_mask = edit_mask if isinstance(edit_mask, str) and edit_mask in zf.NameToInfo else ""

    # The budget, from headers only: each layer and mask becomes a canvas-sized array, and a PNG of
    # another size is also held at its own size while the layers are placed.
    sizes: dict[str, tuple[int, int]] = {}
    for l in planned:
        what = f"layer “{l.name}”"
        for member, label in ((l.src, what), (l.unmasked, what), (l.mask, f"the mask of {what}")):
            if member and member not in sizes:
                sizes[member] = _png_size(zf, member, label)
                if member != l.src and sizes[member] != (w, h):
                    raise OraError(f"The project is damaged: {label} has the wrong size.")
    if edit_mask and _png_size(zf, edit_mask, "the edit mask") != (w, h):
        raise OraError("The project is damaged: the edit mask has the wrong size.")
    arrays = sum(2 if l.mask else 1 for l in planned) + (1 if edit_mask else 0)
    total = w * h * arrays + sum(pw * ph for pw, ph in sizes.values() if (pw, ph) != (w, h))
    if total > limits.pixels:
        raise OraError(f"“{name}” needs {total / 1e6:.0f} megapixels of layers ({len(planned)} layers of "
                       f"{w}x{h}), more than the {limits.pixels / 1e6:.0f} MP Malleable opens: merge or "
                       "remove layers in Krita or GIMP first.")
    return w, h, planned, edit_mask, meta


def _read(zf: zipfile.ZipFile, name: str, progress: Optional[Progress], cancel: Callable[[], bool],
          limits: ReadLimits) -> ProjectData:
    xml = _entry(zf, "stack.xml", "the layer list", MAX_XML_BYTES)
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise OraError(f"The project is damaged: its layer list cannot be parsed ({exc}).") from None
    if root.tag != "image":
        raise OraError(f"“{name}” is not an OpenRaster project (stack.xml has no image).")
    w, h, planned, edit_mask_member, meta = _plan(zf, root, name, limits)

    total = len(planned) + (1 if edit_mask_member else 0)
    decoded: dict[str, np.ndarray] = {}   # a PNG used by several layers is decoded once

    def png(member, what, size=None, grey=False):
        if member not in decoded:
            decoded[member] = _png(zf, member, what, size, grey)
        return decoded[member]

    layers: list[LayerData] = []
    for i, l in enumerate(planned):
        if cancel():
            raise ReadCancelled()
        if progress:
            progress(i, total, l.name)
        what = f"layer “{l.name}”"
        mask = None
        if l.mask:
            pixels = png(l.unmasked, what, (w, h))
            mask = png(l.mask, f"the mask of {what}", (w, h), grey=True)
        else:
            pixels = _place(png(l.src, what), l.x, l.y, w, h)
        if any(pixels is other.pixels for other in layers):
            pixels = pixels.copy()  # layers never share pixel memory: each is edited on its own
        layers.append(LayerData(l.name, pixels, l.visible, l.opacity, mask, l.metadata, l.points, l.group))
    layers.reverse()  # stack.xml is top first; the document is bottom first

    edit_mask = None
    if edit_mask_member:
        if cancel():
            raise ReadCancelled()
        if progress:
            progress(total - 1, total, "the edit mask")
        # Present but unreadable is damage, and is reported as such.
        edit_mask = _png(zf, edit_mask_member, "the edit mask", (w, h), grey=True)
    if progress:
        progress(total, total, "")
    active = meta.get("active_layer")
    active = active if isinstance(active, int) and not isinstance(active, bool) and 0 <= active < len(layers) else None
    # Projects from before layers kept their own points: the document's pairs go to the active layer.
    meta_layers = meta.get("layers") if isinstance(meta.get("layers"), list) else []
    per_layer = any(isinstance(m, dict) and isinstance(m.get("points"), list) for m in meta_layers)
    points = [] if per_layer else _points(meta.get("points"))
    return ProjectData(w, h, layers, edit_mask, points, active)


def _points(raw) -> list:
    """Valid (hx, hy, tx, ty) pairs from JSON; anything else is dropped."""
    points = []
    for p in raw if isinstance(raw, list) else []:
        if (isinstance(p, (list, tuple)) and len(p) == 4
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                        and abs(v) <= 10 * MAX_SIDE for v in p)):
            points.append(tuple(float(v) for v in p))
    return points


def _read_meta(zf: zipfile.ZipFile) -> dict:
    """Malleable's own entry; a foreign file has none, a damaged one is ignored rather than fatal
    because the layers themselves are still good."""
    if META_ENTRY not in zf.NameToInfo:
        return {}
    try:
        meta = json.loads(_entry(zf, META_ENTRY, "Malleable's metadata", MAX_XML_BYTES))
    except (ValueError, RecursionError):  # bad JSON or text encoding; nesting deeper than Python's stack
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
