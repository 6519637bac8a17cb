"""The document: layers, per-layer masks, the edit mask, handle/target point pairs and their history.

Point pairs belong to a layer (the picture they were placed on): the canvas shows and edits the
active layer's, an edit uses its source layer's, and a drag's result carries its handles where
they ended.

Widgets observe it through signals and change it only through its methods, each of which pushes
one QUndoCommand, so every change is one Ctrl+Z away. Pixels are numpy arrays in image coordinates:
layers RGBA uint8 (HxWx4), masks uint8 (HxW, 255 = editable / shown).
"""
from __future__ import annotations

import itertools
import math
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, QRect, Signal
from PySide6.QtGui import QUndoStack

from widgets.canvas_items import HANDLE
from widgets.compositing import apply_mask, composite_qimage, composite_rgba
from widgets.qimage import qimage_to_rgba

from . import commands

_layer_ids = itertools.count(1)


@dataclass(eq=False)
class Layer:
    """One layer. Owned by the Document: read it freely, change it only through the Document."""
    name: str
    pixels: np.ndarray
    visible: bool = True
    opacity: float = 1.0
    mask: np.ndarray | None = None
    metadata: dict = field(default_factory=dict)
    points: tuple = ()  # (handle_x, handle_y, target_x, target_y) pairs in image pixels
    group: str = ""     # layers sharing a group name are one set of variations (editor_app/variations.py)
    id: int = field(default_factory=lambda: next(_layer_ids))
    # Bumped whenever pixels or mask change, so render caches know when to rebuild.
    revision: int = 0

    def copy(self, name: str | None = None) -> "Layer":
        return Layer(name or self.name, self.pixels.copy(), self.visible, self.opacity,
                     None if self.mask is None else self.mask.copy(), dict(self.metadata), self.points, self.group)


def fit_to_canvas(rgba: np.ndarray, width: int, height: int) -> np.ndarray:
    """Centre a picture of any size on a transparent canvas of the document's size."""
    h, w = rgba.shape[:2]
    if (w, h) == (width, height):
        return rgba.copy()
    out = np.zeros((height, width, 4), np.uint8)
    dx, dy = (width - w) // 2, (height - h) // 2
    sx0, sy0 = max(0, -dx), max(0, -dy)
    tx0, ty0 = max(0, dx), max(0, dy)
    cw, ch = min(w - sx0, width - tx0), min(h - sy0, height - ty0)
    out[ty0:ty0 + ch, tx0:tx0 + cw] = rgba[sy0:sy0 + ch, sx0:sx0 + cw]
    return out


class Document(QObject):
    reset = Signal()                  # everything replaced (open, new, close)
    layers_changed = Signal()         # a layer was added, removed or moved
    layer_changed = Signal(int)       # one layer's pixels, mask, name, visibility or opacity
    active_layer_changed = Signal(int)
    edit_mask_changed = Signal(QRect)  # the dirty region in image pixels
    # A brush stroke on a layer's mask, live: the region each dab changed (views patch just that).
    # The layer's revision and layer_changed follow once, when the stroke ends.
    layer_mask_stroked = Signal(int, QRect)
    points_changed = Signal()
    file_changed = Signal()           # path or modified state (the window title)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.undo_stack = QUndoStack(self)
        self.undo_stack.cleanChanged.connect(self.file_changed)
        self._width = self._height = 0
        self._layers: list[Layer] = []
        self._active_id = -1
        self._edit_mask = np.zeros((0, 0), np.uint8)
        self.file_path: Path | None = None    # the .ora project, once there is one
        self.source_path: Path | None = None  # what was opened (a picture or the project)
        # Which picture this is: a new one whenever the document is replaced (open, new, close), so
        # an edit that finishes later can tell whether its picture is still the one open.
        self.identity = uuid.uuid4().hex

    # ----------------------------------------------------------------- whole-document state
    def load_image(self, rgba: np.ndarray, name: str, source_path: Path | None = None) -> None:
        """Start a fresh document from one picture (not undoable: it is a new document).

        It has no project file yet; source_path (the picture) only names the window and Save As."""
        h, w = rgba.shape[:2]
        self.load_project(w, h, [Layer(name, np.ascontiguousarray(rgba, np.uint8))], None, [],
                          None, source_path=source_path)

    def load_project(self, width, height, layers, edit_mask, points, path=None, active_index=None,
                     source_path=None):
        """points: pairs for the active layer when it has none of its own (projects from before
        points were kept per layer)."""
        self._width, self._height = int(width), int(height)
        self._layers = list(layers)
        self._edit_mask = (np.zeros((self._height, self._width), np.uint8) if edit_mask is None
                           else np.ascontiguousarray(edit_mask, np.uint8).copy())
        if active_index is None or not 0 <= active_index < len(self._layers):
            active_index = len(self._layers) - 1
        self._active_id = self._layers[active_index].id if self._layers else -1
        if points and self._layers and not self._layers[active_index].points:
            self._layers[active_index].points = tuple(tuple(float(v) for v in p) for p in points)
        self.file_path = Path(path) if path else None
        self.source_path = Path(source_path) if source_path else self.file_path
        self.identity = uuid.uuid4().hex
        self.undo_stack.clear()
        self.undo_stack.setClean()
        self.reset.emit()
        self.active_layer_changed.emit(self._active_id)
        self.file_changed.emit()

    def close(self) -> None:
        self.load_project(0, 0, [], None, [], None)

    def mark_saved(self, path: Path) -> None:
        self.file_path = Path(path)
        self.undo_stack.setClean()
        self.file_changed.emit()

    @property
    def is_empty(self) -> bool:
        return not self._layers

    @property
    def is_modified(self) -> bool:
        return not self.undo_stack.isClean()

    @property
    def width(self) -> int:
        return self._width

    @property
    def height(self) -> int:
        return self._height

    def size(self) -> tuple[int, int]:
        return self._width, self._height

    @property
    def display_name(self) -> str:
        shown = self.file_path or self.source_path
        return shown.name if shown else "Untitled"

    # ----------------------------------------------------------------- reading
    @property
    def layers(self) -> tuple[Layer, ...]:
        """Bottom to top."""
        return tuple(self._layers)

    def layer_by_id(self, layer_id: int) -> Layer:
        for layer in self._layers:
            if layer.id == layer_id:
                return layer
        raise KeyError(f"no layer with id {layer_id}")

    def index_of(self, layer_or_id) -> int:
        lid = getattr(layer_or_id, "id", layer_or_id)
        return next(i for i, l in enumerate(self._layers) if l.id == lid)

    @property
    def active_layer(self) -> Layer | None:
        try:
            return self.layer_by_id(self._active_id)
        except KeyError:
            return None

    def set_active_layer(self, layer_or_id) -> None:
        """Selecting a layer is a view choice, not a document change: no undo entry."""
        lid = getattr(layer_or_id, "id", layer_or_id)
        if lid != self._active_id and any(l.id == lid for l in self._layers):
            self._activate(lid)

    def active_layer_pixels(self) -> np.ndarray | None:
        layer = self.active_layer
        return None if layer is None else layer.pixels.copy()

    def layer_pixels(self, layer_or_id) -> np.ndarray:
        return self.layer_by_id(getattr(layer_or_id, "id", layer_or_id)).pixels.copy()

    def composite_rgba(self, background=None) -> np.ndarray:
        return composite_rgba(self._layers, self._width, self._height, background)

    def edit_mask_array(self) -> np.ndarray:
        """HxW uint8, 255 where an edit may change the picture."""
        return self._edit_mask.copy()

    def edit_mask_view(self) -> np.ndarray:
        """The live edit mask without a copy, read-only: for drawing it on every stroke dab."""
        view = self._edit_mask.view()
        view.flags.writeable = False
        return view

    def point_pairs(self, layer_or_id=None) -> list[tuple[float, float, float, float]]:
        """The active layer's (or the given layer's) pairs, (handle_x, handle_y, target_x, target_y)
        in image pixels, in the order they were made."""
        if layer_or_id is None:
            layer = self.active_layer
        else:
            layer = self.layer_by_id(getattr(layer_or_id, "id", layer_or_id))
        return [] if layer is None else list(layer.points)

    # ----------------------------------------------------------------- layer changes (undoable)
    def add_layer(self, rgba: np.ndarray, name: str, index: int | None = None,
                  metadata: dict | None = None, mask: np.ndarray | None = None, points=(), group: str = "",
                  activate: bool = True) -> Layer:
        """A new layer above the active one (or at index); pictures of another size are centred."""
        layer = Layer(name, fit_to_canvas(rgba, self._width, self._height), metadata=dict(metadata or {}),
                      mask=None if mask is None else self._checked_mask(mask), points=self._checked_points(points),
                      group=group)
        if index is None:
            active = self.active_layer
            index = self.index_of(active) + 1 if active else len(self._layers)
        self.undo_stack.push(commands.AddLayerCommand(self, layer, index, f"Add Layer “{name}”", activate))
        return layer

    def add_result_layer(self, rgba: np.ndarray, name: str, metadata: dict, above=None,
                         mask: np.ndarray | None = None, points=(), group: str = "", on_top: bool = False,
                         activate: bool = False) -> Layer:
        """What an edit produces, one undo entry: a new layer above its source layer and the results
        already stacked on it (so it is never hidden under an earlier result of the same source),
        or on top of everything (an edit of the visible picture). The active layer stays the edit
        target unless `activate`.

        metadata is {"method": ..., "params": {...}}; it is saved with the project."""
        if rgba.shape[:2] != (self._height, self._width):
            raise ValueError(f"result is {rgba.shape[1]}x{rgba.shape[0]}, the document {self._width}x{self._height}")
        if on_top:
            index = len(self._layers)
        else:
            if above is None:
                above = self.active_layer
            index = self.index_of(above) + 1 if above is not None else len(self._layers)
            while index < len(self._layers) and self._layers[index].metadata.get("method"):
                index += 1
        return self.add_layer(rgba, name, index=index, metadata=metadata, mask=mask, points=points, group=group,
                              activate=activate)

    def duplicate_layer(self, layer_or_id) -> Layer:
        src = self.layer_by_id(getattr(layer_or_id, "id", layer_or_id))
        layer = src.copy(f"{src.name} copy")
        self.undo_stack.push(commands.AddLayerCommand(self, layer, self.index_of(src) + 1,
                                                      f"Duplicate Layer “{src.name}”"))
        return layer

    def remove_layer(self, layer_or_id) -> None:
        layer = self.layer_by_id(getattr(layer_or_id, "id", layer_or_id))
        self.undo_stack.push(commands.RemoveLayerCommand(self, layer, f"Delete Layer “{layer.name}”"))

    def move_layer(self, layer_or_id, new_index: int) -> None:
        lid = getattr(layer_or_id, "id", layer_or_id)
        old = self.index_of(lid)
        new_index = max(0, min(len(self._layers) - 1, new_index))
        if new_index != old:
            self.undo_stack.push(commands.MoveLayerCommand(self, lid, old, new_index))

    def rename_layer(self, layer_or_id, name: str) -> None:
        self._set_property(layer_or_id, "name", name.strip() or "Layer", "Rename Layer")

    def set_layer_visible(self, layer_or_id, visible: bool) -> None:
        """Showing one of a group of variations hides the others (one undo entry): they are
        alternatives, seen one at a time."""
        layer = self.layer_by_id(getattr(layer_or_id, "id", layer_or_id))
        others = [l for l in self._layers if visible and layer.group and l.group == layer.group
                  and l is not layer and l.visible]
        if not others:
            self._set_property(layer, "visible", bool(visible), "Show Layer" if visible else "Hide Layer")
            return
        self.undo_stack.beginMacro("Pick Variation")
        for other in others:
            self._set_property(other, "visible", False, "Hide Layer")
        self._set_property(layer, "visible", True, "Show Layer")
        self.undo_stack.endMacro()

    def set_layer_group(self, layer_or_id, group: str) -> None:
        self._set_property(layer_or_id, "group", str(group), "Ungroup Layer" if not group else "Group Layer")

    def set_layer_opacity(self, layer_or_id, opacity: float) -> None:
        self._set_property(layer_or_id, "opacity", max(0.0, min(1.0, float(opacity))), "Layer Opacity")

    def set_layer_mask(self, layer_or_id, mask: np.ndarray | None, text: str | None = None) -> None:
        layer = self.layer_by_id(getattr(layer_or_id, "id", layer_or_id))
        new = None if mask is None else self._checked_mask(mask)
        text = text or ("Remove Layer Mask" if new is None else "Set Layer Mask")
        self.undo_stack.push(commands.SetLayerMaskCommand(self, layer.id, layer.mask, new, text))

    def add_layer_mask(self, layer_or_id, mask: np.ndarray | None = None) -> None:
        """A layer mask that shows everything (or `mask`, e.g. the selection)."""
        full = np.full((self._height, self._width), 255, np.uint8)
        self.set_layer_mask(layer_or_id, full if mask is None else mask, "Add Layer Mask")

    def invert_layer_mask(self, layer_or_id) -> None:
        layer = self.layer_by_id(getattr(layer_or_id, "id", layer_or_id))
        if layer.mask is not None:
            self.set_layer_mask(layer, 255 - layer.mask, "Invert Layer Mask")

    def apply_layer_mask(self, layer_or_id) -> None:
        """Bake the mask into the layer's alpha and drop it: the picture looks the same, one undo entry."""
        layer = self.layer_by_id(getattr(layer_or_id, "id", layer_or_id))
        if layer.mask is None:
            return
        self.undo_stack.beginMacro("Apply Layer Mask")
        self.undo_stack.push(commands.SetLayerPropertyCommand(self, layer.id, "pixels", layer.pixels,
                                                              apply_mask(layer.pixels, layer.mask), "Apply Layer Mask"))
        self.undo_stack.push(commands.SetLayerMaskCommand(self, layer.id, layer.mask, None, "Apply Layer Mask"))
        self.undo_stack.endMacro()

    def merge_down(self, layer_or_id) -> None:
        upper = self.layer_by_id(getattr(layer_or_id, "id", layer_or_id))
        i = self.index_of(upper)
        if i == 0:
            return
        lower = self._layers[i - 1]
        # Only the lower layer's own pixels are merged into; its opacity and mask still apply after.
        base = Layer("", lower.pixels)
        merged = qimage_to_rgba(composite_qimage([base, upper], self._width, self._height))
        self.undo_stack.push(commands.MergeDownCommand(self, upper, lower.id, lower.pixels, merged,
                                                       f"Merge Down “{upper.name}”"))

    def _set_property(self, layer_or_id, prop, value, text):
        layer = self.layer_by_id(getattr(layer_or_id, "id", layer_or_id))
        old = getattr(layer, prop)
        if old != value:
            self.undo_stack.push(commands.SetLayerPropertyCommand(self, layer.id, prop, old, value, text))

    def _checked_mask(self, mask: np.ndarray) -> np.ndarray:
        mask = np.ascontiguousarray(mask, np.uint8)
        if mask.shape != (self._height, self._width):
            raise ValueError(f"mask is {mask.shape}, the document is {(self._height, self._width)}")
        return mask.copy()

    # ----------------------------------------------------------------- edit mask = selection (undoable)
    def set_edit_mask(self, mask: np.ndarray, text: str = "Set Edit Mask") -> bool:
        """Replace the edit mask, which is the selection: one undo entry holding only the rectangle
        that changed, and none when nothing did. True when it changed."""
        new = self._checked_mask(mask)
        changed = new != self._edit_mask
        rows, cols = np.flatnonzero(changed.any(axis=1)), np.flatnonzero(changed.any(axis=0))
        if not rows.size:
            return False
        x0, y0, x1, y1 = int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1
        self.undo_stack.push(commands.MaskPatchCommand(self, (x0, y0, x1 - x0, y1 - y0),
                                                       self._edit_mask[y0:y1, x0:x1].copy(),
                                                       new[y0:y1, x0:x1].copy(), text))
        return True

    def fill_edit_mask(self) -> None:
        self.set_edit_mask(np.full((self._height, self._width), 255, np.uint8), "Select All")

    def clear_edit_mask(self) -> None:
        self.set_edit_mask(np.zeros((self._height, self._width), np.uint8), "Deselect")

    def invert_edit_mask(self) -> None:
        self.set_edit_mask(255 - self._edit_mask, "Invert Selection")

    def begin_mask_stroke(self, erase: bool = False, layer=None) -> "MaskStroke":
        """A brush (or eraser) stroke on the edit mask, or on `layer`'s own mask when given."""
        return MaskStroke(self, erase, None if layer is None else layer.id)

    # ----------------------------------------------------------------- points (undoable)
    # All on the active layer's pairs; without a layer there is nothing to put points on.
    def _push_points(self, pairs, text: str) -> None:
        layer = self.active_layer
        if layer is not None:
            self.undo_stack.push(commands.SetPointsCommand(self, layer.id, layer.points,
                                                           self._checked_points(pairs), text))

    def add_point_pair(self, hx: float, hy: float, tx: float, ty: float) -> None:
        self._push_points(self.point_pairs() + [(hx, hy, tx, ty)], "Add Point Pair")

    def move_point(self, index: int, end: str, x: float, y: float) -> None:
        pairs = self.point_pairs()
        hx, hy, tx, ty = pairs[index]
        pairs[index] = (x, y, tx, ty) if end == HANDLE else (hx, hy, x, y)
        self._push_points(pairs, "Move Handle Point" if end == HANDLE else "Move Target Point")

    def remove_point_pairs(self, indices) -> None:
        drop = set(indices)
        if drop:
            pairs = [p for i, p in enumerate(self.point_pairs()) if i not in drop]
            self._push_points(pairs, "Delete Point Pair" if len(drop) == 1 else "Delete Point Pairs")

    def clear_point_pairs(self) -> None:
        if self.point_pairs():
            self._push_points([], "Clear Points")

    def set_point_pairs(self, pairs, text: str = "Move Points") -> None:
        """Replace all of the active layer's pairs at once, one undo entry."""
        self._push_points(pairs, text)

    @staticmethod
    def _checked_points(pairs) -> tuple:
        new = tuple(tuple(float(v) for v in p) for p in pairs)
        if any(len(p) != 4 or not all(math.isfinite(v) for v in p) for p in new):
            raise ValueError("point pairs are (hx, hy, tx, ty) finite numbers")
        return new

    # ----------------------------------------------------------------- used by commands only
    def _insert_layer(self, index: int, layer: Layer, activate: bool = True) -> None:
        self._layers.insert(index, layer)
        self.layers_changed.emit()
        if activate or self.active_layer is None:
            self._activate(layer.id)

    def _remove_layer(self, layer_id: int) -> int:
        i = self.index_of(layer_id)
        del self._layers[i]
        self.layers_changed.emit()
        if self._active_id == layer_id:
            nxt = self._layers[min(i, len(self._layers) - 1)].id if self._layers else -1
            self._activate(nxt)
        return i

    def _move_layer(self, layer_id: int, index: int) -> None:
        layer = self._layers.pop(self.index_of(layer_id))
        self._layers.insert(index, layer)
        self.layers_changed.emit()

    def _set_layer_attr(self, layer_id: int, prop: str, value) -> None:
        layer = self.layer_by_id(layer_id)
        setattr(layer, prop, value)
        if prop in ("pixels", "mask"):
            layer.revision += 1
        self.layer_changed.emit(layer_id)

    def _activate(self, layer_id: int) -> None:
        changed = layer_id != self._active_id
        self._active_id = layer_id
        self.active_layer_changed.emit(layer_id)
        if changed:
            self.points_changed.emit()  # the points shown are the active layer's

    def _put_mask_patch(self, rect, patch: np.ndarray) -> None:
        x, y, w, h = rect
        self._edit_mask[y:y + h, x:x + w] = patch
        self.edit_mask_changed.emit(QRect(x, y, w, h))

    def _put_layer_mask_patch(self, layer_id: int, rect, patch: np.ndarray) -> None:
        x, y, w, h = rect
        layer = self.layer_by_id(layer_id)
        layer.mask[y:y + h, x:x + w] = patch
        layer.revision += 1
        self.layer_changed.emit(layer_id)

    def _set_points(self, layer_id: int, pairs) -> None:
        self.layer_by_id(layer_id).points = tuple(pairs)
        if layer_id != self._active_id:
            self._activate(layer_id)  # an undo shows the points it changed
        else:
            self.points_changed.emit()


class MaskStroke:
    """One brush or eraser stroke on the edit mask (the selection) or on a layer's mask: painted
    live, recorded as one undo entry. Painting a layer that has no mask gives it one (all shown)."""

    def __init__(self, doc: Document, erase: bool, layer_id: int | None = None):
        self._doc = doc
        self._erase = erase
        self._layer_id = layer_id
        self._added_mask = False
        if layer_id is None:
            self._mask = doc._edit_mask
        else:
            layer = doc.layer_by_id(layer_id)
            if layer.mask is None:
                layer.mask = np.full((doc.height, doc.width), 255, np.uint8)  # live; recorded at finish
                self._added_mask = True
            self._mask = layer.mask
        self._before = self._mask.copy()
        self._box: list[int] | None = None  # x0, y0, x1, y1 touched so far
        self._last: tuple[float, float] | None = None

    def stroke_to(self, x: float, y: float, diameter: float, hardness: float) -> None:
        """Dab along the segment from the previous position so fast moves leave no gaps."""
        radius = max(0.5, diameter / 2.0)
        if self._last is None:
            self._dab(x, y, radius, hardness)
        else:
            lx, ly = self._last
            dist = math.hypot(x - lx, y - ly)
            steps = max(1, int(dist / max(0.5, radius * 0.25)))
            for k in range(1, steps + 1):
                t = k / steps
                self._dab(lx + (x - lx) * t, ly + (y - ly) * t, radius, hardness)
        self._last = (x, y)

    def _dab(self, cx, cy, radius, hardness) -> None:
        doc = self._doc
        mask = self._mask
        h, w = mask.shape
        x0, y0 = max(0, int(math.floor(cx - radius))), max(0, int(math.floor(cy - radius)))
        x1, y1 = min(w, int(math.ceil(cx + radius)) + 1), min(h, int(math.ceil(cy + radius)) + 1)
        if x0 >= x1 or y0 >= y1:
            return
        yy, xx = np.mgrid[y0:y1, x0:x1]
        d = np.hypot(xx + 0.5 - cx, yy + 0.5 - cy)
        inner = radius * max(0.0, min(1.0, hardness))
        if radius - inner < 1e-6:
            a = (d <= radius).astype(np.float32)
        else:
            a = np.clip((radius - d) / (radius - inner), 0.0, 1.0)
        amount = (a * 255.0 + 0.5).astype(np.uint8)
        region = mask[y0:y1, x0:x1]
        if self._erase:
            np.minimum(region, 255 - amount, out=region)
        else:
            np.maximum(region, amount, out=region)
        if self._box is None:
            self._box = [x0, y0, x1, y1]
        else:
            b = self._box
            self._box = [min(b[0], x0), min(b[1], y0), max(b[2], x1), max(b[3], y1)]
        if self._layer_id is None:
            doc.edit_mask_changed.emit(QRect(x0, y0, x1 - x0, y1 - y0))
        else:
            doc.layer_mask_stroked.emit(self._layer_id, QRect(x0, y0, x1 - x0, y1 - y0))

    def finish(self) -> None:
        doc = self._doc
        if self._box is None:
            if self._added_mask:
                doc._set_layer_attr(self._layer_id, "mask", None)  # views may have seen it live
            return
        x0, y0, x1, y1 = self._box
        rect = (x0, y0, x1 - x0, y1 - y0)
        after = self._mask[y0:y1, x0:x1].copy()
        before = self._before[y0:y1, x0:x1].copy()
        self._box = None
        unchanged = np.array_equal(before, after)
        if self._layer_id is None:
            if not unchanged:
                text = "Erase Mask Stroke" if self._erase else "Brush Mask Stroke"
                doc.undo_stack.push(commands.MaskPatchCommand(doc, rect, before, after, text))
            return
        layer = doc.layer_by_id(self._layer_id)
        text = "Hide with Layer Mask" if self._erase else "Reveal with Layer Mask"
        if self._added_mask:
            # The mask this stroke made: before it there was none, and undo takes it away again.
            layer.mask = None
            if not unchanged:
                doc.undo_stack.push(commands.SetLayerMaskCommand(doc, layer.id, None, self._mask.copy(), text))
            else:
                doc._set_layer_attr(layer.id, "mask", None)
        elif not unchanged:
            doc.undo_stack.push(commands.LayerMaskPatchCommand(doc, layer.id, rect, before, after, text))
