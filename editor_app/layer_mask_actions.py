"""Layer ▸ Layer Mask: add (showing all, or from the selection), invert, apply, remove, paint and
show the active layer's own mask, every change one undo entry.

A result layer's mask is where its edit applied; painting it refines that after the fact: with
Edit Layer Mask on, the brush reveals more of the layer and the eraser hides it. The mask is
saved in the project (malleable/masks/ in the .ora, the layer PNG with it applied for other
programs)."""
from __future__ import annotations

from PySide6.QtGui import QAction

from widgets.canvas import Tool
from widgets.layer_mask_view import LayerMaskOverlayItem

MENU = ("layer_mask_add", "mask_from_edit", None, "layer_mask_edit", "layer_mask_show", None,
        "layer_mask_invert", "layer_mask_apply", "mask_remove")


def _on_active(win, fn):
    layer = win.document.active_layer
    if layer is not None:
        fn(layer)


def make_actions(win) -> None:
    """Needs window_actions' mask_from_edit and mask_remove (retitled here) and the canvas."""
    d, a = win.document, win.actions_by_key

    def add(key, text, slot, tip=None, checkable=False):
        act = QAction(text, win)
        act.setObjectName(key)
        act.setCheckable(checkable)
        act.setToolTip(tip or text.replace("&", "").replace("…", ""))
        act.triggered.connect(slot)
        a[key] = act
        return act

    add("layer_mask_add", "&Add Layer Mask", lambda: _on_active(win, d.add_layer_mask),
        "A mask that shows the whole layer, to paint what it hides")
    add("layer_mask_invert", "&Invert Layer Mask", lambda: _on_active(win, d.invert_layer_mask))
    add("layer_mask_apply", "A&pply Layer Mask", lambda: _on_active(win, d.apply_layer_mask),
        "Bake the mask into the layer's transparency and remove it")
    add("layer_mask_edit", "&Edit Layer Mask", lambda on: set_editing(win, on),
        "Brush and eraser paint the active layer's mask: the brush reveals, the eraser hides", checkable=True)
    add("layer_mask_show", "S&how Layer Mask", lambda on: _show_overlay(win),
        "Tint what the active layer's mask hides", checkable=True)
    a["mask_from_edit"].setText("Add Layer Mask from &Selection")
    a["mask_from_edit"].setToolTip("A mask that shows the layer only where it is selected")
    a["mask_remove"].setText("&Remove Layer Mask")

    win.layer_mask_overlay = LayerMaskOverlayItem(d)
    win.canvas.scene().addItem(win.layer_mask_overlay)
    d.reset.connect(lambda: a["layer_mask_edit"].setChecked(False) or set_editing(win, False))


def make_menu(win, layer_menu) -> None:
    m = layer_menu.addMenu("Layer &Mask")
    for key in MENU:
        m.addSeparator() if key is None else m.addAction(win.actions_by_key[key])
    win.layer_mask_menu = m


def update_actions(win) -> None:
    a = win.actions_by_key
    active = win.document.active_layer
    has_mask = active is not None and active.mask is not None
    a["layer_mask_add"].setEnabled(active is not None and not has_mask)
    a["layer_mask_edit"].setEnabled(active is not None)
    a["layer_mask_show"].setEnabled(active is not None)
    for k in ("layer_mask_invert", "layer_mask_apply"):
        a[k].setEnabled(has_mask)


def _show_overlay(win) -> None:
    a = win.actions_by_key
    win.layer_mask_overlay.setVisible(a["layer_mask_edit"].isChecked() or a["layer_mask_show"].isChecked())


def set_editing(win, on: bool) -> None:
    """Brush and eraser paint the active layer's mask (on) or the selection (off)."""
    c, a = win.canvas, win.actions_by_key
    c.paint_layer_mask = bool(on)
    if a["layer_mask_edit"].isChecked() != bool(on):
        a["layer_mask_edit"].setChecked(bool(on))
    _show_overlay(win)
    # Two tints at once would be hard to tell apart: the selection's waits while the mask is painted.
    c.mask_item.setVisible(not on and a["show_mask"].isChecked())
    if on:
        if c.tool not in (Tool.BRUSH, Tool.ERASER):
            c.set_tool(Tool.BRUSH)
        win.status.message("Painting the layer mask: the brush reveals the layer, the eraser hides it.", 6000)
