"""What can be done with an edit's result layer: "Edit Again with These Settings" fills the Edit
panel with the method and parameters stored in the layer (its tooltip lists them), makes its
source the layer to edit, and gives it back the point pairs of a drag.

The source is taken to be the nearest layer below the result that is not itself a result (results
land just above their source, above the results already on it), else the layer just below."""
from __future__ import annotations

from PySide6.QtGui import QAction

from core.registry import get_method


def make_actions(win) -> None:
    a = QAction("Edit &Again with These Settings", win)
    a.setObjectName("edit_again")
    a.setToolTip("Put this result's method and parameters into the Edit panel, to run it again or vary it")
    a.triggered.connect(lambda: edit_again(win))
    win.actions_by_key["edit_again"] = a


def update_actions(win) -> None:
    layer = win.document.active_layer
    win.actions_by_key["edit_again"].setEnabled(bool(layer is not None and layer.metadata.get("method")))


def source_of(doc, result):
    below = doc.layers[:doc.index_of(result)]
    for layer in reversed(below):
        if not layer.metadata.get("method"):
            return layer
    return below[-1] if below else result


def edit_again(win, layer=None) -> bool:
    doc = win.document
    layer = layer or doc.active_layer
    meta = {} if layer is None else layer.metadata
    name = meta.get("method")
    if not name:
        win.status.message("This layer is not the result of an edit.", 4000)
        return False
    panel = win.edit_panel
    try:
        method = get_method(name)
        panel.select_method(name)
    except (KeyError, AttributeError):
        win.files.error("Cannot edit again", f"“{layer.name}” was made with “{name}”, which is not available here.")
        return False
    params = dict(meta.get("params") or {})
    kinds = {f.name: f.metadata["kind"] for f in method.params.fields()}
    form = panel.form
    form.reset()
    form.set_values({k: v for k, v in params.items() if kinds.get(k) != "points"})
    source = source_of(doc, layer)
    doc.set_active_layer(source)
    points = params.get("points")
    if method.uses_points and points:  # onto the layer now active: the one the edit runs on
        pairs = [tuple(float(v) for v in p) for p in points]
        if pairs != doc.point_pairs():
            doc.set_point_pairs(pairs, text=f"Points of “{layer.name}”")
    win.edit_dock.show()
    win.edit_dock.raise_()
    win.status.message(f"The Edit panel has the settings of “{layer.name}”: Run edits “{source.name}” again.", 8000)
    return True
