"""The selection tools on the canvas: rectangle, ellipse, freehand lasso, polygon lasso and magic
wand, the outline of a shape being drawn, and the marching ants around the selection.

The tools only make geometry: a finished shape leaves as a QPainterPath in image pixels with the
mode it combines in (`shape_selected`), a wand click as a position (`wand_clicked`). The
application turns those into a mask and stores it as the document's edit mask, which is the
selection: brush and eraser paint the very same mask.

Modifiers at the press choose the mode, as in GIMP and Krita: Shift adds, Alt subtracts,
Shift+Alt intersects; without them the tool options' mode applies (Replace by default)."""
from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QLineF, QObject, QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QPainterPath, QPen, QPolygonF
from PySide6.QtWidgets import QGraphicsItem, QGraphicsObject

# The canvas's Tool values of the selection tools.
RECT, ELLIPSE, LASSO, POLYGON, WAND = "select_rect", "select_ellipse", "lasso", "polygon", "wand"
SELECTION_TOOLS = (RECT, ELLIPSE, LASSO, POLYGON, WAND)
TOOL_LABELS = {RECT: "Rectangle Select", ELLIPSE: "Ellipse Select", LASSO: "Lasso Select",
               POLYGON: "Polygon Select", WAND: "Magic Wand Select"}
CLOSE_DISTANCE = 8.0      # screen pixels: a click this near the first vertex closes a polygon
ANTS_INTERVAL_MS = 150    # the ants march one step this often
ANTS_REBUILD_MS = 60      # a burst of mask changes (a brush stroke) rebuilds the outline once
MAX_ANT_SEGMENTS = 250_000  # beyond this (a noisy wand on a big photo) only the tint shows it


class SelectMode(enum.Enum):
    REPLACE = "replace"
    ADD = "add"
    SUBTRACT = "subtract"
    INTERSECT = "intersect"


def mode_from_modifiers(modifiers, default: SelectMode = SelectMode.REPLACE) -> SelectMode:
    shift = bool(modifiers & Qt.KeyboardModifier.ShiftModifier)
    alt = bool(modifiers & Qt.KeyboardModifier.AltModifier)
    if shift and alt:
        return SelectMode.INTERSECT
    if shift:
        return SelectMode.ADD
    if alt:
        return SelectMode.SUBTRACT
    return default


@dataclass
class SelectionOptions:
    """The tool options bar's settings, read when a shape finishes or the wand clicks."""
    mode: SelectMode = SelectMode.REPLACE
    antialias: bool = True
    tolerance: int = 32        # wand: 0..255 on each channel
    contiguous: bool = True    # wand: only the connected region, else every similar pixel
    sample_merged: bool = False  # wand: the visible picture instead of the active layer


def snapped_rect(a: QPointF, b: QPointF) -> QRectF:
    """The rectangle between two points on whole pixels, as Krita and GIMP snap it."""
    x0, x1 = sorted((round(a.x()), round(b.x())))
    y0, y1 = sorted((round(a.y()), round(b.y())))
    return QRectF(x0, y0, x1 - x0, y1 - y0)


class SelectionToolHandler(QObject):
    """Mouse and key input of the selection tools, forwarded by the canvas. Points are image
    pixels; `view` maps them to the screen (for the polygon's close-by-clicking-the-start)."""

    shape_selected = Signal(object, object, str)  # QPainterPath (empty: a plain click), SelectMode, tool
    wand_clicked = Signal(float, float, object)   # image x, y, SelectMode

    def __init__(self, view):
        super().__init__(view)
        self._view = view
        self.options = SelectionOptions()
        self.outline = ShapeOutlineItem()
        self._tool: str | None = None
        self._mode = SelectMode.REPLACE
        self._points: list[QPointF] = []
        self._cursor: QPointF | None = None

    @property
    def active(self) -> bool:
        """A shape is being drawn (between press and release; a polygon until it is closed)."""
        return self._tool is not None

    @property
    def mode(self) -> SelectMode:
        return self._mode

    def vertices(self) -> list[QPointF]:
        return [QPointF(p) for p in self._points]

    def press(self, tool: str, p: QPointF, modifiers) -> None:
        if tool == WAND:
            self.wand_clicked.emit(p.x(), p.y(), mode_from_modifiers(modifiers, self.options.mode))
            return
        if tool == POLYGON and self._tool == POLYGON:
            first = self._view.map_from_image(self._points[0])
            if len(self._points) >= 3 and QLineF(first, self._view.map_from_image(p)).length() <= CLOSE_DISTANCE:
                self.finish()
            else:
                self._points.append(QPointF(p))
                self._show()
            return
        self._tool = tool
        self._mode = mode_from_modifiers(modifiers, self.options.mode)
        self._points = [QPointF(p)]
        self._cursor = QPointF(p)
        self._show()

    def move(self, p: QPointF) -> None:
        if self._tool is None:
            return
        if self._tool == LASSO:
            if QLineF(self._points[-1], p).length() >= 0.5:
                self._points.append(QPointF(p))
        self._cursor = QPointF(p)
        self._show()

    def release(self, p: QPointF) -> None:
        if self._tool in (RECT, ELLIPSE, LASSO):
            self.move(p)
            self.finish()

    def double_click(self) -> None:
        if self._tool == POLYGON:
            self.finish()

    def key(self, key) -> bool:
        """Enter closes a polygon, Backspace takes back its last corner, Escape drops the shape.
        True when the key was used."""
        if self._tool is None:
            return False
        if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self.finish()
        elif key == Qt.Key.Key_Escape:
            self.cancel()
        elif key in (Qt.Key.Key_Backspace, Qt.Key.Key_Delete) and self._tool == POLYGON:
            if len(self._points) > 1:
                self._points.pop()
                self._show()
            else:
                self.cancel()
        else:
            return False
        return True

    def cancel(self) -> None:
        self._tool = None
        self._points = []
        self._cursor = None
        self.outline.set_path(QPainterPath())

    def shape_path(self) -> QPainterPath:
        """The shape as it would be selected now (empty: too small to be one, i.e. a click)."""
        path = QPainterPath()
        if self._tool in (RECT, ELLIPSE) and self._cursor is not None:
            rect = snapped_rect(self._points[0], self._cursor)
            if rect.width() > 0 and rect.height() > 0:
                path.addRect(rect) if self._tool == RECT else path.addEllipse(rect)
        elif self._tool in (LASSO, POLYGON) and len(self._points) >= 3:
            path.addPolygon(QPolygonF(self._points))
            path.closeSubpath()
        return path

    def finish(self) -> None:
        if self._tool is None:
            return
        tool, mode, path = self._tool, self._mode, self.shape_path()
        self.cancel()
        self.shape_selected.emit(path, mode, tool)

    def _show(self) -> None:
        path = QPainterPath()
        if self._tool in (RECT, ELLIPSE):
            path = self.shape_path()
        elif self._points:
            path.addPolygon(QPolygonF(self._points + ([self._cursor] if self._tool == POLYGON and self._cursor else [])))
        self.outline.set_path(path, self._points[0] if self._tool == POLYGON else None,
                              self._view.transform().m11())


def _ant_pens(phase: float) -> tuple[QPen, QPen]:
    """A white line under black dashes that march: readable on any picture, at any zoom."""
    under = QPen(QColor(255, 255, 255), 1)
    under.setCosmetic(True)
    dashes = QPen(QColor(0, 0, 0), 1, Qt.PenStyle.CustomDashLine)
    dashes.setCosmetic(True)
    dashes.setDashPattern([4, 4])
    dashes.setDashOffset(phase)
    return under, dashes


class ShapeOutlineItem(QGraphicsItem):
    """The shape being drawn, as dashes; a polygon's first corner is marked so it can be closed."""

    def __init__(self):
        super().__init__()
        self._path = QPainterPath()
        self._start: QPointF | None = None
        self._margin = 1.0
        self.setZValue(30)
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)

    def set_path(self, path: QPainterPath, start: QPointF | None = None, scale: float = 1.0) -> None:
        """scale: the view's, so the bounds cover the screen-sized start marker."""
        self.prepareGeometryChange()
        self._path = QPainterPath(path)
        self._start = None if start is None else QPointF(start)
        self._margin = (CLOSE_DISTANCE + 2) / max(scale, 1e-6)

    def path(self) -> QPainterPath:
        return QPainterPath(self._path)

    def boundingRect(self):
        m = self._margin
        return self._path.boundingRect().adjusted(-m, -m, m, m)

    def paint(self, painter, option, widget=None):
        if self._path.isEmpty():
            return
        for pen in _ant_pens(0):
            painter.setPen(pen)
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawPath(self._path)
        if self._start is not None:
            painter.save()
            start = painter.worldTransform().map(self._start)
            painter.resetTransform()
            painter.setRenderHint(painter.RenderHint.Antialiasing)
            painter.setPen(QPen(QColor(0, 0, 0), 1))
            painter.setBrush(QColor(255, 255, 255))
            painter.drawEllipse(start, 4, 4)
            painter.restore()


def outline_segments(selected: np.ndarray) -> np.ndarray:
    """The edges between selected and unselected pixels (and the picture's border) as line
    segments on pixel corners, (N, 4) of x0, y0, x1, y1; collinear neighbours are one segment."""
    h, w = selected.shape
    p = np.zeros((h + 2, w + 2), bool)
    p[1:-1, 1:-1] = selected
    horizontal = p[:-1, 1:-1] != p[1:, 1:-1]   # (h+1, w): edge along y = row, x in [x, x+1]
    vertical = p[1:-1, :-1] != p[1:-1, 1:]     # (h, w+1): edge along x = col, y in [y, y+1]
    hr, hs, he = _runs(horizontal)
    vc, vs, ve = _runs(np.ascontiguousarray(vertical.T))
    return np.concatenate([np.stack([hs, hr, he, hr], axis=1), np.stack([vc, vs, vc, ve], axis=1)])


def _runs(a: np.ndarray):
    """Runs of True along each row of a: (row, start, end exclusive) arrays."""
    pad = np.zeros((a.shape[0], a.shape[1] + 2), np.int8)
    pad[:, 1:-1] = a
    d = np.diff(pad, axis=1)
    rows, starts = np.nonzero(d == 1)
    _, ends = np.nonzero(d == -1)
    return rows, starts, ends


class MarchingAntsItem(QGraphicsObject):
    """The selection's outline (at half selected) as marching ants. Rebuilt shortly after the
    edit mask changes, so a brush stroke's many dabs cost one rebuild; it only animates while
    there is an outline to show."""

    def __init__(self, document, threshold: int = 128):
        super().__init__()
        self._doc = document
        self._threshold = threshold
        self._lines: list[QLineF] = []
        self._phase = 0
        self.setZValue(25)
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        self._march = QTimer(self)
        self._march.setInterval(ANTS_INTERVAL_MS)
        self._march.timeout.connect(self._step)
        self._pending = QTimer(self)
        self._pending.setSingleShot(True)
        self._pending.setInterval(ANTS_REBUILD_MS)
        self._pending.timeout.connect(self.rebuild)
        document.edit_mask_changed.connect(lambda _rect: self._pending.start())
        document.reset.connect(self.rebuild)
        self.rebuild()

    def segment_count(self) -> int:
        return len(self._lines)

    def rebuild(self) -> None:
        self._pending.stop()
        self.prepareGeometryChange()
        mask = self._doc.edit_mask_view()
        selected = mask >= self._threshold
        if mask.size == 0 or not selected.any():
            segments = np.zeros((0, 4), np.int64)
        else:
            segments = outline_segments(selected)
        self._lines = ([] if len(segments) > MAX_ANT_SEGMENTS
                       else [QLineF(*s) for s in segments.tolist()])
        self._update_timer()
        self.update()

    def _update_timer(self) -> None:
        if self._lines and self.isVisible():
            self._march.start()
        else:
            self._march.stop()

    def itemChange(self, change, value):
        if change == QGraphicsItem.GraphicsItemChange.ItemVisibleHasChanged:
            self._update_timer()
        return super().itemChange(change, value)

    def _step(self) -> None:
        self._phase = (self._phase + 1) % 8
        self.update()

    def boundingRect(self):
        return QRectF(-1, -1, self._doc.width + 2, self._doc.height + 2)

    def paint(self, painter, option, widget=None):
        if not self._lines:
            return
        for pen in _ant_pens(self._phase):
            painter.setPen(pen)
            painter.drawLines(self._lines)

