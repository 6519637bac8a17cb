"""An edit's live preview as the canvas shows it: the method's small preview (often the latent's
size, 16×11 px for a 600×400 photo on the demo model) smoothly upsampled to the picture's
resolution, shown only where the edit may change the picture (the request's mask, its soft edge
kept) and blended over the picture there."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage

# The overlay is built at the picture's size up to this many pixels on its longer side (the canvas
# draws it stretched beyond): a 6000 px photo does not cost a 36-megapixel rescale per step.
MAX_SIDE = 2048


def overlay_size(width: int, height: int, max_side: int = MAX_SIDE) -> tuple[int, int]:
    scale = min(1.0, max_side / max(width, height, 1))
    return max(1, round(width * scale)), max(1, round(height * scale))


def mask_alpha(mask: np.ndarray, size: tuple[int, int]) -> QImage:
    """A float 0..1 (or uint8) HxW mask as an 8-bit alpha image of `size`, smoothly resampled."""
    m = np.asarray(mask)
    m8 = m if m.dtype == np.uint8 else np.clip(np.round(m * 255.0), 0, 255).astype(np.uint8)
    m8 = np.ascontiguousarray(m8)
    h, w = m8.shape
    img = QImage(m8.data, w, h, w, QImage.Format.Format_Grayscale8).copy()
    if (w, h) != size:
        img = img.scaled(size[0], size[1], Qt.AspectRatioMode.IgnoreAspectRatio,
                         Qt.TransformationMode.SmoothTransformation)
    return img


def preview_overlay(preview: QImage, width: int, height: int, alpha: QImage | None = None) -> QImage:
    """The preview at (up to) the picture's resolution, transparent outside `alpha` (mask_alpha)."""
    size = overlay_size(width, height)
    up = preview.convertToFormat(QImage.Format.Format_ARGB32)
    if (up.width(), up.height()) != size:
        up = up.scaled(size[0], size[1], Qt.AspectRatioMode.IgnoreAspectRatio,
                       Qt.TransformationMode.SmoothTransformation)
    if alpha is not None:
        if (alpha.width(), alpha.height()) != size:
            alpha = alpha.scaled(size[0], size[1], Qt.AspectRatioMode.IgnoreAspectRatio,
                                 Qt.TransformationMode.SmoothTransformation)
        up.setAlphaChannel(alpha)
    return up
