"""The active layer's mask on the canvas: what the mask hides, tinted (a "rubylith", as Photoshop's
quick mask shows it), while the mask is being painted or when asked to show it."""
from __future__ import annotations

import numpy as np

from .canvas_items import EditMaskOverlayItem

LAYER_MASK_TINT = (40, 200, 255)  # another colour than the selection's tint, so they are never confused
LAYER_MASK_ALPHA = 0.5


class LayerMaskOverlayItem(EditMaskOverlayItem):
    """The hidden part of the active layer (255 - its mask) as a tint; nothing when it has no mask."""
    tint, alpha = LAYER_MASK_TINT, LAYER_MASK_ALPHA

    def __init__(self, document):
        super().__init__(document)
        self.setZValue(4)
        self.setVisible(False)
        document.reset.connect(self.rebuild)
        document.layers_changed.connect(self.rebuild)
        document.active_layer_changed.connect(lambda _id: self.rebuild())
        document.layer_changed.connect(self._on_layer_changed)
        document.layer_mask_stroked.connect(self._on_stroke)

    def _mask_region(self, x, y, w, h) -> np.ndarray:
        layer = self._doc.active_layer
        if layer is None or layer.mask is None:
            return np.zeros((min(h, self._doc.height - y), min(w, self._doc.width - x)), np.uint8)
        return 255 - layer.mask[y:y + h, x:x + w]

    def _on_layer_changed(self, layer_id: int) -> None:
        active = self._doc.active_layer
        if self.isVisible() and active is not None and active.id == layer_id:
            self.refresh(0, 0, self._doc.width, self._doc.height)

    def _on_stroke(self, layer_id: int, rect) -> None:
        active = self._doc.active_layer
        if self.isVisible() and active is not None and active.id == layer_id:
            self.refresh(rect.x(), rect.y(), rect.width(), rect.height())

    def rebuild(self):
        if self.isVisible():  # hidden, it costs nothing; it is rebuilt when shown
            super().rebuild()

    def setVisible(self, visible: bool) -> None:
        super().setVisible(visible)
        self.rebuild()
