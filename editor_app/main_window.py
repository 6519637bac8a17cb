"""The main window: menus, tool bars, the canvas, the Layers / Edit / History docks, the status bar.

It wires widgets to the Document and turns file problems into dialogs; it owns no picture state."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QPointF, Qt, QTimer
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import (QDockWidget, QLabel, QMainWindow, QUndoView, QVBoxLayout, QWidget)
from superqt import QLabeledDoubleSlider, QLabeledSlider

from widgets import dialogs
from widgets.canvas import CanvasView, Tool
from widgets.icons import icon
from widgets.layer_panel import LayerPanel

from . import project_files
from .document import Document
from .image_io import IMAGE_EXTENSIONS, ImageReadError, load_image_rgba
from .ora import OraError
from .settings import AppSettings

FILE_ERRORS = (OraError, ImageReadError)


def describe_device() -> str:
    """The device edits will run on, as the status bar shows it. Imports torch: call it late."""
    try:
        import torch
        from core.device import pick_device
        dev = pick_device("auto")
        if dev.type == "cuda":
            return f"GPU: {torch.cuda.get_device_name(dev)}"
        if dev.type == "mps":
            return "GPU: Apple (MPS)"
        return "CPU"
    except Exception as exc:  # a broken torch install must not stop the editor from opening
        return f"no device ({type(exc).__name__})"


class MainWindow(QMainWindow):
    def __init__(self, settings: AppSettings | None = None, probe_device: bool = True, interactive: bool = True,
                 engine=None, load_model: bool | None = None):
        super().__init__()
        self.settings = settings or AppSettings()
        # interactive=False (screenshots, scripts): problems go to stderr instead of modal dialogs.
        self.interactive = interactive
        self.document = Document(self)
        self.setObjectName("MainWindow")
        self.setAcceptDrops(True)
        self.setDockNestingEnabled(True)

        self.canvas = CanvasView(self.document, self)
        self.setCentralWidget(self.canvas)
        size, hardness = self.settings.brush()
        self.canvas.set_brush(size, hardness)

        self._make_actions()
        self._make_docks()
        self._make_menus()
        self._make_tool_bars()
        self._make_status_bar()
        self._make_edit_session(engine)

        d = self.document
        d.file_changed.connect(self._update_title)
        d.reset.connect(self._update_actions)
        d.layers_changed.connect(self._update_actions)
        d.active_layer_changed.connect(lambda _id: self._update_actions())
        d.layer_changed.connect(lambda _id: self._update_actions())
        d.points_changed.connect(self._update_actions)
        d.reset.connect(self._update_size_label)
        self.canvas.point_selection_changed.connect(self._update_actions)
        self.canvas.zoom_changed.connect(lambda z: self.zoom_label.setText(f"{z * 100:.0f} %"))
        self.canvas.cursor_moved.connect(self._update_cursor_label)
        self.canvas.tool_changed.connect(self._on_tool_changed)
        self.canvas.brush_changed.connect(self._on_brush_changed)
        self._update_title()
        self._update_actions()
        self._update_size_label()
        self.resize(1280, 800)
        if probe_device:
            QTimer.singleShot(0, self.probe_device)
        if probe_device if load_model is None else load_model:
            # Load the model in the background now, so the first Run starts at once.
            QTimer.singleShot(0, lambda: self.edit_session.controller.load_model(self.settings_model_spec()))

    # ----------------------------------------------------------------- construction
    def _action(self, key, text, slot=None, shortcut=None, icon_name=None, checkable=False, tip=None):
        a = QAction(text, self)
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
        self.actions_by_key[key] = a
        return a

    def _make_actions(self):
        self.actions_by_key: dict[str, QAction] = {}
        A, K = self._action, QKeySequence.StandardKey
        d, c = self.document, self.canvas
        A("open", "&Open…", self.ask_open, K.Open)
        A("add_layer", "&Add Image as Layer…", self.ask_add_layers, "Ctrl+Shift+O", "layer-add")
        A("save", "&Save", self.save, K.Save)
        A("save_as", "Save &As…", self.save_as, "Ctrl+Shift+S")
        A("export", "&Export Flattened Image…", self.export, "Ctrl+E")
        A("close", "&Close", self.close_document, K.Close)
        A("quit", "&Quit", self.close, K.Quit)

        undo = d.undo_stack.createUndoAction(self, "&Undo")
        undo.setShortcuts(QKeySequence.StandardKey.Undo)
        redo = d.undo_stack.createRedoAction(self, "&Redo")
        redo.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        self.actions_by_key.update(undo=undo, redo=redo)
        A("mask_fill", "&Fill Edit Mask", d.fill_edit_mask, None, "mask-fill", tip="Make the whole picture editable")
        A("mask_clear", "C&lear Edit Mask", d.clear_edit_mask, "Ctrl+Shift+X", "mask-clear")
        A("mask_invert", "&Invert Edit Mask", d.invert_edit_mask, "Ctrl+I", "mask-invert")
        A("points_delete", "&Delete Selected Points", c.delete_selected_points, K.Delete)
        A("points_clear", "Clear All &Points", d.clear_point_pairs, None, "points-clear")

        A("duplicate_layer", "&Duplicate Layer", lambda: self._on_active(d.duplicate_layer), "Ctrl+J", "layer-duplicate")
        A("delete_layer", "De&lete Layer", lambda: self._on_active(d.remove_layer), "Ctrl+Shift+Del", "delete")
        A("rename_layer", "&Rename Layer…", self.ask_rename_layer, "F2")
        A("raise_layer", "Raise Layer", lambda: self._shift_active(+1), "Ctrl+]", "up")
        A("lower_layer", "Lower Layer", lambda: self._shift_active(-1), "Ctrl+[", "down")
        A("merge_down", "&Merge Down", lambda: self._on_active(d.merge_down), "Ctrl+Shift+M", "merge-down")
        A("toggle_visible", "&Show Layer", lambda: self._on_active(lambda l: d.set_layer_visible(l, not l.visible)),
          None, checkable=True)
        A("mask_from_edit", "Add Layer Mask from &Edit Mask",
          lambda: self._on_active(lambda l: d.set_layer_mask(l, d.edit_mask_array())))
        A("mask_remove", "Remove Layer Mas&k", lambda: self._on_active(lambda l: d.set_layer_mask(l, None)))

        A("zoom_in", "Zoom &In", c.zoom_in, ["Ctrl++", "Ctrl+="])
        A("zoom_out", "Zoom &Out", c.zoom_out, "Ctrl+-")
        A("fit", "&Fit to Window", c.fit_to_window, "Ctrl+0", "fit")
        A("actual", "&Actual Pixels (100 %)", c.actual_pixels, "Ctrl+1", "actual")
        A("show_mask", "Show &Edit Mask", lambda on: c.mask_item.setVisible(on), None, checkable=True)
        self.actions_by_key["show_mask"].setChecked(True)

        self.tool_group = QActionGroup(self)
        for tool, text, key in ((Tool.BRUSH, "&Brush (paint the edit mask)", "B"),
                                (Tool.ERASER, "&Eraser (erase the edit mask)", "E"),
                                (Tool.POINTS, "&Points (click a handle, then its target)", "P"),
                                (Tool.HAND, "&Hand (pan; or hold Space)", "H")):
            a = A(f"tool_{tool.value}", text, lambda _=False, t=tool: c.set_tool(t), key, tool.value, checkable=True)
            self.tool_group.addAction(a)
        self.actions_by_key["tool_brush"].setChecked(True)
        A("brush_bigger", "Bigger Brush", c.grow_brush, "]")
        A("brush_smaller", "Smaller Brush", c.shrink_brush, "[")
        A("about", "&About Malleable", lambda: dialogs.show_about(self))
        A("model", "&Model…", self.ask_model, tip="Choose the diffusion model, device and precision")
        A("getting_models", "Getting Stable Diffusion…", self.show_model_help)

    def _make_docks(self):
        self.layer_panel = LayerPanel(self.document, self.actions_by_key, self)
        self.layers_dock = self._dock("Layers", "LayersDock", self.layer_panel)
        # The next issue replaces this placeholder with the edit-method panel (set_edit_panel).
        self.edit_panel = QWidget()
        self.edit_panel.setObjectName("EditPanelPlaceholder")
        placeholder = QVBoxLayout(self.edit_panel)
        hint = QLabel("Editing methods will appear here.")
        hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        hint.setEnabled(False)
        placeholder.addWidget(hint)
        self.edit_dock = self._dock("Edit", "EditDock", self.edit_panel)
        self.history_view = QUndoView(self.document.undo_stack)
        self.history_view.setEmptyLabel("Original")
        self.history_dock = self._dock("History", "HistoryDock", self.history_view)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.layers_dock)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.edit_dock)
        self.tabifyDockWidget(self.edit_dock, self.history_dock)
        self.edit_dock.raise_()
        self.resizeDocks([self.layers_dock], [300], Qt.Orientation.Horizontal)

    def _dock(self, title, name, widget):
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                         | QDockWidget.DockWidgetFeature.DockWidgetClosable
                         | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
        return dock

    def _make_edit_session(self, engine) -> None:
        from widgets.edit_panel import EditPanel

        from .edit_session import EditSession

        panel = EditPanel()
        panel.setObjectName("EditPanel")
        self.set_edit_panel(panel)
        self.edit_session = EditSession(self.document, self.canvas, panel, self._error, engine, self)
        self.edit_session.status.connect(lambda text: self.statusBar().showMessage(text, 6000))
        ctl = self.edit_session.controller
        ctl.model_loaded.connect(self._on_model_loaded)
        ctl.model_failed.connect(self._on_model_failed)
        ctl.download_progress.connect(self._on_download_progress)
        self._memory_timer = QTimer(self)
        self._memory_timer.setInterval(2000)
        self._memory_timer.timeout.connect(self._update_memory_label)

    def settings_model_spec(self):
        from core import ModelSpec

        return ModelSpec()

    def ask_model(self) -> None:
        from widgets.model_dialog import ModelDialog

        dlg = ModelDialog(self.edit_session.controller.model_spec, self)
        if dlg.exec():
            spec = dlg.spec()
            self.device_label.setText(f"Loading {spec.source}…")
            self.edit_session.controller.load_model(spec)

    def show_model_help(self) -> None:
        try:
            from .first_run import FIRST_RUN_MODEL_HELP as text
        except ImportError:
            text = ("Choose File ▸ Model… to download Stable Diffusion 1.5 "
                    "(stable-diffusion-v1-5/stable-diffusion-v1-5) or open a .safetensors file you have.")
        if self.interactive:
            dialogs.show_info(self, "Getting Stable Diffusion", text)

    def _on_model_loaded(self, description: str) -> None:
        self._hide_download()
        self.device_label.setText(f"Model: {description}")
        if description.startswith("demo"):
            # First runs have only the demo: say plainly how to get the real model.
            self.statusBar().showMessage("Using the built-in demo model (it draws simple shapes). For real photos "
                                         "get Stable Diffusion 1.5: Help ▸ Getting Stable Diffusion…", 15000)
        else:
            self.statusBar().showMessage(f"Model ready: {description}", 5000)
        if "cuda" in description:
            self._memory_timer.start()
            self._update_memory_label()

    def _on_model_failed(self, kind: str, message: str) -> None:
        self._hide_download()
        self.device_label.setText(f"Device: {describe_device()}")
        if kind != "cancelled":
            self._error("Model unavailable", message)

    def _download_widgets(self):
        """A progress bar and a Cancel button in the status bar, shown only while downloading."""
        if not hasattr(self, "download_bar"):
            from PySide6.QtWidgets import QProgressBar, QPushButton

            self.download_bar = QProgressBar()
            self.download_bar.setMaximumWidth(220)
            self.download_bar.setFormat("Downloading %p%")
            self.download_cancel = QPushButton("Cancel download")
            self.download_cancel.clicked.connect(self.edit_session.controller.cancel_model_load)
            for w in (self.download_bar, self.download_cancel):
                self.statusBar().addWidget(w)
                w.hide()
        return self.download_bar, self.download_cancel

    def _hide_download(self) -> None:
        if hasattr(self, "download_bar"):
            self.download_bar.hide()
            self.download_cancel.hide()

    def _on_download_progress(self, done: int, total: int) -> None:
        bar, cancel = self._download_widgets()
        bar.setRange(0, max(1, total // 2 ** 20))
        bar.setValue(done // 2 ** 20)
        bar.setToolTip(f"{done / 2**20:.0f} / {total / 2**20:.0f} MB")
        bar.show()
        cancel.show()

    def _update_memory_label(self) -> None:
        import torch

        if torch.cuda.is_available():
            used = torch.cuda.memory_allocated() / 2 ** 30
            self.device_label.setToolTip(f"GPU memory in use: {used:.1f} GB")
            base = self.device_label.text().split("  ·")[0]
            self.device_label.setText(f"{base}  · {used:.1f} GB")

    def set_edit_panel(self, widget: QWidget) -> None:
        """Put the edit-method panel into the Edit dock (replacing the placeholder)."""
        old = self.edit_panel
        self.edit_panel = widget
        self.edit_dock.setWidget(widget)
        old.deleteLater()

    def _make_menus(self):
        a = self.actions_by_key
        mb = self.menuBar()
        m = mb.addMenu("&File")
        m.addAction(a["open"])
        self.recent_menu = m.addMenu("Open &Recent")
        self._update_recent_menu()
        m.addAction(a["add_layer"])
        m.addSeparator()
        for k in ("save", "save_as", "export"):
            m.addAction(a[k])
        m.addSeparator()
        m.addAction(a["model"])
        m.addSeparator()
        m.addAction(a["close"])
        m.addAction(a["quit"])
        m = mb.addMenu("&Edit")
        m.addAction(a["undo"])
        m.addAction(a["redo"])
        m.addSeparator()
        for k in ("mask_fill", "mask_clear", "mask_invert"):
            m.addAction(a[k])
        m.addSeparator()
        m.addAction(a["points_delete"])
        m.addAction(a["points_clear"])
        m.addSeparator()
        tools = m.addMenu("&Tools")
        for act in self.tool_group.actions():
            tools.addAction(act)
        tools.addSeparator()
        tools.addAction(a["brush_bigger"])
        tools.addAction(a["brush_smaller"])
        m = mb.addMenu("&Layer")
        m.addAction(a["add_layer"])
        for k in ("duplicate_layer", "delete_layer", "rename_layer", None, "raise_layer", "lower_layer",
                  "merge_down", None, "toggle_visible", None, "mask_from_edit", "mask_remove"):
            m.addSeparator() if k is None else m.addAction(a[k])
        self.view_menu = m = mb.addMenu("&View")
        for k in ("zoom_in", "zoom_out", "fit", "actual", None, "show_mask"):
            m.addSeparator() if k is None else m.addAction(a[k])
        m.addSeparator()
        for dock in (self.layers_dock, self.edit_dock, self.history_dock):
            m.addAction(dock.toggleViewAction())
        m = mb.addMenu("&Help")
        m.addAction(a["getting_models"])
        m.addAction(a["about"])

    def _make_tool_bars(self):
        a = self.actions_by_key
        tools = self.addToolBar("Tools")
        tools.setObjectName("ToolsToolBar")
        tools.setMovable(False)
        for act in self.tool_group.actions():
            tools.addAction(act)
        self.addToolBar(Qt.ToolBarArea.LeftToolBarArea, tools)

        bar = self.addToolBar("Tool Options")
        bar.setObjectName("ToolOptionsToolBar")
        bar.setMovable(False)
        bar.addWidget(QLabel(" Size "))
        self.size_slider = QLabeledSlider(Qt.Orientation.Horizontal)
        self.size_slider.setRange(1, 500)
        self.size_slider.setFixedWidth(170)
        self.size_slider.setToolTip("Brush diameter in image pixels  ([ and ])")
        bar.addWidget(self.size_slider)
        bar.addWidget(QLabel("  Hardness "))
        self.hardness_slider = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
        self.hardness_slider.setRange(0.0, 1.0)
        self.hardness_slider.setDecimals(2)
        self.hardness_slider.setFixedWidth(150)
        self.hardness_slider.setToolTip("1 = hard edge, 0 = soft edge")
        bar.addWidget(self.hardness_slider)
        bar.addSeparator()
        for k in ("mask_fill", "mask_invert", "mask_clear", None, "points_clear", None, "fit", "actual"):
            bar.addSeparator() if k is None else bar.addAction(a[k])
        self._on_brush_changed(self.canvas.brush_size, self.canvas.brush_hardness)
        self.size_slider.valueChanged.connect(lambda v: self.canvas.set_brush(size=v))
        self.hardness_slider.valueChanged.connect(lambda v: self.canvas.set_brush(hardness=v))
        for w in (tools, bar):
            w.toggleViewAction().setText(f"{w.windowTitle()} Tool Bar")
            self.view_menu.addAction(w.toggleViewAction())

    def _make_status_bar(self):
        sb = self.statusBar()
        self.zoom_label = QLabel("100 %")
        self.cursor_label = QLabel("")
        self.size_label = QLabel("")
        self.device_label = QLabel("Device: …")
        self.cursor_label.setMinimumWidth(110)
        for w in (self.cursor_label, self.size_label, self.zoom_label, self.device_label):
            sb.addPermanentWidget(w)

    # ----------------------------------------------------------------- view state
    def probe_device(self):
        self.device_label.setText(f"Device: {describe_device()}")

    def _update_title(self):
        d = self.document
        self.setWindowTitle("Malleable" if d.is_empty else f"{d.display_name}[*] — Malleable")
        self.setWindowModified(d.is_modified)

    def _update_size_label(self):
        d = self.document
        self.size_label.setText("" if d.is_empty else f"{d.width} × {d.height} px")

    def _update_cursor_label(self, pos: QPointF | None):
        self.cursor_label.setText("" if pos is None else f"x {int(pos.x())}  y {int(pos.y())}")

    def _update_actions(self):
        d, a = self.document, self.actions_by_key
        has = not d.is_empty
        active = d.active_layer
        index = d.index_of(active) if active else -1
        n = len(d.layers)
        for k in ("add_layer", "save", "save_as", "export", "close", "mask_fill", "mask_clear", "mask_invert",
                  "zoom_in", "zoom_out", "fit", "actual"):
            a[k].setEnabled(has)
        for k in ("duplicate_layer", "rename_layer", "toggle_visible", "mask_from_edit"):
            a[k].setEnabled(active is not None)
        a["delete_layer"].setEnabled(n > 1)  # a document keeps at least one layer
        a["merge_down"].setEnabled(index > 0)
        a["raise_layer"].setEnabled(0 <= index < n - 1)
        a["lower_layer"].setEnabled(index > 0)
        a["mask_remove"].setEnabled(active is not None and active.mask is not None)
        a["toggle_visible"].setChecked(bool(active and active.visible))
        a["points_delete"].setEnabled(bool(self.canvas.selected_pairs()))
        a["points_clear"].setEnabled(bool(d.point_pairs()))

    def _on_tool_changed(self, tool: Tool):
        self.actions_by_key[f"tool_{tool.value}"].setChecked(True)

    def _on_brush_changed(self, size, hardness):
        for slider, value in ((self.size_slider, round(size)), (self.hardness_slider, hardness)):
            slider.blockSignals(True)
            slider.setValue(value)
            slider.blockSignals(False)

    def _on_active(self, fn):
        layer = self.document.active_layer
        if layer is not None:
            fn(layer)

    def _shift_active(self, step):
        layer = self.document.active_layer
        if layer is not None:
            self.document.move_layer(layer, self.document.index_of(layer) + step)

    def ask_rename_layer(self):
        layer = self.document.active_layer
        if layer is None:
            return
        name = dialogs.ask_text(self, "Rename Layer", "Name:", layer.name)
        if name:
            self.document.rename_layer(layer, name)

    # ----------------------------------------------------------------- files
    def _error(self, title: str, message: str):
        if self.interactive:
            dialogs.show_error(self, title, message)
        else:
            import sys
            print(f"{title}: {message}", file=sys.stderr)

    def _maybe_keep_changes(self) -> bool:
        """True when it is fine to replace the document (saved, discarded or nothing to lose)."""
        if not self.document.is_modified or not self.interactive:
            return True
        answer = dialogs.ask_save_changes(self, self.document.display_name)
        if answer == dialogs.SAVE:
            return self.save()
        return answer == dialogs.DISCARD

    def open_path(self, path) -> bool:
        path = Path(path)
        if not self._maybe_keep_changes():
            return False
        try:
            project_files.open_into(self.document, path)
        except FILE_ERRORS as exc:
            self._error("Could not open", str(exc))
            return False
        except Exception as exc:  # a file we did not foresee must not take the editor down
            self._error("Could not open", f"“{path.name}” could not be opened: {exc}")
            return False
        self.settings.add_recent_file(path)
        self._update_recent_menu()
        self.statusBar().showMessage(f"Opened {path.name}", 4000)
        return True

    def add_image_layers(self, paths) -> int:
        if self.document.is_empty:
            paths = list(paths)
            if not paths or not self.open_path(paths[0]):
                return 0
            return 1 + self.add_image_layers(paths[1:])
        added = 0
        for path in map(Path, paths):
            try:
                rgba = load_image_rgba(path)
            except ImageReadError as exc:
                self._error("Could not add layer", str(exc))
                continue
            self.document.add_layer(rgba, path.stem)
            added += 1
        return added

    def ask_open(self):
        path = dialogs.ask_open_path(self, self.settings.last_dir())
        if path:
            self.open_path(path)

    def ask_add_layers(self):
        paths = dialogs.ask_open_paths(self, self.settings.last_dir())
        if paths:
            self.add_image_layers(paths)

    def save(self) -> bool:
        if self.document.file_path is None:
            return self.save_as()
        return self.save_to(self.document.file_path)

    def save_as(self) -> bool:
        d = self.document
        base = (d.file_path or d.source_path or Path(self.settings.last_dir()) / "Untitled")
        suggested = str(Path(self.settings.last_dir()) / (base.stem + ".ora"))
        path = dialogs.ask_save_path(self, suggested, dialogs.PROJECT_FILTER, "Save Project")
        if not path:
            return False
        if Path(path).suffix.lower() != ".ora":
            path += ".ora"
        return self.save_to(path)

    def save_to(self, path) -> bool:
        try:
            project_files.save_project(self.document, path)
        except (OraError, OSError) as exc:
            self._error("Could not save", str(exc))
            return False
        self.settings.add_recent_file(path)
        self._update_recent_menu()
        self.statusBar().showMessage(f"Saved {Path(path).name}", 4000)
        return True

    def export(self) -> bool:
        d = self.document
        base = (d.file_path or d.source_path or Path("Untitled")).stem
        path = dialogs.ask_save_path(self, str(Path(self.settings.last_dir()) / f"{base}.png"),
                                     dialogs.EXPORT_FILTER, "Export Flattened Image")
        if not path:
            return False
        if Path(path).suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp"):
            path += ".png"
        try:
            project_files.export_flattened(d, path)
        except (OraError, OSError) as exc:
            self._error("Could not export", str(exc))
            return False
        self.statusBar().showMessage(f"Exported {Path(path).name}", 4000)
        return True

    def close_document(self) -> bool:
        if not self._maybe_keep_changes():
            return False
        self.document.close()
        return True

    def _update_recent_menu(self):
        m = self.recent_menu
        m.clear()
        files = self.settings.recent_files()
        for i, f in enumerate(files):
            act = m.addAction(f"&{(i + 1) % 10} {Path(f).name}")
            act.setToolTip(f)
            act.triggered.connect(lambda _=False, f=f: self.open_path(f))
        if files:
            m.addSeparator()
            m.addAction("Clear List", lambda: (self.settings.clear_recent_files(), self._update_recent_menu()))
        m.setEnabled(bool(files))

    # ----------------------------------------------------------------- window events
    def restore_window_state(self):
        geometry, state = self.settings.window_geometry(), self.settings.window_state()
        if geometry is not None:
            self.restoreGeometry(geometry)
        if state is not None:
            self.restoreState(state)

    def closeEvent(self, event):
        if not self._maybe_keep_changes():
            event.ignore()
            return
        self.settings.save_window(self.saveGeometry(), self.saveState())
        self.settings.save_brush(self.canvas.brush_size, self.canvas.brush_hardness)
        self.edit_session.shutdown()
        event.accept()

    @staticmethod
    def _local_files(mime) -> list[Path]:
        return [Path(u.toLocalFile()) for u in mime.urls() if u.isLocalFile()] if mime.hasUrls() else []

    def dragEnterEvent(self, event):
        if any(p.suffix.lower() in IMAGE_EXTENSIONS + (".ora",) for p in self._local_files(event.mimeData())):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event):
        self.dragEnterEvent(event)

    def dropEvent(self, event):
        paths = self._local_files(event.mimeData())
        event.acceptProposedAction()
        self.handle_dropped_files(paths)

    def handle_dropped_files(self, paths):
        """A project replaces the document; pictures open (when nothing is open) or become layers."""
        projects = [p for p in paths if project_files.is_project(p)]
        if projects:
            self.open_path(projects[0])
            return
        self.add_image_layers([p for p in paths if p.suffix.lower() in IMAGE_EXTENSIONS])
