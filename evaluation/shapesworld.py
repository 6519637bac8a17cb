"""ShapesWorld: a procedural world of one or two coloured shapes, with captions and ground truth.

Seeded, reproducible and unlimited; used to train the demo model, to test every method on inputs
whose right answer is known (where a shape is, what colour, which shape, which fill) and to build
ShapesBench (evaluation/shapesbench.py). Pictures are square in the training world (`sample_scene`);
the drawing functions take any width and height, so benchmark scenes need not be."""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Optional, Union

import numpy as np
from PIL import Image, ImageDraw

COLOURS = {
    "red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (235, 205, 40),
    "orange": (240, 140, 30), "purple": (140, 60, 180), "black": (25, 25, 25), "white": (245, 245, 245),
}
BACKGROUNDS = ("white", "black", "yellow", "blue", "green")
SHAPES = ("circle", "square", "triangle", "star", "ring")
FILLS = ("filled", "outlined", "striped")
SIZES = {"small": 0.22, "medium": 0.32, "large": 0.44}
POSITIONS = {"on the left": (0.3, 0.5), "on the right": (0.7, 0.5), "at the top": (0.5, 0.3),
             "at the bottom": (0.5, 0.7), "in the centre": (0.5, 0.5)}


@dataclass
class ShapeSpec:
    shape: str
    colour: str
    fill: str
    size: str
    position: str
    centre: tuple[float, float]  # pixels
    radius: float                # pixels


@dataclass
class Scene:
    image: Image.Image
    caption: str
    shapes: list[ShapeSpec]
    background: str
    two_tone: bool
    masks: list[np.ndarray] = field(default_factory=list)  # one bool HxW per shape
    backdrop: Optional[np.ndarray] = None  # the background alone (float32 HxWx3), to read shapes against

    def centroid(self, k: int = 0) -> tuple[float, float]:
        ys, xs = np.nonzero(self.masks[k])
        return float(xs.mean()), float(ys.mean())


def _polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    if shape == "square":
        s = r * 0.85
        return [(cx - s, cy - s), (cx + s, cy - s), (cx + s, cy + s), (cx - s, cy + s)]
    if shape == "triangle":
        return [(cx + r * math.cos(a), cy + r * math.sin(a)) for a in
                (-math.pi / 2, -math.pi / 2 + 2 * math.pi / 3, -math.pi / 2 + 4 * math.pi / 3)]
    if shape == "star":
        pts = []
        for k in range(10):
            rr = r if k % 2 == 0 else r * 0.45
            a = -math.pi / 2 + k * math.pi / 5
            pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
        return pts
    raise ValueError(shape)


Size = Union[int, tuple[int, int]]  # a square side, or (width, height)


def _wh(size: Size) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def shape_mask(shape: str, cx: float, cy: float, r: float, size: Size, supersample: int = 4) -> np.ndarray:
    """The filled silhouette of a shape (bool HxW), whatever its fill style."""
    w, h = _wh(size)
    m = Image.new("L", (w * supersample, h * supersample), 0)
    d = ImageDraw.Draw(m)
    s = supersample
    if shape in ("circle", "ring"):
        d.ellipse([(cx - r) * s, (cy - r) * s, (cx + r) * s, (cy + r) * s], fill=255)
    else:
        d.polygon([(x * s, y * s) for x, y in _polygon(shape, cx, cy, r)], fill=255)
    return np.asarray(m.resize((w, h), Image.BOX)) > 127


def stripe_band(radius: float) -> int:
    """The width in px of one stripe (and of the gap after it) of a striped shape of this radius."""
    return max(2, int(radius / 3))


def draw_shape(img: Image.Image, spec: ShapeSpec, background_rgb, stripe_offset: int = 0) -> np.ndarray:
    """Draws `spec` onto `img` in place; returns its silhouette. `background_rgb` is unused (kept for
    callers): the ink replaces whatever is under it. stripe_offset moves a striped fill's stripes
    along their normal by that many px (the reader tries every phase)."""
    size = img.size  # (width, height)
    cx, cy = spec.centre
    r = spec.radius
    colour = np.array(COLOURS[spec.colour], np.float32)
    outer = shape_mask(spec.shape, cx, cy, r, size)
    ink = outer.copy()
    if spec.shape == "ring":
        ink &= ~shape_mask("circle", cx, cy, r * 0.55, size)
    if spec.fill == "outlined":
        width = max(1.5, r * 0.18)
        inner = shape_mask("circle" if spec.shape in ("circle", "ring") else spec.shape, cx, cy,
                           max(r - width * (1.0 if spec.shape in ("circle", "ring", "square") else 1.8), 1), size)
        ink &= ~inner
    elif spec.fill == "striped":
        yy = np.arange(size[1])[:, None] + np.arange(size[0])[None, :]
        ink &= ((yy + stripe_offset) // stripe_band(r)) % 2 == 0
        ink |= outer & ~shape_mask(spec.shape if spec.shape != "ring" else "circle", cx, cy, r * 0.85, size)
        if spec.shape == "ring":
            ink &= ~shape_mask("circle", cx, cy, r * 0.55, size)
    arr = np.asarray(img, np.float32).copy()
    arr[ink] = colour
    img.paste(Image.fromarray(arr.round().astype(np.uint8)))
    return outer


def caption_of(shapes: list[ShapeSpec], background: str) -> str:
    parts = []
    for s in shapes:
        fill = "" if s.fill == "filled" else f"{s.fill} "
        parts.append(f"a {s.size} {fill}{s.colour} {s.shape} {s.position}")
    return " and ".join(parts) + f", on a {background} background"


def article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def nearest_position(xy, size: tuple[int, int] = (64, 64)) -> str:
    """The named place (of the five) nearest to the point xy on a picture of `size`."""
    w, h = size
    return min(POSITIONS, key=lambda p: (POSITIONS[p][0] * w - xy[0]) ** 2 + (POSITIONS[p][1] * h - xy[1]) ** 2)


def partial_caption(shapes: list[ShapeSpec], background: str, rng: random.Random) -> str:
    """A caption that names only some of what the picture shows, as people write prompts: "a red
    circle", "a striped shape", "a small square at the top, on a black background", "a shape".
    One shape (or, in a two-shape scene, sometimes both), each attribute named or left out at
    random. Training on these beside the full captions lets the demo model follow short prompts as
    Stable Diffusion does, instead of reading "a blue square" as "paint everything blue"."""
    if rng.random() < 0.1:
        return "a shape" if len(shapes) == 1 or rng.random() < 0.5 else "two shapes"
    chosen = list(shapes) if len(shapes) > 1 and rng.random() < 0.4 else [rng.choice(shapes)]
    parts = []
    for s in chosen:
        words = [s.size] if rng.random() < 0.3 else []
        if rng.random() < 0.4:
            words.append(s.fill)
        if rng.random() < 0.6:
            words.append(s.colour)
        words.append(s.shape if rng.random() < 0.75 else "shape")
        if rng.random() < 0.3:
            words.append(s.position)
        parts.append(f"{article(words[0])} {' '.join(words)}")
    text = " and ".join(parts)
    return text + (f", on a {background} background" if rng.random() < 0.3 else "")


def two_tone_backdrop(background: str, w: int, h: int, two_tone: bool) -> np.ndarray:
    """The training world's background: one colour, or its lower half darkened (float32 HxWx3)."""
    bg = np.array(COLOURS[background], np.float32)
    arr = np.empty((h, w, 3), np.float32)
    arr[:] = bg
    if two_tone:
        arr[h // 2:] = bg * 0.8 + 20
    return arr.round().clip(0, 255)


def sample_scene(rng: random.Random, px: int = 64, n_shapes: int | None = None, **fixed) -> Scene:
    """One random scene; keyword arguments fix any attribute of the first shape (shape=, colour=,
    fill=, size=, position=) or the background (background=). The sequence of random draws is part of
    the demo model's training data: keep it unchanged."""
    size = px
    background = fixed.get("background") or rng.choice(BACKGROUNDS)
    two_tone = fixed.get("two_tone", rng.random() < 0.3)
    bg = np.array(COLOURS[background], np.float32)
    backdrop = two_tone_backdrop(background, size, size, two_tone)
    img = Image.fromarray(backdrop.astype(np.uint8))
    n = n_shapes or (1 if rng.random() < 0.7 else 2)
    shapes, masks = [], []
    used_positions = set()
    for k in range(n):
        pick = (lambda key, options: fixed.get(key) if k == 0 and fixed.get(key) else rng.choice(options))
        colour = pick("colour", [c for c in COLOURS if c != background])
        position = pick("position", [p for p in POSITIONS if p not in used_positions and p != "in the centre"]
                        if n > 1 else list(POSITIONS))
        used_positions.add(position)
        size_name = pick("size", list(SIZES) if n == 1 else ["small", "medium"])
        shape = pick("shape", list(SHAPES))
        fill = pick("fill", list(FILLS))
        fx, fy = POSITIONS[position]
        jitter = size * 0.04
        cx = fx * size + rng.uniform(-jitter, jitter)
        cy = fy * size + rng.uniform(-jitter, jitter)
        r = SIZES[size_name] * size / 2
        spec = ShapeSpec(shape, colour, fill, size_name, position, (cx, cy), r)
        masks.append(draw_shape(img, spec, bg))
        shapes.append(spec)
    return Scene(img, caption_of(shapes, background), shapes, background, two_tone, masks, backdrop)


def scene_anywhere(rng: random.Random, px: int = 64) -> Scene:
    """One shape anywhere in the picture (not only jittered around the five places), its caption
    naming the nearest of the five: as a photo's caption says "on the left" of anything left of
    centre. Training on these beside `sample_scene`'s keeps a place word from pinning an object to
    one exact spot, so an edit whose caption names the place does not pull the object there."""
    background = rng.choice(BACKGROUNDS)
    two_tone = rng.random() < 0.3
    backdrop = two_tone_backdrop(background, px, px, two_tone)
    img = Image.fromarray(backdrop.astype(np.uint8))
    size_name = rng.choice(list(SIZES))
    r = SIZES[size_name] * px / 2
    cx, cy = rng.uniform(r + 1, px - r - 1), rng.uniform(r + 1, px - r - 1)
    spec = ShapeSpec(rng.choice(SHAPES), rng.choice([c for c in COLOURS if c != background]), rng.choice(FILLS),
                     size_name, nearest_position((cx, cy), (px, px)), (cx, cy), r)
    mask = draw_shape(img, spec, None)
    return Scene(img, caption_of([spec], background), [spec], background, two_tone, [mask], backdrop)


def scenes(seed: int, count: int, px: int = 64):
    rng = random.Random(seed)
    for _ in range(count):
        yield sample_scene(rng, px)


def dominant_colour(rgb: np.ndarray, mask: np.ndarray, background: np.ndarray | None = None) -> str:
    """The named colour nearest to the median colour under `mask` (for semantic checks).

    With `background` (RGB, one colour or HxWx3), only the half of the pixels farthest from it count:
    a thin stroke's edges are blends of ink and background (anti-aliasing, the VAE's blur), and a
    red outline on blue would otherwise read as purple. Its core is the ink."""
    pix = rgb[mask].astype(np.float32)
    if background is not None and len(pix) >= 4:
        bg = np.broadcast_to(np.asarray(background, np.float32), rgb.shape)[mask]
        dist = ((pix - bg) ** 2).sum(-1)
        pix = pix[dist >= np.median(dist)]
    med = np.median(pix, axis=0) if len(pix) else np.zeros(3)
    return min(COLOURS, key=lambda c: float(((np.array(COLOURS[c]) - med) ** 2).sum()))
