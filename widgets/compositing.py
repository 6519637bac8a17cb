"""Layer compositing with QPainter: the one place where "what the picture looks like" is decided.

The canvas, export and merge-down all use it, so what an artist sees is what gets saved.
"""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage, QPainter

from .qimage import qimage_to_rgba, rgba_to_qimage


def apply_mask(rgba: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Layer pixels with the layer mask multiplied into alpha (255 = fully shown)."""
    if mask is None:
        return rgba
    out = rgba.copy()
    out[..., 3] = (rgba[..., 3].astype(np.uint16) * mask + 127) // 255
    return out


class LayerImageCache:
    """Premultiplied QImages per layer, rebuilt only when a layer's pixels or mask change."""

    def __init__(self):
        self._images: dict[int, tuple[int, QImage]] = {}

    def image_for(self, layer) -> QImage:
        key, revision = getattr(layer, "id", id(layer)), getattr(layer, "revision", 0)
        hit = self._images.get(key)
        if hit is not None and hit[0] == revision:
            return hit[1]
        img = rgba_to_qimage(apply_mask(layer.pixels, layer.mask)).convertToFormat(
            QImage.Format.Format_ARGB32_Premultiplied)
        self._images[key] = (revision, img)
        return img

    def update_region(self, layer, x: int, y: int, w: int, h: int) -> bool:
        """Redo one rectangle of a cached layer image (a live mask stroke) instead of all of it.
        False when there is nothing cached to patch (the next image_for builds it whole)."""
        hit = self._images.get(getattr(layer, "id", id(layer)))
        if hit is None or hit[0] != getattr(layer, "revision", 0) or w <= 0 or h <= 0:
            return False
        mask = None if layer.mask is None else layer.mask[y:y + h, x:x + w]
        patch = rgba_to_qimage(apply_mask(layer.pixels[y:y + h, x:x + w], mask))
        painter = QPainter(hit[1])
        painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_Source)
        painter.drawImage(x, y, patch)
        painter.end()
        return True

    def forget_missing(self, live_ids) -> None:
        for lid in set(self._images) - set(live_ids):
            del self._images[lid]


def paint_layers(painter: QPainter, layers, cache: LayerImageCache | None = None) -> None:
    cache = cache or LayerImageCache()
    for layer in layers:  # bottom to top
        if not layer.visible or layer.opacity <= 0.0:
            continue
        painter.setOpacity(layer.opacity)
        painter.drawImage(0, 0, cache.image_for(layer))
    painter.setOpacity(1.0)


def composite_qimage(layers, width: int, height: int, cache: LayerImageCache | None = None,
                     background=None) -> QImage:
    out = QImage(max(width, 1), max(height, 1), QImage.Format.Format_ARGB32_Premultiplied)
    out.fill(background if background is not None else Qt.GlobalColor.transparent)
    painter = QPainter(out)
    paint_layers(painter, layers, cache)
    painter.end()
    return out


def composite_rgba(layers, width: int, height: int, background=None) -> np.ndarray:
    return qimage_to_rgba(composite_qimage(layers, width, height, background=background))
