"""The Select menu, the selection tools' actions and options, and what turns a tool's shape or wand
click into the document's selection (its edit mask, one undo entry each).

Shortcuts as in Photoshop, GIMP and Krita: M rectangle (M again: ellipse), L lasso (L again:
polygon), W magic wand, Ctrl+A select all, Ctrl+Shift+A deselect, Ctrl+I invert."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QCheckBox, QComboBox, QHBoxLayout, QLabel, QSizePolicy, QWidget
from superqt import QLabeledSlider

from widgets import dialogs
from widgets.canvas import Tool
from widgets.icons import icon
from widgets.selection_tools import TOOL_LABELS, SelectMode

from . import selection

# (tool, menu text, the keys as menus show them, tooltip)
TOOLS = (
    (Tool.SELECT_RECT, "&Rectangle Select", "M", "Rectangle Select  (M; M again: Ellipse)"),
    (Tool.SELECT_ELLIPSE, "E&llipse Select", "M, M", "Ellipse Select  (M twice)"),
    (Tool.LASSO, "&Lasso", "L", "Lasso: draw around what to select  (L; L again: Polygon)"),
    (Tool.POLYGON, "&Polygon Lasso", "L, L",
     "Polygon Lasso: click the corners; Enter, a double-click or the first corner closes it  (L twice)"),
    (Tool.WAND, "Magic &Wand", "W", "Magic Wand: click a colour to select it and what is like it  (W)"),
)
MODE_NAMES = {SelectMode.REPLACE: "Replace", SelectMode.ADD: "Add (Shift)",
              SelectMode.SUBTRACT: "Subtract (Alt)", SelectMode.INTERSECT: "Intersect (Shift+Alt)"}
MODE_WORDS = {SelectMode.ADD: "Add to", SelectMode.SUBTRACT: "Subtract from", SelectMode.INTERSECT: "Intersect with"}


def make_actions(win) -> None:
    """The tool actions (into win.tool_group), the M/L cycling shortcuts and the Select menu's
    commands; the Select All / Deselect / Invert actions are window_actions' mask_* ones."""
    canvas = win.canvas
    for tool, text, keys, tip in TOOLS:
        # The keys after a tab: menus show them where a shortcut goes; the shortcuts themselves are
        # the cycling actions below (and W), so a click on a tool's button never cycles.
        a = QAction(icon(tool.value), f"{text}\t{keys}" if tool != Tool.WAND else text, win)
        a.setObjectName(f"tool_{tool.value}")
        a.setCheckable(True)
        a.setToolTip(tip)
        a.triggered.connect(lambda _=False, t=tool: canvas.set_tool(t))
        win.tool_group.addAction(a)
        win.actions_by_key[a.objectName()] = a

    def cycle(first, second):
        canvas.set_tool(second if canvas.tool == first else first)

    for key, shortcut, pair in (("cycle_marquee", "M", (Tool.SELECT_RECT, Tool.SELECT_ELLIPSE)),
                                ("cycle_lasso", "L", (Tool.LASSO, Tool.POLYGON))):
        a = QAction(win)
        a.setObjectName(key)
        a.setShortcut(QKeySequence(shortcut))
        a.triggered.connect(lambda _=False, p=pair: cycle(*p))
        win.addAction(a)  # a shortcut only: not in a menu
        win.actions_by_key[key] = a
    win.actions_by_key["tool_wand"].setShortcut(QKeySequence("W"))

    commands = (("select_grow", "&Grow Selection…", lambda: _ask_and_apply(win, "grow")),
                ("select_shrink", "&Shrink Selection…", lambda: _ask_and_apply(win, "shrink")),
                ("select_feather", "&Feather Selection…", lambda: _ask_and_apply(win, "feather")),
                ("select_alpha", "Select from Layer &Alpha", lambda: select_layer_alpha(win)))
    for key, text, slot in commands:
        a = QAction(text, win)
        a.setObjectName(key)
        a.triggered.connect(slot)
        win.actions_by_key[key] = a
    win.actions_by_key["select_alpha"].setToolTip("Select what the active layer shows (its opaque pixels)")

    tools = canvas.selection_tool
    tools.shape_selected.connect(lambda path, mode, tool: apply_shape(win, path, mode, tool))
    tools.wand_clicked.connect(lambda x, y, mode: apply_wand(win, x, y, mode))


def make_menu(win, menubar) -> None:
    a = win.actions_by_key
    m = menubar.addMenu("&Select")
    for key in ("mask_fill", "mask_clear", "mask_invert", None, "select_grow", "select_shrink", "select_feather",
                None, "select_alpha", None):
        m.addSeparator() if key is None else m.addAction(a[key])
    for tool, *_ in TOOLS:
        m.addAction(a[f"tool_{tool.value}"])
    win.select_menu = m


def update_actions(win) -> None:
    d, a = win.document, win.actions_by_key
    for k in ("select_grow", "select_shrink", "select_feather"):
        a[k].setEnabled(not d.is_empty)  # without a selection they change nothing, and say so
    a["select_alpha"].setEnabled(d.active_layer is not None)


# ---- tool options ---------------------------------------------------------------------------------
def add_tool_options(win, bar) -> None:
    """Mode, antialiasing and the wand's settings, shown while a selection tool is active."""
    opts = win.canvas.selection_tool.options
    box = QWidget()
    box.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Preferred)
    row = QHBoxLayout(box)
    row.setContentsMargins(6, 0, 0, 0)
    win.select_mode_combo = combo = QComboBox()
    for mode, name in MODE_NAMES.items():
        combo.addItem(name, mode)
    combo.setToolTip("How a new selection combines with the one there is. Held at the press: "
                     "Shift adds, Alt subtracts, Shift+Alt intersects.")
    combo.currentIndexChanged.connect(lambda i: setattr(opts, "mode", combo.itemData(i)))
    win.select_antialias = aa = QCheckBox("Antialiasing")
    aa.setChecked(opts.antialias)
    aa.setToolTip("Soft one-pixel edges for ellipses and lassos")
    aa.toggled.connect(lambda on: setattr(opts, "antialias", on))
    wand = QWidget()
    wand_row = QHBoxLayout(wand)
    wand_row.setContentsMargins(0, 0, 0, 0)
    wand_row.addWidget(QLabel("  Tolerance "))
    win.wand_tolerance = tol = QLabeledSlider(Qt.Orientation.Horizontal)
    tol.setRange(0, 255)
    tol.setValue(opts.tolerance)
    tol.setFixedWidth(150)
    tol.setToolTip("How different a colour may be from the clicked one (0 = the same colour only)")
    tol.valueChanged.connect(lambda v: setattr(opts, "tolerance", int(v)))
    win.wand_contiguous = cont = QCheckBox("Contiguous")
    cont.setChecked(opts.contiguous)
    cont.setToolTip("Only the region connected to the clicked pixel; off: every similar pixel in the picture")
    cont.toggled.connect(lambda on: setattr(opts, "contiguous", on))
    win.wand_merged = merged = QCheckBox("Sample all layers")
    merged.setChecked(opts.sample_merged)
    merged.setToolTip("Compare the colours of the picture as shown, not only the active layer's")
    merged.toggled.connect(lambda on: setattr(opts, "sample_merged", on))
    for w in (tol, cont, merged):
        wand_row.addWidget(w)
    row.addWidget(QLabel("Selection "))
    row.addWidget(combo)
    row.addWidget(aa)
    row.addWidget(wand)
    bar.addSeparator()
    win.selection_options_action = bar.addWidget(box)
    win.wand_options = wand

    def show_for(tool):
        is_select = tool.value in TOOL_LABELS
        win.selection_options_action.setVisible(is_select)
        for act in win.brush_option_actions:
            act.setVisible(not is_select)
        wand.setVisible(tool == Tool.WAND)
        aa.setVisible(tool in (Tool.SELECT_ELLIPSE, Tool.LASSO, Tool.POLYGON))

    win.canvas.tool_changed.connect(show_for)
    show_for(win.canvas.tool)


# ---- from the tools to the document ----------------------------------------------------------------
def _undo_text(what: str, mode: SelectMode) -> str:
    return what if mode == SelectMode.REPLACE else f"{what} ({mode.value.capitalize()})"


def _store(win, mask: np.ndarray, text: str) -> None:
    d = win.document
    if d.set_edit_mask(mask, text):
        n = int(np.count_nonzero(d.edit_mask_view()))
        box = selection.bounding_box(d.edit_mask_view())
        win.status.message("Nothing is selected: an edit changes the whole layer." if box is None else
                           f"Selected {n:,} px in {box[2]} × {box[3]} — the edit changes only this.", 5000)


def apply_shape(win, path, mode: SelectMode, tool: str) -> None:
    d = win.document
    if d.is_empty:
        return
    if path.isEmpty():
        if mode == SelectMode.REPLACE:  # a plain click without a drag drops the selection, as in GIMP
            _store(win, np.zeros((d.height, d.width), np.uint8), "Deselect")
        return
    antialias = win.canvas.selection_tool.options.antialias
    new = selection.path_mask(path, d.width, d.height, antialias)
    _store(win, selection.combine(d.edit_mask_view(), new, mode), _undo_text(TOOL_LABELS[tool], mode))


def apply_wand(win, x: float, y: float, mode: SelectMode) -> None:
    d = win.document
    layer = d.active_layer
    if layer is None:
        return
    opts = win.canvas.selection_tool.options
    pixels = d.composite_rgba() if opts.sample_merged else layer.pixels
    new = selection.wand(pixels, x, y, opts.tolerance, opts.contiguous)
    _store(win, selection.combine(d.edit_mask_view(), new, mode), _undo_text(TOOL_LABELS["wand"], mode))


def select_layer_alpha(win) -> None:
    layer = win.document.active_layer
    if layer is not None:
        _store(win, selection.layer_alpha(layer.pixels, layer.mask), "Select Layer Alpha")


OPERATIONS = {
    "grow": ("Grow Selection", "Grow by (pixels):", 10, selection.grow),
    "shrink": ("Shrink Selection", "Shrink by (pixels):", 10, selection.shrink),
    "feather": ("Feather Selection", "Feather the edge over (pixels):", 8, selection.feather),
}


def apply_operation(win, name: str, radius: float) -> None:
    title, _label, _default, fn = OPERATIONS[name]
    d = win.document
    if d.is_empty or radius <= 0:
        return
    if not d.edit_mask_view().any():
        win.status.message("Nothing is selected: select something first.", 4000)
        return
    _store(win, fn(d.edit_mask_view(), radius), f"{title} {radius:g} px")


def _ask_and_apply(win, name: str) -> None:
    title, label, default, _fn = OPERATIONS[name]
    d = win.document
    radius = dialogs.ask_number(win, title, label, default, 0, max(1, max(d.width, d.height) // 2))
    if radius:
        apply_operation(win, name, radius)
