"""The window's docks: Layers on the right, Edit and History tabbed below it."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDockWidget, QUndoView

from widgets.layer_panel import LayerPanel


def _dock(win, title: str, name: str, widget) -> QDockWidget:
    dock = QDockWidget(title, win)
    dock.setObjectName(name)
    dock.setWidget(widget)
    dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                     | QDockWidget.DockWidgetFeature.DockWidgetClosable
                     | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
    return dock


def make_docks(win, edit_panel) -> None:
    """Sets win.layer_panel, win.edit_panel, win.history_view and the three docks."""
    win.layer_panel = LayerPanel(win.document, win.actions_by_key, win)
    win.layers_dock = _dock(win, "Layers", "LayersDock", win.layer_panel)
    win.edit_panel = edit_panel
    win.edit_dock = _dock(win, "Edit", "EditDock", edit_panel)
    win.history_view = QUndoView(win.document.undo_stack)
    win.history_view.setEmptyLabel("Original")
    win.history_dock = _dock(win, "History", "HistoryDock", win.history_view)
    win.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, win.layers_dock)
    win.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, win.edit_dock)
    win.tabifyDockWidget(win.edit_dock, win.history_dock)
    win.edit_dock.raise_()
    win.resizeDocks([win.layers_dock], [300], Qt.Orientation.Horizontal)
