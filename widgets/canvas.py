"""The canvas: a QGraphicsView over the document, with zoom, pan and the mask and point tools.

It keeps no document state of its own: strokes and point edits go straight to the Document, and
the items are redrawn from the Document's signals. What it does keep is view state (zoom, the
current tool, which point pair is selected, a handle waiting for its target)."""
from __future__ import annotations

import enum

from PySide6.QtCore import QEvent, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QTransform
from PySide6.QtWidgets import QFrame, QGraphicsScene, QGraphicsView

from .canvas_items import (HANDLE, HANDLE_COLOR, TARGET, TARGET_COLOR, BrushCursorItem, CompositeItem,
                           EditMaskOverlayItem, HandlePointItem, PointArrowItem, PreviewItem)
from .selection_tools import SELECTION_TOOLS, MarchingAntsItem, SelectionToolHandler
from .theme import CANVAS_BACKGROUND

MIN_ZOOM, MAX_ZOOM = 0.01, 64.0
_SHAPE_KEYS = (Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_Escape, Qt.Key.Key_Backspace, Qt.Key.Key_Delete)
ZOOM_STEP = 1.25


class Tool(enum.Enum):
    BRUSH = "brush"
    ERASER = "eraser"
    POINTS = "points"
    HAND = "hand"
    # The selection tools (widgets/selection_tools.py): they select into the edit mask.
    SELECT_RECT = "select_rect"
    SELECT_ELLIPSE = "select_ellipse"
    LASSO = "lasso"
    POLYGON = "polygon"
    WAND = "wand"


class CanvasView(QGraphicsView):
    zoom_changed = Signal(float)          # 1.0 = 100 %: one image pixel per physical screen pixel
    cursor_moved = Signal(object)         # QPointF in image pixels, or None off the canvas
    tool_changed = Signal(object)
    brush_changed = Signal(float, float)  # diameter in image pixels, hardness 0..1
    point_selection_changed = Signal()
    # While a point is dragged (before the document is told): pair index, end ("handle"/"target"),
    # x, y in image pixels. Live editing follows it.
    point_moving = Signal(int, str, float, float)
    point_drag_finished = Signal(int, str)  # after the release, once the document holds the move

    def __init__(self, document, parent=None):
        super().__init__(parent)
        self._doc = document
        self._scene = QGraphicsScene(self)
        self.setScene(self._scene)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setBackgroundBrush(CANVAS_BACKGROUND)
        self.setMouseTracking(True)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.NoAnchor)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.SmartViewportUpdate)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        # Panning is Space-drag, the middle button or the hand tool; bars would only take room.
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setAcceptDrops(False)  # files dropped here go to the main window

        self.composite_item = CompositeItem(document)
        self.preview_item = PreviewItem(document)
        self.mask_item = EditMaskOverlayItem(document)
        self.brush_cursor = BrushCursorItem()
        self.ants = MarchingAntsItem(document)
        self.selection_tool = SelectionToolHandler(self)
        for item in (self.composite_item, self.preview_item, self.mask_item, self.ants,
                     self.selection_tool.outline, self.brush_cursor):
            self._scene.addItem(item)
        # Brush and eraser paint the edit mask (the selection), or the active layer's own mask.
        self.paint_layer_mask = False
        self._point_items: list[tuple[HandlePointItem, HandlePointItem, PointArrowItem]] = []
        self._pending_item: HandlePointItem | None = None

        self._zoom = 1.0
        self._tool = Tool.BRUSH
        self._brush_size, self._brush_hardness = 40.0, 0.7
        self._stroke = None
        self._pan_from: QPointF | None = None
        self._space_held = False
        self._selected: set[int] = set()
        self._pending_handle: QPointF | None = None
        self._drag = None  # (pair index, end, dot item, start position) while a dot is dragged

        document.reset.connect(self._on_reset)
        document.layers_changed.connect(self.composite_item.invalidate)
        document.layer_changed.connect(lambda _id: self.composite_item.invalidate())
        document.layer_mask_stroked.connect(self.composite_item.refresh_region)
        document.edit_mask_changed.connect(lambda r: self.mask_item.refresh(r.x(), r.y(), r.width(), r.height()))
        document.points_changed.connect(self._rebuild_points)
        document.active_layer_changed.connect(self._on_active_layer)  # points are the active layer's
        self._on_reset()

    # ----------------------------------------------------------------- document changes
    def _on_reset(self):
        self._stroke = None
        self.selection_tool.cancel()
        self._drag = None
        self._selected.clear()
        self.cancel_pending_point()
        self.composite_item.invalidate()
        self.mask_item.rebuild()
        self.preview_item.set_image(None)
        self._rebuild_points()
        self._update_scene_rect()
        self.fit_to_window()
        self.viewport().update()

    def _on_active_layer(self, _layer_id):
        self._drag = None
        self._selected.clear()
        self.cancel_pending_point()

    def _rebuild_points(self):
        for items in self._point_items:
            for item in items:
                self._scene.removeItem(item)
        self._point_items = []
        pairs = self._doc.point_pairs()
        self._selected = {i for i in self._selected if i < len(pairs)}
        scale = self.transform().m11()
        for i, (hx, hy, tx, ty) in enumerate(pairs):
            h, t = QPointF(hx, hy), QPointF(tx, ty)
            arrow = PointArrowItem(h, t)
            arrow.set_view_scale(scale)
            handle = HandlePointItem(i, HANDLE, i + 1, HANDLE_COLOR)
            target = HandlePointItem(i, TARGET, i + 1, TARGET_COLOR)
            handle.setPos(h)
            target.setPos(t)
            for item in (arrow, handle, target):
                self._scene.addItem(item)
            handle.set_selected(i in self._selected)
            target.set_selected(i in self._selected)
            self._point_items.append((handle, target, arrow))
        self.point_selection_changed.emit()

    def point_items(self):
        """(handle dot, target dot, arrow) per pair, in pair order."""
        return list(self._point_items)

    # ----------------------------------------------------------------- preview
    def set_preview(self, image: QImage | None, mask=None) -> None:
        """Show an edit's preview over the composite, at the picture's resolution and inside `mask`
        (HxW, 0..1; None: everywhere); None hides it."""
        self.preview_item.set_image(image, mask)

    # ----------------------------------------------------------------- zoom and pan
    @property
    def zoom(self) -> float:
        return self._zoom

    def _dpr(self) -> float:
        return self.devicePixelRatioF() or 1.0

    def set_zoom(self, zoom: float, anchor: QPointF | None = None) -> None:
        """anchor: a viewport position whose image pixel stays under it (the mouse for the wheel)."""
        zoom = max(MIN_ZOOM, min(MAX_ZOOM, zoom))
        if anchor is None:
            anchor = QPointF(self.viewport().rect().center())
        scene_at_anchor = self.map_to_image(anchor)
        scale = zoom / self._dpr()
        self._zoom = zoom
        self.setTransform(QTransform.fromScale(scale, scale))
        self._update_scene_rect()
        # Scroll so the anchored image pixel is back under the anchor.
        now = self.mapFromScene(scene_at_anchor)
        delta = QPointF(now) - anchor
        self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() + round(delta.x()))
        self.verticalScrollBar().setValue(self.verticalScrollBar().value() + round(delta.y()))
        for _, _, arrow in self._point_items:
            arrow.set_view_scale(scale)
        self.zoom_changed.emit(zoom)

    def zoom_in(self):
        self.set_zoom(self._zoom * ZOOM_STEP)

    def zoom_out(self):
        self.set_zoom(self._zoom / ZOOM_STEP)

    def actual_pixels(self):
        self.set_zoom(1.0)
        self.centerOn(self._image_rect().center())

    def fit_to_window(self):
        w, h = self._doc.width, self._doc.height
        vp = self.viewport().rect()
        if not w or not h or vp.width() < 2 or vp.height() < 2:
            return
        margin = 24
        fit = min((vp.width() - margin) / w, (vp.height() - margin) / h) * self._dpr()
        self.set_zoom(max(MIN_ZOOM, fit))
        self.centerOn(self._image_rect().center())

    def _image_rect(self) -> QRectF:
        return QRectF(0, 0, self._doc.width, self._doc.height)

    def _update_scene_rect(self):
        # Room around the picture, half a viewport each side, so it can be panned at any zoom.
        scale = self.transform().m11() or 1.0
        mx = self.viewport().width() / scale * 0.5
        my = self.viewport().height() / scale * 0.5
        self.setSceneRect(self._image_rect().adjusted(-mx, -my, mx, my))

    def resizeEvent(self, event):
        super().resizeEvent(event)
        self._update_scene_rect()

    def showEvent(self, event):
        super().showEvent(event)
        self.fit_to_window()

    def map_to_image(self, viewport_pos: QPointF) -> QPointF:
        """Viewport position (sub-pixel) to image pixels."""
        inverse, _ok = self.viewportTransform().inverted()
        return inverse.map(QPointF(viewport_pos))

    def map_from_image(self, image_pos: QPointF) -> QPointF:
        return self.viewportTransform().map(QPointF(image_pos))

    def wheelEvent(self, event):
        steps = event.angleDelta().y() / 120.0
        if steps and not self._doc.is_empty:
            self.set_zoom(self._zoom * ZOOM_STEP ** steps, event.position())
        event.accept()

    def _pan_by(self, delta: QPointF):
        self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() - round(delta.x()))
        self.verticalScrollBar().setValue(self.verticalScrollBar().value() - round(delta.y()))

    # ----------------------------------------------------------------- tools
    @property
    def tool(self) -> Tool:
        return self._tool

    def set_tool(self, tool: Tool) -> None:
        if tool != self._tool:
            self._tool = tool
            if tool != Tool.POINTS:
                self.cancel_pending_point()
            self.selection_tool.cancel()
            self._update_cursor()
            self.tool_changed.emit(tool)

    @property
    def brush_size(self) -> float:
        return self._brush_size

    @property
    def brush_hardness(self) -> float:
        return self._brush_hardness

    def set_brush(self, size: float | None = None, hardness: float | None = None) -> None:
        if size is not None:
            self._brush_size = max(1.0, min(2000.0, float(size)))
        if hardness is not None:
            self._brush_hardness = max(0.0, min(1.0, float(hardness)))
        self.brush_cursor.set_diameter(self._brush_size)
        self.brush_changed.emit(self._brush_size, self._brush_hardness)

    def grow_brush(self):
        self.set_brush(size=max(self._brush_size + 1, round(self._brush_size * 1.2)))

    def shrink_brush(self):
        self.set_brush(size=min(self._brush_size - 1, round(self._brush_size / 1.2)))

    def _update_cursor(self):
        if self._pan_from is not None:
            shape = Qt.CursorShape.ClosedHandCursor
        elif self._space_held or self._tool == Tool.HAND:
            shape = Qt.CursorShape.OpenHandCursor
        elif self._tool in (Tool.BRUSH, Tool.ERASER) or self._tool.value in SELECTION_TOOLS:
            shape = Qt.CursorShape.CrossCursor
        else:
            shape = Qt.CursorShape.PointingHandCursor
        self.viewport().setCursor(shape)
        self.brush_cursor.setVisible(self._tool in (Tool.BRUSH, Tool.ERASER) and not self._space_held
                                     and self.underMouse())

    # ----------------------------------------------------------------- points
    def selected_pairs(self) -> set[int]:
        return set(self._selected)

    def select_pairs(self, indices) -> None:
        self._selected = {i for i in indices if 0 <= i < len(self._point_items)}
        for i, (handle, target, _) in enumerate(self._point_items):
            handle.set_selected(i in self._selected)
            target.set_selected(i in self._selected)
        self.point_selection_changed.emit()

    def delete_selected_points(self) -> None:
        if self._selected:
            chosen = set(self._selected)
            self._selected.clear()
            self._doc.remove_point_pairs(chosen)

    def cancel_pending_point(self):
        self._pending_handle = None
        if self._pending_item is not None:
            self._scene.removeItem(self._pending_item)
            self._pending_item = None

    @property
    def pending_handle(self) -> QPointF | None:
        return None if self._pending_handle is None else QPointF(self._pending_handle)

    def _clamp(self, p: QPointF) -> QPointF:
        return QPointF(min(max(p.x(), 0.0), float(self._doc.width)),
                       min(max(p.y(), 0.0), float(self._doc.height)))

    def _dot_at(self, viewport_pos: QPointF) -> HandlePointItem | None:
        for item in self.items(viewport_pos.toPoint()):
            if isinstance(item, HandlePointItem) and not item.pending:
                return item
        return None

    def _points_press(self, vpos: QPointF, event):
        dot = self._dot_at(vpos)
        if dot is not None:
            if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
                self.select_pairs(self._selected ^ {dot.pair_index})
            elif dot.pair_index not in self._selected:
                self.select_pairs({dot.pair_index})
            self._drag = (dot.pair_index, dot.end, dot, QPointF(dot.pos()))
            return
        self.select_pairs(set())
        pos = self._clamp(self.map_to_image(vpos))
        if self._pending_handle is None:
            self._pending_handle = pos
            item = HandlePointItem(-1, HANDLE, len(self._point_items) + 1, HANDLE_COLOR)
            item.pending = True
            item.setPos(pos)
            self._scene.addItem(item)
            self._pending_item = item
        else:
            handle = self._pending_handle
            self.cancel_pending_point()
            self._doc.add_point_pair(handle.x(), handle.y(), pos.x(), pos.y())

    def _points_drag(self, vpos: QPointF):
        index, end, dot, _start = self._drag
        pos = self._clamp(self.map_to_image(vpos))
        dot.setPos(pos)  # transient until release; the document is told once, as one undo entry
        handle, target, arrow = self._point_items[index]
        arrow.set_ends(handle.pos(), target.pos())
        self.point_moving.emit(index, end, pos.x(), pos.y())

    def _points_release(self):
        index, end, dot, start = self._drag
        self._drag = None
        if dot.pos() != start:
            self._doc.move_point(index, end, dot.pos().x(), dot.pos().y())
        self.point_drag_finished.emit(index, end)

    # ----------------------------------------------------------------- mouse and keys
    def _wants_pan(self, event) -> bool:
        return (event.button() == Qt.MouseButton.MiddleButton
                or (event.button() == Qt.MouseButton.LeftButton and (self._space_held or self._tool == Tool.HAND)))

    def mousePressEvent(self, event):
        vpos = event.position()
        if self._wants_pan(event):
            self._pan_from = QPointF(vpos)
            self._update_cursor()
            event.accept()
            return
        if event.button() != Qt.MouseButton.LeftButton or self._doc.is_empty:
            event.accept()
            return
        if self._tool in (Tool.BRUSH, Tool.ERASER):
            layer = self._doc.active_layer if self.paint_layer_mask else None
            self._stroke = self._doc.begin_mask_stroke(erase=self._tool == Tool.ERASER, layer=layer)
            p = self.map_to_image(vpos)
            self._stroke.stroke_to(p.x(), p.y(), self._brush_size, self._brush_hardness)
        elif self._tool == Tool.POINTS:
            self._points_press(vpos, event)
        elif self._tool.value in SELECTION_TOOLS:
            self.selection_tool.press(self._tool.value, self.map_to_image(vpos), event.modifiers())
        event.accept()

    def mouseMoveEvent(self, event):
        vpos = event.position()
        p = self.map_to_image(vpos)
        inside = 0 <= p.x() < self._doc.width and 0 <= p.y() < self._doc.height
        self.cursor_moved.emit(p if inside else None)
        self.brush_cursor.setPos(p)
        if self._pan_from is not None:
            self._pan_by(vpos - self._pan_from)
            self._pan_from = QPointF(vpos)
        elif self._stroke is not None:
            self._stroke.stroke_to(p.x(), p.y(), self._brush_size, self._brush_hardness)
        elif self._drag is not None:
            self._points_drag(vpos)
        elif self.selection_tool.active:
            self.selection_tool.move(p)
        event.accept()

    def mouseReleaseEvent(self, event):
        if self._pan_from is not None and event.button() in (Qt.MouseButton.MiddleButton, Qt.MouseButton.LeftButton):
            self._pan_from = None
            self._update_cursor()
        elif event.button() == Qt.MouseButton.LeftButton:
            if self._stroke is not None:
                stroke, self._stroke = self._stroke, None
                stroke.finish()
            elif self._drag is not None:
                self._points_release()
            elif self.selection_tool.active:
                self.selection_tool.release(self.map_to_image(event.position()))
        event.accept()

    def mouseDoubleClickEvent(self, event):
        if self._tool == Tool.POLYGON and event.button() == Qt.MouseButton.LeftButton:
            self.selection_tool.double_click()
            event.accept()
        else:
            super().mouseDoubleClickEvent(event)

    def enterEvent(self, event):
        super().enterEvent(event)
        self._update_cursor()

    def leaveEvent(self, event):
        super().leaveEvent(event)
        self.brush_cursor.setVisible(False)
        self.cursor_moved.emit(None)

    def keyPressEvent(self, event):
        if self.selection_tool.key(event.key()):
            event.accept()
        elif event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space_held = True
            self._update_cursor()
        elif event.key() == Qt.Key.Key_Escape:
            self.cancel_pending_point()
            self.select_pairs(set())
        elif event.key() in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace) and self._selected:
            self.delete_selected_points()
        else:
            super().keyPressEvent(event)

    def keyReleaseEvent(self, event):
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space_held = False
            self._update_cursor()
        else:
            super().keyReleaseEvent(event)

    def focusOutEvent(self, event):
        self._space_held = False  # a Space released in another window never reaches us
        super().focusOutEvent(event)

    def event(self, event):
        # Tab and Space would otherwise be eaten by focus handling before keyPressEvent.
        if event.type() == QEvent.Type.ShortcutOverride and (
                event.key() == Qt.Key.Key_Space
                or (self.selection_tool.active and event.key() in _SHAPE_KEYS)):
            event.accept()  # a shape being drawn takes Enter, Escape and Backspace first
            return True  # not on to the scene, which would ignore it again
        return super().event(event)

    def drawForeground(self, painter: QPainter, rect):
        if not self._doc.is_empty:
            return
        painter.save()
        painter.resetTransform()
        painter.setPen(QColor(150, 150, 150))
        font = painter.font()
        font.setPointSizeF(font.pointSizeF() * 1.3)
        painter.setFont(font)
        painter.drawText(self.viewport().rect(), Qt.AlignmentFlag.AlignCenter,
                         "Open a picture or a project (Ctrl+O)\nor drop one here")
        painter.restore()
