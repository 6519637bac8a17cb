"""Reading a picture of a ShapesWorld scene back: where the shape is, its colour, its shape class and
its fill, against the scene's known background. Used by the demo's own evaluation
(tools/eval_demo.py), the semantic checks of every method and ShapesBench's ground-truth measures.

- foreground = pixels far (RGB distance > FG_DISTANCE) from the scene's background;
- shape class: the foreground is compared by IoU with the ink of every shape class drawn at the
  foreground's centroid with the expected size and fill (the nearest wins);
- fill: the same comparison over the three fills, shape and size fixed;
- colour: the named colour nearest to the median of the ink's core (see dominant_colour)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from PIL import Image, ImageDraw

from .shapesworld import (FILLS, SHAPES, ShapeSpec, dominant_colour, draw_shape,  # noqa: F401 (nearest_position: re-exported)
                          nearest_position, stripe_band, two_tone_backdrop)

FG_DISTANCE = 40.0


def background_image(scene, px: Optional[int] = None) -> np.ndarray:
    """The scene's background without its shapes (float32 HxWx3)."""
    if getattr(scene, "backdrop", None) is not None:
        return scene.backdrop.copy()
    px = px or scene.image.size[0]
    return two_tone_backdrop(scene.background, px, px, scene.two_tone)


def foreground(rgb: np.ndarray, bg: np.ndarray) -> np.ndarray:
    return np.sqrt(((rgb.astype(np.float32) - bg) ** 2).sum(-1)) > FG_DISTANCE


def ink_mask(spec: ShapeSpec, centre, px: Optional[int], bg: np.ndarray, stripe_offset: int = 0) -> np.ndarray:
    """Where a shape like `spec` (its fill, size and colour) drawn at `centre` puts ink, on a picture
    the size of `bg` (`px` is unused, kept for callers)."""
    img = Image.fromarray(bg.astype(np.uint8))
    s = ShapeSpec(spec.shape, spec.colour, spec.fill, spec.size, spec.position, centre, spec.radius)
    draw_shape(img, s, bg, stripe_offset)
    return np.abs(np.asarray(img, np.float32) - bg).sum(-1) > 0


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def classify_shape(fg: np.ndarray, spec: ShapeSpec, bg: np.ndarray) -> tuple[str, dict]:
    ys, xs = np.nonzero(fg)
    centre = (float(xs.mean()), float(ys.mean()))
    ious = {}
    for shape in SHAPES:
        ink = ink_mask(ShapeSpec(shape, spec.colour, spec.fill, spec.size, spec.position, centre, spec.radius),
                       centre, None, bg)
        ious[shape] = _iou(ink, fg)
    return max(ious, key=ious.get), ious


def classify_fill(fg: np.ndarray, spec: ShapeSpec, bg: np.ndarray) -> tuple[str, dict]:
    """The fill whose ink, drawn at the foreground's centroid with spec's shape and size, overlaps the
    foreground most."""
    ys, xs = np.nonzero(fg)
    centre = (float(xs.mean()), float(ys.mean()))
    ious = {}
    for fill in FILLS:
        ink = ink_mask(ShapeSpec(spec.shape, spec.colour, fill, spec.size, spec.position, centre, spec.radius),
                       centre, None, bg)
        ious[fill] = _iou(ink, fg)
    return max(ious, key=ious.get), ious


def classify_shape_and_fill(fg: np.ndarray, spec: ShapeSpec, bg: np.ndarray) -> dict:
    """IoU of the foreground with the ink of every (shape, fill) drawn at its centroid with spec's size:
    {(shape, fill): IoU}. Read jointly, an outlined square is not mistaken for a filled ring. A striped
    fill is tried at every phase of its stripes (the best counts): stripes are a texture, and a model
    that draws them half a period on has drawn stripes (read at the renderer's one phase, such a
    square read as filled: IoU 0.61 filled against 0.25 striped)."""
    ys, xs = np.nonzero(fg)
    centre = (float(xs.mean()), float(ys.mean()))

    def best_iou(shape: str, fill: str) -> float:
        s = ShapeSpec(shape, spec.colour, fill, spec.size, spec.position, centre, spec.radius)
        offsets = range(2 * stripe_band(spec.radius)) if fill == "striped" else (0,)
        return max(_iou(ink_mask(s, centre, None, bg, k), fg) for k in offsets)

    return {(shape, fill): best_iou(shape, fill) for shape in SHAPES for fill in FILLS}


def grow(mask: np.ndarray, px: int) -> np.ndarray:
    t = torch.from_numpy(mask.astype(np.float32))[None, None]
    return (torch.nn.functional.max_pool2d(t, 2 * px + 1, 1, px)[0, 0] > 0).numpy()


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """The mask with every region it encloses filled: an outlined or striped shape's silhouette."""
    h, w = mask.shape
    canvas = Image.new("L", (w + 2, h + 2), 0)
    canvas.paste(Image.fromarray((mask * 255).astype(np.uint8)), (1, 1))
    ImageDraw.floodfill(canvas, (0, 0), 128)  # what the border reaches is outside
    return np.asarray(canvas)[1:-1, 1:-1] != 128


@dataclass
class Reading:
    """What an image shows, read against a scene's background."""

    fg: np.ndarray
    centroid: Optional[tuple[float, float]]
    colour: Optional[str]
    shape: Optional[str]
    fill_ratio: float  # share of the shape's (eroded) interior that is ink: ~1 filled, low outlined


def read(rgb: np.ndarray, scene, bg: Optional[np.ndarray] = None) -> Reading:
    """The first shape of `scene` as `rgb` shows it."""
    spec = scene.shapes[0]
    bg = background_image(scene, rgb.shape[0]) if bg is None else bg
    fg = foreground(rgb, bg)
    if fg.sum() < 4:
        return Reading(fg, None, None, None, 0.0)
    ys, xs = np.nonzero(fg)
    region = fg & grow(scene.masks[0], 3)
    colour = dominant_colour(rgb, region if region.sum() >= 4 else fg, bg)
    shape, _ = classify_shape(fg, spec, bg)
    inner = ~grow(~scene.masks[0], max(2, int(spec.radius * 0.35)))
    fill_ratio = float(fg[inner].mean()) if inner.sum() else 0.0
    return Reading(fg, (float(xs.mean()), float(ys.mean())), colour, shape, fill_ratio)


def shift(a: Reading, b: Reading) -> float:
    if a.centroid is None or b.centroid is None:
        return float("inf")
    return float(np.hypot(a.centroid[0] - b.centroid[0], a.centroid[1] - b.centroid[1]))


def components(mask: np.ndarray) -> np.ndarray:
    """8-connected component labels of a bool mask (0 = outside; labels are not consecutive).
    Min-label propagation: vectorised, a few dozen passes on a benchmark picture."""
    h, w = mask.shape
    big = h * w + 1
    labels = np.where(mask, np.arange(1, h * w + 1).reshape(h, w), big)
    while True:
        p = np.pad(labels, 1, constant_values=big)
        nb = np.minimum.reduce([p[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
                                for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
        new = np.where(mask, np.minimum(labels, nb), big)
        if (new == labels).all():
            return np.where(mask, labels, 0)
        labels = new


def without_specks(mask: np.ndarray, share: float = 0.1, min_px: int = 3) -> np.ndarray:
    """The mask less its components smaller than `share` of the largest (or than min_px): the noise a
    method leaves in the background is not part of the object."""
    if not mask.any():
        return mask
    labels = components(mask)
    ids, counts = np.unique(labels[labels > 0], return_counts=True)
    keep = ids[counts >= max(min_px, share * counts.max())]
    return np.isin(labels, keep)
