"""Tool and action icons drawn with QPainter, so they are crisp at any device pixel ratio and need
no image plugin."""
from __future__ import annotations

import math
from functools import lru_cache

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QIcon, QPainter, QPainterPath, QPen, QPixmap, QPolygonF

FG = QColor(215, 215, 215)
RED = QColor(229, 57, 53)
BLUE = QColor(30, 136, 229)


def _pen(width=1.6, color=FG):
    pen = QPen(color, width)
    pen.setCapStyle(Qt.PenCapStyle.RoundCap)
    pen.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
    return pen


def _draw_brush(p):
    p.setPen(_pen())
    p.drawLine(QPointF(20, 4), QPointF(10, 14))
    path = QPainterPath(QPointF(10, 14))
    path.cubicTo(QPointF(5, 13), QPointF(4, 18), QPointF(3, 21))
    path.cubicTo(QPointF(7, 21), QPointF(12, 19), QPointF(10, 14))
    p.setBrush(FG)
    p.drawPath(path)


def _draw_eraser(p):
    p.setPen(_pen())
    p.translate(12, 12)
    p.rotate(-40)
    p.setBrush(Qt.BrushStyle.NoBrush)
    p.drawRoundedRect(QRectF(-8, -4.5, 16, 9), 1.5, 1.5)
    p.setBrush(FG)
    p.drawRoundedRect(QRectF(-8, -4.5, 6, 9), 1.5, 1.5)


def _draw_points(p):
    p.setPen(_pen(1.4))
    p.drawLine(QPointF(7, 16), QPointF(16, 8))
    _arrow_head(p, QPointF(7, 16), QPointF(16, 8), 4.5)
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(RED)
    p.drawEllipse(QPointF(6, 17), 3.4, 3.4)
    p.setBrush(BLUE)
    p.drawEllipse(QPointF(18, 6), 3.4, 3.4)


def _arrow_head(p, a: QPointF, b: QPointF, size: float):
    ang = math.atan2(b.y() - a.y(), b.x() - a.x())
    left = QPointF(b.x() - size * math.cos(ang - 0.5), b.y() - size * math.sin(ang - 0.5))
    right = QPointF(b.x() - size * math.cos(ang + 0.5), b.y() - size * math.sin(ang + 0.5))
    p.save()
    p.setBrush(p.pen().color())
    p.drawPolygon(QPolygonF([b, left, right]))
    p.restore()


def _draw_hand(p):
    p.setPen(_pen(1.5))
    c = QPointF(12, 12)
    for dx, dy in ((0, -9), (0, 9), (-9, 0), (9, 0)):
        tip = QPointF(12 + dx, 12 + dy)
        p.drawLine(c, tip)
        _arrow_head(p, c, tip, 3.5)


def _draw_fit(p):
    p.setPen(_pen(1.5))
    p.drawRect(QRectF(6, 7, 12, 10))
    for x, y, sx, sy in ((3, 3, 1, 1), (21, 3, -1, 1), (3, 21, 1, -1), (21, 21, -1, -1)):
        p.drawLine(QPointF(x, y), QPointF(x + 4 * sx, y))
        p.drawLine(QPointF(x, y), QPointF(x, y + 4 * sy))


def _draw_actual(p):
    p.setPen(_pen(1.2))
    f = p.font()
    f.setPixelSize(9)
    f.setBold(True)
    p.setFont(f)
    p.drawRect(QRectF(3, 5, 18, 14))
    p.drawText(QRectF(3, 5, 18, 14), Qt.AlignmentFlag.AlignCenter, "1:1")


def _draw_mask_fill(p):
    p.setPen(_pen(1.3))
    p.setBrush(QColor(255, 70, 100, 150))
    p.drawRect(QRectF(4, 5, 16, 14))


def _draw_mask_clear(p):
    p.setPen(_pen(1.3))
    p.setBrush(Qt.BrushStyle.NoBrush)
    p.drawRect(QRectF(4, 5, 16, 14))
    p.drawLine(QPointF(8, 9), QPointF(16, 15))
    p.drawLine(QPointF(16, 9), QPointF(8, 15))


def _draw_mask_invert(p):
    p.setPen(_pen(1.3))
    p.setBrush(Qt.BrushStyle.NoBrush)
    p.drawRect(QRectF(4, 5, 16, 14))
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(QColor(255, 70, 100, 170))
    p.drawPolygon(QPolygonF([QPointF(4, 5), QPointF(20, 5), QPointF(4, 19)]))


def _draw_points_clear(p):
    _draw_points(p)
    p.setPen(_pen(1.6, QColor(240, 240, 240)))
    p.drawLine(QPointF(15, 15), QPointF(21, 21))
    p.drawLine(QPointF(21, 15), QPointF(15, 21))


def _draw_layer_add(p):
    p.setPen(_pen(1.4))
    p.drawPolygon(QPolygonF([QPointF(3, 13), QPointF(11, 9), QPointF(19, 13), QPointF(11, 17)]))
    p.drawLine(QPointF(18, 3), QPointF(18, 9))
    p.drawLine(QPointF(15, 6), QPointF(21, 6))


def _draw_layer_duplicate(p):
    p.setPen(_pen(1.4))
    p.drawPolygon(QPolygonF([QPointF(3, 15), QPointF(11, 11), QPointF(19, 15), QPointF(11, 19)]))
    p.drawPolygon(QPolygonF([QPointF(3, 10), QPointF(11, 6), QPointF(19, 10), QPointF(11, 14)]))


def _draw_delete(p):
    p.setPen(_pen(1.4))
    p.drawLine(QPointF(5, 7), QPointF(19, 7))
    p.drawLine(QPointF(10, 4), QPointF(14, 4))
    p.drawPolyline(QPolygonF([QPointF(7, 7), QPointF(8, 20), QPointF(16, 20), QPointF(17, 7)]))


def _draw_merge(p):
    p.setPen(_pen(1.4))
    p.drawLine(QPointF(12, 3), QPointF(12, 12))
    _arrow_head(p, QPointF(12, 3), QPointF(12, 12), 4)
    p.drawPolygon(QPolygonF([QPointF(3, 17), QPointF(12, 13), QPointF(21, 17), QPointF(12, 21)]))


def _draw_up(p):
    p.setPen(_pen(1.6))
    p.drawLine(QPointF(12, 20), QPointF(12, 5))
    _arrow_head(p, QPointF(12, 20), QPointF(12, 5), 6)


def _draw_down(p):
    p.setPen(_pen(1.6))
    p.drawLine(QPointF(12, 4), QPointF(12, 19))
    _arrow_head(p, QPointF(12, 4), QPointF(12, 19), 6)


def _dashed(width=1.4):
    pen = _pen(width)
    pen.setStyle(Qt.PenStyle.CustomDashLine)
    pen.setDashPattern([2.2, 1.6])
    pen.setCapStyle(Qt.PenCapStyle.FlatCap)
    return pen


def _draw_select_rect(p):
    p.setPen(_dashed())
    p.drawRect(QRectF(4, 5, 16, 14))


def _draw_select_ellipse(p):
    p.setPen(_dashed())
    p.drawEllipse(QRectF(3, 5, 18, 14))


def _draw_lasso(p):
    p.setPen(_dashed())
    path = QPainterPath(QPointF(8, 17))
    path.cubicTo(QPointF(1, 13), QPointF(4, 4), QPointF(12, 4))
    path.cubicTo(QPointF(20, 4), QPointF(23, 12), QPointF(15, 15))
    path.cubicTo(QPointF(12, 16), QPointF(10, 16), QPointF(8, 17))
    p.drawPath(path)
    p.setPen(_pen(1.4))
    p.drawLine(QPointF(8, 17), QPointF(6, 21))


def _draw_polygon(p):
    p.setPen(_dashed())
    p.drawPolygon(QPolygonF([QPointF(4, 18), QPointF(7, 5), QPointF(19, 8), QPointF(15, 14), QPointF(20, 19)]))
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(FG)
    for pt in (QPointF(4, 18), QPointF(7, 5), QPointF(19, 8), QPointF(15, 14), QPointF(20, 19)):
        p.drawEllipse(pt, 1.6, 1.6)


def _draw_wand(p):
    p.setPen(_pen(2.0))
    p.drawLine(QPointF(4, 20), QPointF(14, 10))
    p.setPen(_pen(1.3))
    for dx, dy in ((0, -5), (0, 5), (-5, 0), (5, 0), (3.5, 3.5), (-3.5, -3.5), (3.5, -3.5), (-3.5, 3.5)):
        scale = 0.45 if dx and dy else 0.6
        p.drawLine(QPointF(17 + dx * scale, 7 + dy * scale), QPointF(17 + dx, 7 + dy))


_PAINTERS = {
    "select_rect": _draw_select_rect, "select_ellipse": _draw_select_ellipse, "lasso": _draw_lasso,
    "polygon": _draw_polygon, "wand": _draw_wand,
    "brush": _draw_brush, "eraser": _draw_eraser, "points": _draw_points, "hand": _draw_hand,
    "fit": _draw_fit, "actual": _draw_actual, "mask-fill": _draw_mask_fill,
    "mask-clear": _draw_mask_clear, "mask-invert": _draw_mask_invert, "points-clear": _draw_points_clear,
    "layer-add": _draw_layer_add, "layer-duplicate": _draw_layer_duplicate, "delete": _draw_delete,
    "merge-down": _draw_merge, "up": _draw_up, "down": _draw_down,
}


@lru_cache(maxsize=None)
def icon(name: str) -> QIcon:
    result = QIcon()
    for scale in (1, 2):
        pm = QPixmap(24 * scale, 24 * scale)
        pm.setDevicePixelRatio(scale)
        pm.fill(Qt.GlobalColor.transparent)
        p = QPainter(pm)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setBrush(QBrush(Qt.BrushStyle.NoBrush))
        _PAINTERS[name](p)
        p.end()
        result.addPixmap(pm)
    return result
