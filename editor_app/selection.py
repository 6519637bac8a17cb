"""Selection masks: shapes, the magic wand, and what can be done to a selection (combine, invert,
grow, shrink, feather, from a layer's alpha).

The selection *is* the document's edit mask: an HxW uint8 array, 255 = selected = the edit may
change it, values between are partly selected (antialiased or feathered edges). Every function here
takes and returns such arrays; the Document stores the result as one undo entry. All of it is
whole-array numpy (and QPainter for shapes): loops run over offsets or passes, never over pixels.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter
from PySide6.QtGui import QColor, QImage, QPainter, QPainterPath

from widgets.compositing import apply_mask
from widgets.qimage import qimage_to_rgba
from widgets.selection_tools import SelectMode

SELECTED = 255
# A pixel counts as inside the selection's outline (marching ants, grow, shrink) from half selected.
HALF = 128


# ---------------------------------------------------------------------------------------- combining
def combine(old: np.ndarray, new: np.ndarray, mode: SelectMode) -> np.ndarray:
    """The selection after `new` is applied to `old` in `mode` (Shift add, Alt subtract, Shift+Alt
    intersect, as in GIMP and Krita). Soft values combine as fuzzy sets: max, min, min with 255-new."""
    if mode == SelectMode.REPLACE:
        return new.copy()
    if mode == SelectMode.ADD:
        return np.maximum(old, new)
    if mode == SelectMode.SUBTRACT:
        return np.minimum(old, SELECTED - new)
    if mode == SelectMode.INTERSECT:
        return np.minimum(old, new)
    raise ValueError(f"unknown selection mode {mode!r}")


def invert(mask: np.ndarray) -> np.ndarray:
    return SELECTED - mask


# ---------------------------------------------------------------------------------------- shapes
def path_mask(path: QPainterPath, width: int, height: int, antialias: bool = True) -> np.ndarray:
    """The area inside `path` (image pixels) as a mask. With antialiasing an edge pixel gets the
    fraction of it the shape covers; a rectangle on whole pixels is exact either way."""
    if width <= 0 or height <= 0:
        return np.zeros((max(height, 0), max(width, 0)), np.uint8)
    img = QImage(width, height, QImage.Format.Format_ARGB32_Premultiplied)
    img.fill(0)
    painter = QPainter(img)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing, antialias)
    painter.fillPath(path, QColor(255, 255, 255))
    painter.end()
    return np.ascontiguousarray(qimage_to_rgba(img)[..., 3])


def layer_alpha(pixels: np.ndarray, layer_mask: np.ndarray | None = None) -> np.ndarray:
    """What a layer shows (its alpha, times its layer mask) as a selection: GIMP's Alpha to
    Selection, Krita's Select Opaque."""
    return np.ascontiguousarray(apply_mask(pixels, layer_mask)[..., 3])


# ---------------------------------------------------------------------------------------- magic wand
WAND_WINDOW = 512  # the contiguous wand looks this far around the click first, then at the whole picture


def wand(rgba: np.ndarray, x: float, y: float, tolerance: int, contiguous: bool = True) -> np.ndarray:
    """Pixels whose colour is within `tolerance` (0..255, on every channel) of the clicked pixel's:
    only those connected to it (4-neighbours, as GIMP's default) when contiguous, else all of them.

    Colours are compared premultiplied, so every fully transparent pixel is the same colour whatever
    RGB it happens to hold. A contiguous region is first looked for in a window around the click:
    if it does not touch the window's edge nothing outside can join it, and a small region on a
    big photo costs only its neighbourhood; otherwise the whole picture is searched."""
    h, w = rgba.shape[:2]
    xi, yi = int(np.floor(x)), int(np.floor(y))
    out = np.zeros((h, w), np.uint8)
    if not (0 <= xi < w and 0 <= yi < h):
        return out
    seed = _premultiplied(rgba[yi:yi + 1, xi:xi + 1])[0, 0]
    tol = int(max(0, min(255, tolerance)))
    if not contiguous:
        return _similar(rgba, seed, tol).astype(np.uint8) * SELECTED
    half = WAND_WINDOW // 2
    y0, y1, x0, x1 = max(0, yi - half), min(h, yi + half), max(0, xi - half), min(w, xi + half)
    region = connected_component(_similar(rgba[y0:y1, x0:x1], seed, tol), xi - x0, yi - y0)
    open_edges = ((y0 > 0 and region[0].any()) or (y1 < h and region[-1].any())
                  or (x0 > 0 and region[:, 0].any()) or (x1 < w and region[:, -1].any()))
    if open_edges:
        y0, y1, x0, x1 = 0, h, 0, w
        region = connected_component(_similar(rgba, seed, tol), xi, yi)
    out[y0:y1, x0:x1] = region.astype(np.uint8) * SELECTED
    return out


def _premultiplied(rgba: np.ndarray) -> np.ndarray:
    """RGB times alpha, rounded, per channel (an opaque picture, the usual case, is returned as it
    is). x/255 rounded is ((x + 128) + ((x + 128) >> 8)) >> 8 for 8-bit products: no division."""
    alpha = rgba[..., 3]
    if alpha.min() == 255:
        return rgba
    out = np.empty_like(rgba)
    a = alpha.astype(np.uint16)
    for c in range(3):
        x = rgba[..., c] * a + np.uint16(128)
        out[..., c] = (x + (x >> 8)) >> 8
    out[..., 3] = alpha
    return out


def _similar(rgba: np.ndarray, seed: np.ndarray, tol: int) -> np.ndarray:
    """Within tol of seed on every channel: two uint8 comparisons a channel, no wider copies."""
    premul = _premultiplied(rgba)
    similar = np.ones(rgba.shape[:2], bool)
    for c in range(4):
        channel = premul[..., c]
        lo, hi = max(0, int(seed[c]) - tol), min(255, int(seed[c]) + tol)
        if lo > 0:
            similar &= channel >= lo
        if hi < 255:
            similar &= channel <= hi
    return similar


def _run_ids(b: np.ndarray, axis: int) -> tuple[np.ndarray, int]:
    """Each run of True along `axis` numbered 1, 2, … (0 where `b` is False), and how many there are."""
    start = b.copy()
    # (In-place sums over int32: several times faster than numpy's casting cumsum of booleans.)
    if axis == 1:
        start[:, 1:] &= ~b[:, :-1]
        ids = start.astype(np.int32)
        np.cumsum(ids.ravel(), out=ids.ravel())
    else:
        # Numbered down each column, then offset by the runs of the columns before it: no transpose.
        start[1:, :] &= ~b[:-1, :]
        ids = start.astype(np.int32)
        np.add.accumulate(ids, axis=0, out=ids)
        per_column = ids[-1].copy()
        ids += np.concatenate([[0], np.cumsum(per_column[:-1], dtype=np.int32)]).astype(np.int32)[None, :]
    np.multiply(ids, b, out=ids)
    return ids, int(np.count_nonzero(start))


def connected_component(b: np.ndarray, x: int, y: int) -> np.ndarray:
    """The 4-connected part of `b` that holds (x, y).

    Grown a whole run at a time: each pass takes in every horizontal (then vertical) run that
    touches what is reached so far. A pass's result is closed along its direction, so once a pass
    adds nothing the set is closed both ways: it is the component. Passes are whole-array numpy;
    their number grows with how often a path through the region must turn, not with its size."""
    out = np.zeros_like(b)
    if not b[y, x]:
        return out
    runs = (_run_ids(b, 1), _run_ids(b, 0))
    out[y, x] = True
    count, k = 1, 0
    while True:
        run_ids, n = runs[k % 2]
        hit = np.zeros(n + 1, bool)
        hit[run_ids[out]] = True
        hit[0] = False
        out = hit[run_ids]
        new_count = int(np.count_nonzero(out))
        if new_count == count and k > 0:
            return out
        count, k = new_count, k + 1


# ---------------------------------------------------------------------------------------- grow, shrink
NEAR_TILE = 256  # grow and shrink work tile by tile: only tiles near the outline cost anything


def _near(features: np.ndarray, radius: float) -> np.ndarray:
    """How much each pixel lies within `radius` of a feature pixel (centre to centre): 1 up to the
    radius, falling to 0 over the next pixel, so a straight edge moves by exactly `radius` whole
    pixels and a round one stays smooth. Tiles with no feature within reach are 0, tiles made only
    of features are 1; the others are computed with the reach around them."""
    h, w = features.shape
    reach = int(np.ceil(radius)) + 1
    out = np.zeros((h, w), np.float32)
    for ty in range(0, h, NEAR_TILE):
        for tx in range(0, w, NEAR_TILE):
            ty1, tx1 = min(h, ty + NEAR_TILE), min(w, tx + NEAR_TILE)
            tile = features[ty:ty1, tx:tx1]
            if tile.all():
                out[ty:ty1, tx:tx1] = 1.0
                continue
            y0, y1, x0, x1 = max(0, ty - reach), min(h, ty1 + reach), max(0, tx - reach), min(w, tx1 + reach)
            around = features[y0:y1, x0:x1]
            if around.any():
                out[ty:ty1, tx:tx1] = _near_dense(around, radius)[ty - y0:ty1 - y0, tx - x0:tx1 - x0]
    return out


def _near_dense(features: np.ndarray, radius: float) -> np.ndarray:
    """_near on one block. The squared distance is min over columns x' of (x - x')² + g(x')², g the
    distance to the nearest feature in the same column; only |x - x'| <= radius + 1 can matter, so
    the minimum runs over that many column offsets, each a whole-block step."""
    h, w = features.shape
    reach = int(np.ceil(radius)) + 1
    rows = np.arange(h, dtype=np.int32)[:, None]
    far = np.int32(h + reach + 1)
    above = np.maximum.accumulate(np.where(features, rows, -far), axis=0)
    below = np.minimum.accumulate(np.where(features, rows, h + far)[::-1], axis=0)[::-1]
    kind = np.uint16 if 2 * (reach + 1) ** 2 < 65536 else np.int32  # small radii: half the memory traffic
    g = np.minimum(np.minimum(rows - above, below - rows), reach + 1).astype(kind)
    g2 = g * g
    best = g2.copy()
    for dx in range(1, min(reach, w - 1) + 1):
        s = kind(dx * dx)
        np.minimum(best[:, dx:], g2[:, :-dx] + s, out=best[:, dx:])
        np.minimum(best[:, :-dx], g2[:, dx:] + s, out=best[:, :-dx])
    return np.clip(radius + 1.0 - np.sqrt(best.astype(np.float32)), 0.0, 1.0)


def _to_u8(fraction: np.ndarray) -> np.ndarray:
    return (fraction * SELECTED + 0.5).astype(np.uint8)


def _box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """y0, y1, x0, x1 of the pixels that are not zero, or None."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not rows.size:
        return None
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def grow(mask: np.ndarray, radius: float) -> np.ndarray:
    """The selection's outline moved outwards by `radius` pixels (corners round, as a disc grows)."""
    inside = mask >= HALF
    box = _box(inside)
    if radius <= 0 or box is None:
        return mask.copy()
    h, w = mask.shape
    m = int(np.ceil(radius)) + 2  # only this far around the selection can change
    y0, y1, x0, x1 = max(0, box[0] - m), min(h, box[1] + m), max(0, box[2] - m), min(w, box[3] + m)
    out = mask.copy()
    near = _to_u8(_near(inside[y0:y1, x0:x1], radius))
    np.maximum(out[y0:y1, x0:x1], near, out=out[y0:y1, x0:x1])
    return out


def shrink(mask: np.ndarray, radius: float) -> np.ndarray:
    """The outline moved inwards by `radius` pixels. Beyond the picture's edge counts as not
    selected (GIMP's default), so a whole-picture selection shrinks from the border too."""
    if radius <= 0:
        return mask.copy()
    outside = np.ones((mask.shape[0] + 2, mask.shape[1] + 2), bool)
    outside[1:-1, 1:-1] = mask < HALF
    keep = _to_u8(1.0 - _near(outside, radius)[1:-1, 1:-1])
    return np.minimum(mask, keep)


def feather(mask: np.ndarray, radius: float) -> np.ndarray:
    """Soften the edge so it fades over about `radius` pixels on each side (a Gaussian blur with
    sigma = radius / 3: three sigmas hold all but 0.3 % of it). Pillow's blur is separable C and
    extends the border, so a selection that reaches the edge stays selected there."""
    if radius <= 0:
        return mask.copy()
    img = Image.fromarray(np.ascontiguousarray(mask, np.uint8))  # 2-D uint8: mode L
    return np.asarray(img.filter(ImageFilter.GaussianBlur(radius / 3.0))).copy()


def bounding_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x, y, width, height) of the selected pixels (any value above 0), or None when nothing is."""
    box = _box(mask > 0)
    if box is None:
        return None
    y0, y1, x0, x1 = box
    return x0, y0, x1 - x0, y1 - y0
