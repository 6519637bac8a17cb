"""Backgrounds for ShapesBench scenes: one colour, or textured in the ways photos are (a horizon, a
wall edge, a light gradient, grain, a striped fabric). Each is a float32 HxWx3 array in 0..255 whose
variation stays well below the reader's foreground distance, so a shape still reads against it."""
from __future__ import annotations

import numpy as np
from PIL import Image

from .shapesworld import COLOURS

TEXTURES = ("solid", "two-tone", "split", "gradient", "grain", "stripes")


def _variant(bg: np.ndarray) -> np.ndarray:
    """The background colour in the shade the training world uses for its lower half."""
    return bg * 0.8 + 20


def render_backdrop(colour: str, texture: str, w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    bg = np.array(COLOURS[colour], np.float32)
    arr = np.empty((h, w, 3), np.float32)
    arr[:] = bg
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if texture == "two-tone":      # a horizon anywhere between a third and two thirds down
        arr[int(h * rng.uniform(0.35, 0.65)):] = _variant(bg)
    elif texture == "split":       # a vertical edge
        arr[:, int(w * rng.uniform(0.3, 0.7)):] = _variant(bg)
    elif texture == "gradient":    # light falling off in a random direction
        a = rng.uniform(0, 2 * np.pi)
        ramp = (xx - w / 2) * np.cos(a) + (yy - h / 2) * np.sin(a)
        ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
        arr = bg * (1 - ramp[..., None]) + _variant(bg) * ramp[..., None]
    elif texture == "grain":       # smooth blotches of +-12 levels
        coarse = rng.normal(0, 1, (max(2, h // 6), max(2, w // 6))).astype(np.float32)
        up = np.asarray(Image.fromarray(coarse, "F").resize((w, h), Image.BICUBIC), np.float32)
        arr = arr + (12 * up / max(float(np.abs(up).max()), 1e-6))[..., None]
    elif texture == "stripes":     # faint diagonal stripes
        period = rng.integers(6, 11)
        phase = rng.uniform(0, period)
        band = ((xx + yy + phase) % period) < period / 2
        arr[band] = bg * 0.9 + 12
    elif texture != "solid":
        raise ValueError(texture)
    return arr.round().clip(0, 255)


def contrast(colour: str, backdrop: np.ndarray) -> float:
    """The smallest RGB distance between a named colour and any pixel of the backdrop."""
    c = np.array(COLOURS[colour], np.float32)
    return float(np.sqrt(((backdrop.reshape(-1, 3) - c) ** 2).sum(-1)).min())
