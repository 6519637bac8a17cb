"""Scenes with a known answer for the semantic tests: one shape anywhere on a plain picture of any
size (not only the demo's five trained places, not only square), its readings (where it is, its
silhouette, colour and fill, how much of the rest changed) and the text-to-image control (the same
model drawing the target caption from noise), which a structure-keeping edit must beat."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from tools.eval_demo import foreground, grow
from tools.shapesworld import COLOURS, POSITIONS, SIZES, ShapeSpec, draw_shape, dominant_colour


@dataclass
class Scene:
    rgb: np.ndarray          # HxWx3 uint8
    mask: np.ndarray         # the shape's silhouette, bool HxW
    spec: ShapeSpec
    background: str

    @property
    def size(self) -> tuple[int, int]:
        return self.rgb.shape[1], self.rgb.shape[0]

    def caption(self, colour: str | None = None, fill: str | None = None, shape: str | None = None) -> str:
        """The full caption, optionally edited; the place is the nearest named one (the shape itself
        sits between them), as ShapesBench writes it."""
        s = self.spec
        fill = s.fill if fill is None else fill
        fill_word = "" if fill == "filled" else f"{fill} "
        return (f"a {s.size} {fill_word}{colour or s.colour} {shape or s.shape} {s.position}, "
                f"on a {self.background} background")

    def short(self, colour: str | None = None, fill: str | None = None, shape: str | None = None) -> str:
        """A short prompt ("a blue circle"), optionally edited."""
        s = self.spec
        fill = s.fill if fill is None else fill
        words = ([] if fill == "filled" else [fill]) + [colour or s.colour, shape or s.shape]
        return ("an " if words[0][0] in "aeiou" else "a ") + " ".join(words)


def scene(w: int, h: int, cx: float, cy: float, shape="circle", colour="red", background="white",
          size="large", fill="filled") -> Scene:
    """A shape centred at (cx·w, cy·h), its radius the named size of the shorter side."""
    side = max(w, h)
    canvas = np.empty((side, side, 3), np.float32)
    canvas[:] = COLOURS[background]
    img = Image.fromarray(canvas.astype(np.uint8))
    place = min(POSITIONS, key=lambda p: (POSITIONS[p][0] - cx) ** 2 + (POSITIONS[p][1] - cy) ** 2)
    spec = ShapeSpec(shape, colour, fill, size, place, (cx * w, cy * h), SIZES[size] * min(w, h) / 2 * 1.1)
    mask = draw_shape(img, spec, COLOURS[background])
    return Scene(np.asarray(img)[:h, :w].copy(), mask[:h, :w], spec, background)


@dataclass
class Reading:
    fg: np.ndarray
    centroid: tuple[float, float] | None
    colour: str | None


def read(rgb: np.ndarray, sc: Scene) -> Reading:
    bg = np.broadcast_to(np.asarray(COLOURS[sc.background], np.float32), rgb.shape)
    fg = foreground(rgb, bg)
    if fg.sum() < 4:
        return Reading(fg, None, None)
    ys, xs = np.nonzero(fg)
    near = fg & grow(sc.mask, 3)
    return Reading(fg, (float(xs.mean()), float(ys.mean())), dominant_colour(rgb, near if near.sum() >= 4 else fg, bg))


def shift(a: Reading, b: Reading) -> float:
    if a.centroid is None or b.centroid is None:
        return math.inf
    return math.dist(a.centroid, b.centroid)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def fill_ratio(rgb: np.ndarray, sc: Scene) -> float:
    """The share of the shape's eroded interior that is ink (about 1 filled, low outlined)."""
    inner = ~grow(~sc.mask, max(2, int(sc.spec.radius * 0.35)))
    return float(read(rgb, sc).fg[inner].mean()) if inner.any() else 0.0


def rest_change(rgb_in: np.ndarray, rgb_out: np.ndarray, keep_out: np.ndarray) -> float:
    """Mean absolute change (levels, 0-255) outside `keep_out` grown by 3 px: the rest of the picture."""
    rest = ~grow(keep_out, 3)
    return float(np.abs(rgb_out[rest].astype(float) - rgb_in[rest].astype(float)).mean()) if rest.any() else 0.0


def layout_kept(rgb_in: np.ndarray, rgb_out: np.ndarray, sc: Scene, silhouette: bool = True) -> bool:
    """The structure check: the shape is where it was (centroid within 3 px) and, for edits that
    keep the shape, covers the same silhouette (IoU >= 0.7)."""
    a, b = read(rgb_in, sc), read(rgb_out, sc)
    return shift(a, b) <= 3 and (not silhouette or iou(b.fg, sc.mask) >= 0.7)


@torch.no_grad()
def drawn_from_text(model, caption: str, size: tuple[int, int], seed: int, guidance: float, steps: int = 20) -> np.ndarray:
    """The control: the model draws `caption` from noise (DDIM, classifier-free guidance) at the
    scene's size with the edit's seed. An edit that only draws the caption would look like this."""
    from core.sampling import draw_from_text

    w, h = size
    img = model.decode_latents(draw_from_text(model, caption, w, h, seed, guidance, steps))
    return ((img[0] + 1) * 127.5).round().clamp(0, 255).byte().permute(1, 2, 0).cpu().numpy()
