"""The window's actions (one QAction per command, keyed by name), its menus and tool bars, and
which actions are enabled for the document as it is now."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QLabel
from superqt import QLabeledDoubleSlider, QLabeledSlider

from core.registry import all_methods
from widgets import dialogs

from . import variations
from widgets.canvas import Tool
from widgets.icons import icon

from . import compare_actions, layer_mask_actions, result_actions, selection_actions


def _action(win, key, text, slot=None, shortcut=None, icon_name=None, checkable=False, tip=None) -> QAction:
    a = QAction(text, win)
    a.setObjectName(key)
    if icon_name:
        a.setIcon(icon(icon_name))
    if shortcut:
        seqs = shortcut if isinstance(shortcut, (list, tuple)) else [shortcut]
        a.setShortcuts([QKeySequence(s) for s in seqs])
    if checkable:
        a.setCheckable(True)
    if slot:
        a.triggered.connect(slot)
    shown = a.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
    a.setToolTip(f"{tip or text.replace('…', '')}" + (f"  ({shown})" if shown else ""))
    win.actions_by_key[key] = a
    return a


def _on_active(doc, fn):
    layer = doc.active_layer
    if layer is not None:
        fn(layer)


def _shift_active(doc, step):
    layer = doc.active_layer
    if layer is not None:
        doc.move_layer(layer, doc.index_of(layer) + step)


def _ask_rename_layer(win):
    layer = win.document.active_layer
    if layer is None:
        return
    name = dialogs.ask_text(win, "Rename Layer", "Name:", layer.name)
    if name:
        win.document.rename_layer(layer, name)


def make_actions(win) -> None:
    """Fills win.actions_by_key and win.tool_group."""
    win.actions_by_key = {}
    K = QKeySequence.StandardKey
    d, c, files = win.document, win.canvas, win.files

    def A(*args, **kwargs):
        return _action(win, *args, **kwargs)

    A("open", "&Open…", files.ask_open, K.Open)
    A("add_layer", "&Add Image as Layer…", files.ask_add_layers, "Ctrl+Shift+O", "layer-add")
    A("save", "&Save", files.save, K.Save)
    A("save_as", "Save &As…", files.save_as, "Ctrl+Shift+S")
    A("export", "&Export…", files.export, "Ctrl+E", tip="Export the picture, a layer or the selection as PNG, JPEG, WebP or TIFF")
    A("export_again", "Export A&gain", files.export_again, "Ctrl+Shift+E", tip="Export again to the same file with the same settings")
    A("close", "&Close", files.close_document, K.Close)
    A("quit", "&Quit", win.close, K.Quit)

    undo = d.undo_stack.createUndoAction(win, "&Undo")
    undo.setShortcuts(QKeySequence.StandardKey.Undo)
    redo = d.undo_stack.createRedoAction(win, "&Redo")
    redo.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
    win.actions_by_key.update(undo=undo, redo=redo)
    # The selection is the edit mask: what an edit may change.
    A("mask_fill", "Select &All", d.fill_edit_mask, "Ctrl+A", "mask-fill", tip="Select the whole picture")
    A("mask_clear", "&Deselect", d.clear_edit_mask, ["Ctrl+Shift+A", "Ctrl+Shift+X"], "mask-clear",
      tip="Select nothing (an edit then changes the whole layer)")
    A("mask_invert", "&Invert Selection", d.invert_edit_mask, "Ctrl+I", "mask-invert")
    A("points_delete", "&Delete Selected Points", c.delete_selected_points, K.Delete)
    A("points_clear", "Clear All &Points", d.clear_point_pairs, None, "points-clear")

    A("duplicate_layer", "&Duplicate Layer", lambda: _on_active(d, d.duplicate_layer), "Ctrl+J", "layer-duplicate")
    A("delete_layer", "De&lete Layer", lambda: _on_active(d, d.remove_layer), "Ctrl+Shift+Del", "delete")
    A("rename_layer", "&Rename Layer…", lambda: _ask_rename_layer(win), "F2")
    A("raise_layer", "Raise Layer", lambda: _shift_active(d, +1), "Ctrl+]", "up")
    A("lower_layer", "Lower Layer", lambda: _shift_active(d, -1), "Ctrl+[", "down")
    A("merge_down", "&Merge Down", lambda: _on_active(d, d.merge_down), "Ctrl+Shift+M", "merge-down")
    A("toggle_visible", "&Show Layer", lambda: _on_active(d, lambda l: d.set_layer_visible(l, not l.visible)),
      None, checkable=True)
    A("mask_from_edit", "Add Layer Mask from &Selection",
      lambda: _on_active(d, lambda l: d.set_layer_mask(l, d.edit_mask_array(), "Layer Mask from Selection")))
    A("mask_remove", "Remove Layer Mas&k", lambda: _on_active(d, lambda l: d.set_layer_mask(l, None)))
    A("variation_keep", "&Keep Only This Variation", lambda: _on_active(d, lambda l: variations.keep_only(d, l)),
      tip="Keep the selected variation of its group and delete the others")

    A("zoom_in", "Zoom &In", c.zoom_in, ["Ctrl++", "Ctrl+="])
    A("zoom_out", "Zoom &Out", c.zoom_out, "Ctrl+-")
    A("fit", "&Fit to Window", c.fit_to_window, "Ctrl+0", "fit")
    A("actual", "&Actual Pixels (100 %)", c.actual_pixels, "Ctrl+1", "actual")
    A("show_mask", "Show &Edit Mask", lambda on: c.mask_item.setVisible(on), None, checkable=True)
    win.actions_by_key["show_mask"].setChecked(True)

    win.tool_group = QActionGroup(win)
    for tool, text, key in ((Tool.BRUSH, "&Brush (paint the edit mask)", "B"),
                            (Tool.ERASER, "&Eraser (erase the edit mask)", "E"),
                            (Tool.POINTS, "&Points (click a handle, then its target)", "P"),
                            (Tool.HAND, "&Hand (pan; or hold Space)", "H")):
        a = A(f"tool_{tool.value}", text, lambda _=False, t=tool: c.set_tool(t), key, tool.value, checkable=True)
        win.tool_group.addAction(a)
    win.actions_by_key["tool_brush"].setChecked(True)
    A("brush_bigger", "Bigger Brush", c.grow_brush, "]")
    A("brush_smaller", "Smaller Brush", c.shrink_brush, "[")
    A("about", "&About Malleable", lambda: dialogs.show_about(win))
    A("model", "&Model…", win.ask_model, tip="Choose the diffusion model, device and precision")
    A("getting_models", "Getting Stable Diffusion…", win.show_model_help)
    for part in (selection_actions, layer_mask_actions, compare_actions, result_actions):
        part.make_actions(win)
    for m in all_methods():
        if m.diagnostic:  # engine checks: they run at once on the picture, with their defaults
            A(f"diagnostic_{m.name}", f"{m.plain_name} ({m.purpose})" if m.purpose else m.plain_name,
              lambda _=False, name=m.name: win.run_diagnostic(name), tip=m.description)


def _add(menu, actions, keys) -> None:
    """Add the actions named by keys in order; None is a separator."""
    for k in keys:
        menu.addSeparator() if k is None else menu.addAction(actions[k])


def make_menus(win) -> None:
    a = win.actions_by_key
    mb = win.menuBar()
    m = mb.addMenu("&File")
    m.addAction(a["open"])
    win.recent_menu = m.addMenu("Open &Recent")
    _add(m, a, ("add_layer", None, "save", "save_as", "export", "export_again", None, "model", None, "close", "quit"))
    m = mb.addMenu("&Edit")
    _add(m, a, ("undo", "redo", None, "points_delete", "points_clear", None))
    selection_actions.make_menu(win, mb)
    m = mb.addMenu("&Layer")
    _add(m, a, ("add_layer", "duplicate_layer", "delete_layer", "rename_layer", None, "raise_layer", "lower_layer",
                "merge_down", None, "toggle_visible", "variation_keep", None, "edit_again", None))
    layer_mask_actions.make_menu(win, m)
    tools = mb.addMenu("&Tools")
    for act in win.tool_group.actions():
        tools.addAction(act)
    _add(tools, a, (None, "brush_bigger", "brush_smaller", None))
    win.diagnostics_menu = tools.addMenu("&Diagnostics")
    _add(win.diagnostics_menu, a, sorted(k for k in a if k.startswith("diagnostic_")))
    win.view_menu = m = mb.addMenu("&View")
    _add(m, a, ("zoom_in", "zoom_out", "fit", "actual", None, "show_mask", "compare_split", None))
    for dock in (win.layers_dock, win.edit_dock, win.history_dock):
        m.addAction(dock.toggleViewAction())
    _add(mb.addMenu("&Help"), a, ("getting_models", "about"))


def make_tool_bars(win) -> None:
    a, canvas = win.actions_by_key, win.canvas
    tools = win.addToolBar("Tools")
    tools.setObjectName("ToolsToolBar")
    tools.setMovable(False)
    for act in win.tool_group.actions():
        tools.addAction(act)
    win.addToolBar(Qt.ToolBarArea.LeftToolBarArea, tools)

    bar = win.addToolBar("Tool Options")
    bar.setObjectName("ToolOptionsToolBar")
    bar.setMovable(False)
    shown = [bar.addWidget(QLabel(" Size "))]
    win.size_slider = QLabeledSlider(Qt.Orientation.Horizontal)
    win.size_slider.setRange(1, 500)
    win.size_slider.setFixedWidth(170)
    win.size_slider.setToolTip("Brush diameter in image pixels  ([ and ])")
    shown.append(bar.addWidget(win.size_slider))
    shown.append(bar.addWidget(QLabel("  Hardness ")))
    win.hardness_slider = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
    win.hardness_slider.setRange(0.0, 1.0)
    win.hardness_slider.setDecimals(2)
    win.hardness_slider.setFixedWidth(150)
    win.hardness_slider.setToolTip("1 = hard edge, 0 = soft edge")
    shown.append(bar.addWidget(win.hardness_slider))
    win.brush_option_actions = shown  # hidden while a tool without a brush is active
    bar.addSeparator()
    _add(bar, a, ("mask_fill", "mask_invert", "mask_clear", None, "points_clear", None, "fit", "actual"))
    selection_actions.add_tool_options(win, bar)
    show_brush(win, canvas.brush_size, canvas.brush_hardness)
    win.size_slider.valueChanged.connect(lambda v: canvas.set_brush(size=v))
    win.hardness_slider.valueChanged.connect(lambda v: canvas.set_brush(hardness=v))
    canvas.brush_changed.connect(lambda size, hardness: show_brush(win, size, hardness))
    canvas.tool_changed.connect(lambda tool: a[f"tool_{tool.value}"].setChecked(True))
    for w in (tools, bar):
        w.toggleViewAction().setText(f"{w.windowTitle()} Tool Bar")
        win.view_menu.addAction(w.toggleViewAction())


def show_brush(win, size, hardness) -> None:
    """The sliders follow the canvas's brush (changed by [ and ] too) without echoing back."""
    for slider, value in ((win.size_slider, round(size)), (win.hardness_slider, hardness)):
        slider.blockSignals(True)
        slider.setValue(value)
        slider.blockSignals(False)


def update_actions(win) -> None:
    d, a = win.document, win.actions_by_key
    has = not d.is_empty
    active = d.active_layer
    index = d.index_of(active) if active else -1
    n = len(d.layers)
    for k in ("add_layer", "save", "save_as", "export", "export_again", "close", "mask_fill", "mask_clear",
              "mask_invert", "zoom_in", "zoom_out", "fit", "actual", *(k for k in a if k.startswith("diagnostic_"))):
        a[k].setEnabled(has)
    for k in ("duplicate_layer", "rename_layer", "toggle_visible", "mask_from_edit"):
        a[k].setEnabled(active is not None)
    a["delete_layer"].setEnabled(n > 1)  # a document keeps at least one layer
    a["merge_down"].setEnabled(index > 0)
    a["raise_layer"].setEnabled(0 <= index < n - 1)
    a["lower_layer"].setEnabled(index > 0)
    a["mask_remove"].setEnabled(active is not None and active.mask is not None)
    a["variation_keep"].setEnabled(bool(active and active.group))
    a["toggle_visible"].setChecked(bool(active and active.visible))
    a["points_delete"].setEnabled(bool(win.canvas.selected_pairs()))
    a["points_clear"].setEnabled(bool(d.point_pairs()))
    for part in (selection_actions, layer_mask_actions, compare_actions, result_actions):
        part.update_actions(win)
