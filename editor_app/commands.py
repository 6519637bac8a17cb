"""Undo commands. Each one records exactly what it needs to go both ways and refers to layers by id,
so a later reorder cannot make an older entry touch the wrong layer."""
from __future__ import annotations

from PySide6.QtGui import QUndoCommand

_OPACITY_MERGE_ID = 1001


class AddLayerCommand(QUndoCommand):
    def __init__(self, doc, layer, index, text, activate=True):
        super().__init__(text)
        self.doc, self.layer, self.index, self.activate = doc, layer, index, activate

    def redo(self):
        self.doc._insert_layer(self.index, self.layer, self.activate)

    def undo(self):
        self.doc._remove_layer(self.layer.id)


class RemoveLayerCommand(QUndoCommand):
    def __init__(self, doc, layer, text):
        super().__init__(text)
        self.doc, self.layer = doc, layer
        self.index = doc.index_of(layer)

    def redo(self):
        self.doc._remove_layer(self.layer.id)

    def undo(self):
        self.doc._insert_layer(self.index, self.layer)


class MoveLayerCommand(QUndoCommand):
    def __init__(self, doc, layer_id, old, new):
        super().__init__("Move Layer")
        self.doc, self.layer_id, self.old, self.new = doc, layer_id, old, new

    def redo(self):
        self.doc._move_layer(self.layer_id, self.new)

    def undo(self):
        self.doc._move_layer(self.layer_id, self.old)


class SetLayerPropertyCommand(QUndoCommand):
    def __init__(self, doc, layer_id, prop, old, new, text):
        super().__init__(text)
        self.doc, self.layer_id, self.prop, self.old, self.new = doc, layer_id, prop, old, new

    def redo(self):
        self.doc._set_layer_attr(self.layer_id, self.prop, self.new)

    def undo(self):
        self.doc._set_layer_attr(self.layer_id, self.prop, self.old)

    def id(self):
        # A slider drag sends many values: they collapse into one history entry.
        return _OPACITY_MERGE_ID if self.prop == "opacity" else -1

    def mergeWith(self, other):
        if other.prop != "opacity" or other.layer_id != self.layer_id:
            return False
        self.new = other.new
        return True


class SetLayerMaskCommand(QUndoCommand):
    def __init__(self, doc, layer_id, old, new, text):
        super().__init__(text)
        self.doc, self.layer_id, self.old, self.new = doc, layer_id, old, new

    def redo(self):
        self.doc._set_layer_attr(self.layer_id, "mask", self.new)

    def undo(self):
        self.doc._set_layer_attr(self.layer_id, "mask", self.old)


class MergeDownCommand(QUndoCommand):
    def __init__(self, doc, upper, lower_id, lower_before, lower_after, text):
        super().__init__(text)
        self.doc, self.upper, self.lower_id = doc, upper, lower_id
        self.index = doc.index_of(upper)
        self.before, self.after = lower_before, lower_after

    def redo(self):
        self.doc._remove_layer(self.upper.id)
        self.doc._set_layer_attr(self.lower_id, "pixels", self.after)
        self.doc._activate(self.lower_id)

    def undo(self):
        self.doc._set_layer_attr(self.lower_id, "pixels", self.before)
        self.doc._insert_layer(self.index, self.upper)


class MaskPatchCommand(QUndoCommand):
    """A rectangle of the edit mask before and after: strokes store only what they touched."""

    def __init__(self, doc, rect, before, after, text):
        super().__init__(text)
        self.doc, self.rect, self.before, self.after = doc, rect, before, after

    def redo(self):
        self.doc._put_mask_patch(self.rect, self.after)

    def undo(self):
        self.doc._put_mask_patch(self.rect, self.before)


class LayerMaskPatchCommand(QUndoCommand):
    """A rectangle of one layer's mask before and after (a brush stroke on the mask)."""

    def __init__(self, doc, layer_id, rect, before, after, text):
        super().__init__(text)
        self.doc, self.layer_id, self.rect, self.before, self.after = doc, layer_id, rect, before, after

    def redo(self):
        self.doc._put_layer_mask_patch(self.layer_id, self.rect, self.after)

    def undo(self):
        self.doc._put_layer_mask_patch(self.layer_id, self.rect, self.before)


class SetPointsCommand(QUndoCommand):
    """One layer's point pairs before and after."""

    def __init__(self, doc, layer_id, old, new, text):
        super().__init__(text)
        self.doc, self.layer_id, self.old, self.new = doc, layer_id, tuple(old), tuple(new)

    def redo(self):
        self.doc._set_points(self.layer_id, self.new)

    def undo(self):
        self.doc._set_points(self.layer_id, self.old)
