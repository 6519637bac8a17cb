"""View ▸ Compare: the before/after split, and holding backslash (widgets/compare_view.py)."""
from __future__ import annotations

from PySide6.QtGui import QAction

from widgets.compare_view import CompareController


def make_actions(win) -> None:
    win.compare = compare = CompareController(win.canvas, win.document, win)
    a = QAction("Compare &Before/After (split; or hold \\)", win)
    a.setObjectName("compare_split")
    a.setCheckable(True)
    a.setToolTip("Split the canvas: what is below the edit layer on the left, the edit on the right. "
                 "Hold \\ to see the whole picture without it.")
    a.triggered.connect(compare.set_split)
    compare.changed.connect(lambda: a.setChecked(compare.split))
    win.actions_by_key["compare_split"] = a


def update_actions(win) -> None:
    win.actions_by_key["compare_split"].setEnabled(not win.document.is_empty)
