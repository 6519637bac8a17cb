"""Graphics items the canvas is built from. All live in image coordinates (1 scene unit = 1 image
pixel); dots and arrow heads are drawn at a fixed screen size so they stay usable at any zoom."""
from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QImage, QPainter, QPainterPath, QPen, QPixmap, QPolygonF
from PySide6.QtWidgets import QGraphicsItem

from .compositing import LayerImageCache, composite_qimage, paint_layers
from .preview_overlay import mask_alpha, overlay_size, preview_overlay

HANDLE_COLOR = QColor(229, 57, 53)
TARGET_COLOR = QColor(30, 136, 229)
SELECTED_RING = QColor(255, 214, 0)
MASK_TINT = (255, 60, 90)   # the editable region is tinted this colour…
MASK_ALPHA = 0.42           # …at this strength, so the picture stays readable under it
DOT_RADIUS = 8.0
# The two ends of a point pair, as the canvas names them to the document (Document.move_point).
HANDLE, TARGET = "handle", "target"


def _checker_brush() -> QBrush:
    pm = QPixmap(16, 16)
    pm.fill(QColor(102, 102, 102))
    p = QPainter(pm)
    p.fillRect(0, 0, 8, 8, QColor(153, 153, 153))
    p.fillRect(8, 8, 8, 8, QColor(153, 153, 153))
    p.end()
    return QBrush(pm)


class CompositeItem(QGraphicsItem):
    """The layers, composited, over a checkerboard that shows where the picture is transparent."""

    def __init__(self, document):
        super().__init__()
        self._doc = document
        self._cache = LayerImageCache()
        self._composite: QImage | None = None
        self._checker = _checker_brush()
        self.setZValue(0)

    def invalidate(self):
        self._composite = None
        self._cache.forget_missing([l.id for l in self._doc.layers])
        self.prepareGeometryChange()
        self.update()

    def refresh_region(self, layer_id: int, rect) -> None:
        """One layer changed inside rect (a live mask stroke): recomposite only that rectangle."""
        x, y, w, h = rect.x(), rect.y(), rect.width(), rect.height()
        layer = next((l for l in self._doc.layers if l.id == layer_id), None)
        if layer is None or self._composite is None or not self._cache.update_region(layer, x, y, w, h):
            self.invalidate()
            return
        painter = QPainter(self._composite)
        painter.setClipRect(x, y, w, h)
        painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_Source)
        painter.fillRect(x, y, w, h, Qt.GlobalColor.transparent)
        painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_SourceOver)
        paint_layers(painter, self._doc.layers, self._cache)
        painter.end()
        self.update(QRectF(x, y, w, h))

    def composite(self) -> QImage:
        if self._composite is None:
            self._composite = composite_qimage(self._doc.layers, self._doc.width, self._doc.height, self._cache)
        return self._composite

    def boundingRect(self):
        return QRectF(0, 0, self._doc.width, self._doc.height)

    def paint(self, painter: QPainter, option, widget=None):
        if self._doc.is_empty:
            return
        rect = self.boundingRect()
        # The checkerboard is drawn in screen pixels: its squares keep their size at every zoom.
        t = painter.worldTransform()
        device_rect = t.mapRect(rect)
        painter.save()
        painter.resetTransform()
        painter.setBrushOrigin(device_rect.topLeft())
        painter.fillRect(device_rect, self._checker)
        painter.restore()
        zoomed_out = t.m11() < 1.0
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, zoomed_out)
        exposed = option.exposedRect.intersected(rect).toAlignedRect()
        if exposed.isEmpty():
            return
        painter.drawImage(QRectF(exposed), self.composite(), QRectF(exposed))


class EditMaskOverlayItem(QGraphicsItem):
    """The edit mask as a translucent tint. Its ARGB buffer is updated in place, only where a
    stroke touched, so painting stays fast on large pictures. Subclasses tint another mask
    (`_mask_region`) in another colour."""
    tint, alpha = MASK_TINT, MASK_ALPHA

    def __init__(self, document):
        super().__init__()
        self._doc = document
        self._buf = np.zeros((0, 0, 4), np.uint8)
        self._image = QImage()
        self.setZValue(3)

    def rebuild(self):
        self.prepareGeometryChange()
        h, w = self._doc.height, self._doc.width
        self._buf = np.zeros((h, w, 4), np.uint8)
        if w and h:
            # The QImage wraps the numpy buffer without copying; both live as long as this item.
            self._image = QImage(self._buf.data, w, h, 4 * w, QImage.Format.Format_ARGB32_Premultiplied)
            self.refresh(0, 0, w, h)
        else:
            self._image = QImage()
        self.update()

    def _mask_region(self, x, y, w, h) -> np.ndarray:
        return self._doc.edit_mask_view()[y:y + h, x:x + w]

    def refresh(self, x, y, w, h):
        if self._buf.shape[:2] != (self._doc.height, self._doc.width):
            self.rebuild()
            return
        a = self._mask_region(x, y, w, h).astype(np.float32) * (self.alpha / 255.0)
        r, g, b = self.tint
        region = self._buf[y:y + h, x:x + w]
        # Premultiplied ARGB32 is B, G, R, A in memory on little-endian machines.
        region[..., 0] = (a * b + 0.5).astype(np.uint8)
        region[..., 1] = (a * g + 0.5).astype(np.uint8)
        region[..., 2] = (a * r + 0.5).astype(np.uint8)
        region[..., 3] = (a * 255 + 0.5).astype(np.uint8)
        self.update(QRectF(x, y, w, h))

    def boundingRect(self):
        return QRectF(0, 0, self._doc.width, self._doc.height)

    def paint(self, painter, option, widget=None):
        if self._image.isNull():
            return
        exposed = option.exposedRect.intersected(self.boundingRect()).toAlignedRect()
        if not exposed.isEmpty():
            painter.drawImage(QRectF(exposed), self._image, QRectF(exposed))


class PreviewItem(QGraphicsItem):
    """A transient picture over the composite (an edit's live preview): upsampled to the picture's
    resolution and shown inside the edit's mask only (widgets/preview_overlay.py)."""

    def __init__(self, document):
        super().__init__()
        self._doc = document
        self._image: QImage | None = None     # what the edit sent
        self._overlay: QImage | None = None   # what is drawn
        self._alpha: tuple | None = None      # (the mask array, its alpha image): one per edit
        self.setZValue(2)

    def set_image(self, image: QImage | None, mask=None):
        if image is None or image.isNull():
            self._image = self._overlay = None
        else:
            w, h = self._doc.width, self._doc.height
            alpha = None
            if mask is not None:
                if self._alpha is None or self._alpha[0] is not mask:
                    self._alpha = (mask, mask_alpha(mask, overlay_size(w, h)))
                alpha = self._alpha[1]
            self._image = image
            self._overlay = preview_overlay(image, w, h, alpha)
        self.update()

    def image(self) -> QImage | None:
        return self._image

    def overlay(self) -> QImage | None:
        return self._overlay

    def boundingRect(self):
        return QRectF(0, 0, self._doc.width, self._doc.height)

    def paint(self, painter, option, widget=None):
        if self._overlay is not None:
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
            painter.drawImage(self.boundingRect(), self._overlay)


class HandlePointItem(QGraphicsItem):
    """One end of a point pair: a numbered dot, red for the handle and blue for the target.

    It ignores the view's scale, so it stays the same size on screen while its position is an
    image coordinate: zooming never moves a point off its pixel."""

    def __init__(self, pair_index: int, end: str, number: int, color: QColor):
        super().__init__()
        self.pair_index, self.end, self.number, self.color = pair_index, end, number, color
        self.selected = False
        self.pending = False
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations)
        self.setZValue(20 if end == "target" else 21)
        self.setCursor(Qt.CursorShape.SizeAllCursor)

    def boundingRect(self):
        r = DOT_RADIUS + 4
        return QRectF(-r, -r, 2 * r, 2 * r)

    def shape(self):
        path = QPainterPath()
        r = DOT_RADIUS + 3  # a little larger than the dot: easier to grab
        path.addEllipse(QPointF(0, 0), r, r)
        return path

    def set_selected(self, selected: bool):
        if selected != self.selected:
            self.selected = selected
            self.update()

    def paint(self, painter, option, widget=None):
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        if self.selected:
            painter.setPen(QPen(SELECTED_RING, 3))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawEllipse(QPointF(0, 0), DOT_RADIUS + 2.5, DOT_RADIUS + 2.5)
        pen = QPen(QColor(255, 255, 255), 1.5)
        if self.pending:
            pen.setStyle(Qt.PenStyle.DashLine)
        painter.setPen(pen)
        painter.setBrush(self.color)
        painter.drawEllipse(QPointF(0, 0), DOT_RADIUS, DOT_RADIUS)
        font = QFont(painter.font())
        font.setPixelSize(10)
        font.setBold(True)
        painter.setFont(font)
        painter.setPen(QColor(255, 255, 255))
        painter.drawText(QRectF(-DOT_RADIUS, -DOT_RADIUS, 2 * DOT_RADIUS, 2 * DOT_RADIUS),
                         Qt.AlignmentFlag.AlignCenter, str(self.number))


class PointArrowItem(QGraphicsItem):
    """The arrow from a handle to its target: a line in image coordinates with a screen-sized head."""

    def __init__(self, handle: QPointF, target: QPointF):
        super().__init__()
        self._a, self._b = QPointF(handle), QPointF(target)
        self._scale = 1.0
        self.setZValue(15)

    def set_ends(self, handle: QPointF, target: QPointF):
        self.prepareGeometryChange()
        self._a, self._b = QPointF(handle), QPointF(target)

    def set_view_scale(self, scale: float):
        """The head and line width are in screen pixels; the bounds must cover them at this zoom."""
        self.prepareGeometryChange()
        self._scale = max(scale, 1e-6)

    def ends(self):
        return QPointF(self._a), QPointF(self._b)

    def boundingRect(self):
        m = (DOT_RADIUS + 12) / self._scale
        return QRectF(self._a, self._b).normalized().adjusted(-m, -m, m, m)

    def paint(self, painter, option, widget=None):
        t = painter.worldTransform()
        a, b = t.map(self._a), t.map(self._b)
        dx, dy = b.x() - a.x(), b.y() - a.y()
        length = math.hypot(dx, dy)
        if length < 2 * DOT_RADIUS + 2:
            return  # the dots overlap: an arrow would only clutter them
        ux, uy = dx / length, dy / length
        start = QPointF(a.x() + ux * DOT_RADIUS, a.y() + uy * DOT_RADIUS)
        tip = QPointF(b.x() - ux * (DOT_RADIUS + 1), b.y() - uy * (DOT_RADIUS + 1))
        painter.save()
        painter.resetTransform()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        head = 11.0
        base = QPointF(tip.x() - ux * head, tip.y() - uy * head)
        left = QPointF(base.x() - uy * head * 0.45, base.y() + ux * head * 0.45)
        right = QPointF(base.x() + uy * head * 0.45, base.y() - ux * head * 0.45)
        # A dark halo under a white arrow keeps it readable on light and dark pictures alike.
        for color, width in ((QColor(0, 0, 0, 150), 4.0), (QColor(255, 255, 255), 2.0)):
            painter.setPen(QPen(color, width, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap,
                                Qt.PenJoinStyle.RoundJoin))
            painter.drawLine(start, base)
            painter.setBrush(color)
            painter.drawPolygon(QPolygonF([tip, left, right]))
        painter.restore()


class BrushCursorItem(QGraphicsItem):
    """The brush outline under the mouse, at the brush's real size in image pixels."""

    def __init__(self):
        super().__init__()
        self._diameter = 10.0
        self.setZValue(100)
        self.setVisible(False)
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)

    def set_diameter(self, d: float):
        self.prepareGeometryChange()
        self._diameter = d

    def boundingRect(self):
        r = self._diameter / 2 + 2
        return QRectF(-r, -r, 2 * r, 2 * r)

    def paint(self, painter, option, widget=None):
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        r = self._diameter / 2
        for color, style in ((QColor(0, 0, 0, 200), Qt.PenStyle.SolidLine),
                             (QColor(255, 255, 255, 230), Qt.PenStyle.DashLine)):
            pen = QPen(color, 1, style)
            pen.setCosmetic(True)
            painter.setPen(pen)
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawEllipse(QPointF(0, 0), r, r)
