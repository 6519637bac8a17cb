"""Before/after on the canvas: hold backslash to see what is below the compared layer, or split the
canvas with a slider, "before" on the left and "after" (the layer over what is below it) on the
right. Only the view changes: the document, its layers and its history stay exactly as they were.

The compared layer is the active one when it is an edit's result; otherwise the nearest result
above it (an edit lands just above its source, which stays the layer being edited); otherwise the
active layer itself."""
from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QKeySequence, QPainter, QPen, QShortcut
from PySide6.QtWidgets import QApplication, QFrame, QGraphicsItem, QHBoxLayout, QLabel, QSlider, QToolButton

from .canvas_items import _checker_brush
from .compositing import LayerImageCache, composite_qimage

HOLD_KEY = Qt.Key.Key_Backslash


def compared_layer(doc):
    active = doc.active_layer
    if active is None or active.metadata.get("method"):
        return active
    for layer in doc.layers[doc.index_of(active) + 1:]:
        if layer.visible and layer.metadata.get("method"):
            return layer
    return active


class CompareItem(QGraphicsItem):
    """Covers the composite with "before" (everywhere, or left of the split) and "after"."""

    def __init__(self, document):
        super().__init__()
        self._doc = document
        self._before: QImage | None = None
        self._after: QImage | None = None
        self._split: float | None = None
        self._caption = ("", "")
        self._checker = _checker_brush()
        self.setZValue(1)
        self.setVisible(False)
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)

    def show_images(self, before: QImage, after: QImage | None, split: float | None, caption=("", "")):
        self._before, self._after, self._split, self._caption = before, after, split, caption
        self.setVisible(True)
        self.update()

    def clear(self):
        self._before = self._after = None
        self.setVisible(False)

    def boundingRect(self):
        return QRectF(0, 0, self._doc.width, self._doc.height)

    def paint(self, painter: QPainter, option, widget=None):
        if self._before is None:
            return
        rect = self.boundingRect()
        t = painter.worldTransform()
        split_x = rect.width() if self._split is None else rect.width() * self._split
        left = QRectF(0, 0, split_x, rect.height())
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, t.m11() < 1.0)
        for part, image in ((left, self._before), (QRectF(split_x, 0, rect.width() - split_x, rect.height()),
                                                   self._after)):
            if image is None or part.width() <= 0:
                continue
            painter.save()
            painter.resetTransform()
            device = t.mapRect(part)
            painter.setBrushOrigin(t.mapRect(rect).topLeft())
            painter.fillRect(device, self._checker)
            painter.restore()
            painter.drawImage(part, image, part)
        painter.save()
        painter.resetTransform()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        top_left = t.map(QPointF(0, 0))
        bottom_right = t.map(QPointF(rect.width(), rect.height()))
        if self._split is not None:
            x = t.map(QPointF(split_x, 0)).x()
            for color, width in ((QColor(0, 0, 0, 160), 3.0), (QColor(255, 255, 255), 1.0)):
                painter.setPen(QPen(color, width))
                painter.drawLine(QPointF(x, top_left.y()), QPointF(x, bottom_right.y()))
        self._draw_caption(painter, top_left, bottom_right, split_x * t.m11() + top_left.x())
        painter.restore()

    def _draw_caption(self, painter, top_left, bottom_right, split_device_x):
        before, after = self._caption
        font = painter.font()
        font.setBold(True)
        painter.setFont(font)
        metrics = painter.fontMetrics()
        y = max(top_left.y(), 0) + 8
        spots = [(before, top_left.x() + 8)]
        if self._split is not None and after:
            spots.append((after, split_device_x + 8))
        for text, x in spots:
            if not text:
                continue
            box = QRectF(x, y, metrics.horizontalAdvance(text) + 12, metrics.height() + 6)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QColor(0, 0, 0, 170))
            painter.drawRoundedRect(box, 4, 4)
            painter.setPen(QColor(255, 255, 255))
            painter.drawText(box, Qt.AlignmentFlag.AlignCenter, text)


class SplitBar(QFrame):
    """Before ◀ slider ▶ After, floating at the top of the canvas while the split is on."""
    moved = Signal(float)
    closed = Signal()

    def __init__(self, parent):
        super().__init__(parent)
        self.setObjectName("compareSplitBar")
        self.setAutoFillBackground(True)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        row = QHBoxLayout(self)
        row.setContentsMargins(8, 3, 4, 3)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, 1000)
        self.slider.setValue(500)
        self.slider.setFixedWidth(220)
        self.slider.setToolTip("Move the line between before (left) and after (right)")
        close = QToolButton()
        close.setText("✕")
        close.setAutoRaise(True)
        close.setToolTip("End the comparison")
        row.addWidget(QLabel("Before"))
        row.addWidget(self.slider)
        row.addWidget(QLabel("After"))
        row.addWidget(close)
        self.slider.valueChanged.connect(lambda v: self.moved.emit(v / 1000.0))
        close.clicked.connect(self.closed)
        self.hide()
        parent.installEventFilter(self)

    def place(self):
        self.adjustSize()
        parent = self.parentWidget()
        self.move((parent.width() - self.width()) // 2, 8)

    def eventFilter(self, obj, event):
        if event.type() == QEvent.Type.Resize and obj is self.parentWidget():
            self.place()
        return False


class CompareController(QObject):
    """What the canvas compares and how. `shortcut_parent` (the window) gets the hold key."""
    changed = Signal()

    def __init__(self, canvas, document, shortcut_parent):
        super().__init__(canvas)
        self._canvas, self._doc = canvas, document
        self.item = CompareItem(document)
        canvas.scene().addItem(self.item)
        self.bar = SplitBar(canvas.viewport())
        self.bar.moved.connect(self.set_split_position)
        self.bar.closed.connect(lambda: self.set_split(False))
        self._cache = LayerImageCache()
        self._holding = False
        self._split = False
        self._position = 0.5
        self._filtering = False
        self.shortcut = QShortcut(QKeySequence(HOLD_KEY), shortcut_parent)
        self.shortcut.setAutoRepeat(False)
        self.shortcut.activated.connect(lambda: self.hold(True))
        document.reset.connect(self.stop)
        for signal in (document.layers_changed, document.active_layer_changed, document.layer_changed):
            signal.connect(lambda *_: self._refresh())

    # ---- state -------------------------------------------------------------------------------
    @property
    def holding(self) -> bool:
        return self._holding

    @property
    def split(self) -> bool:
        return self._split

    @property
    def split_position(self) -> float:
        return self._position

    def hold(self, on: bool) -> None:
        """While on, the canvas shows what is below the compared layer."""
        on = bool(on) and not self._doc.is_empty
        if on == self._holding:
            return
        self._holding = on
        self._watch_release(on)
        self._refresh()

    def set_split(self, on: bool) -> None:
        on = bool(on) and not self._doc.is_empty
        if on == self._split:
            return
        self._split = on
        self.bar.setVisible(on)
        if on:
            self.bar.place()
            self.bar.raise_()
        self._refresh()

    def set_split_position(self, fraction: float) -> None:
        self._position = min(1.0, max(0.0, float(fraction)))
        if round(self.bar.slider.value()) != round(self._position * 1000):
            self.bar.slider.blockSignals(True)
            self.bar.slider.setValue(round(self._position * 1000))
            self.bar.slider.blockSignals(False)
        self._refresh()

    def stop(self) -> None:
        self.hold(False)
        self.set_split(False)
        self._refresh()

    # ---- drawing ------------------------------------------------------------------------------
    def _refresh(self) -> None:
        doc = self._doc
        layer = None if doc.is_empty else compared_layer(doc)
        if layer is None or not (self._holding or self._split):
            self.item.clear()
            self.changed.emit()
            return
        layers = doc.layers
        i = doc.index_of(layer)
        self._cache.forget_missing([l.id for l in layers])
        before = composite_qimage(layers[:i], doc.width, doc.height, self._cache)
        name = f"“{layer.name}”"
        if self._holding:  # holding the key wins over the split: the whole picture is "before"
            self.item.show_images(before, None, None, (f"Before — without {name}", ""))
        else:
            after = composite_qimage(layers[:i + 1], doc.width, doc.height, self._cache)
            self.item.show_images(before, after, self._position, ("Before", f"After — {name}"))
        self.changed.emit()

    # ---- the hold key's release, wherever the focus went -----------------------------------------
    def _watch_release(self, on: bool) -> None:
        app = QApplication.instance()
        if on and not self._filtering:
            app.installEventFilter(self)
            self._filtering = True
        elif not on and self._filtering:
            app.removeEventFilter(self)
            self._filtering = False

    def eventFilter(self, obj, event):
        kind = event.type()
        if ((kind == QEvent.Type.KeyRelease and event.key() == HOLD_KEY and not event.isAutoRepeat())
                or kind == QEvent.Type.ApplicationDeactivate):
            self.hold(False)
        return False
