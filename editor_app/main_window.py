"""The main window: the canvas in the middle, the docks, menus, tool bars and status bar around it.

It only puts the parts together: actions and menus (window_actions), docks (docks), file handling
(document_io), the status bar (status_bar) and edits (edit_session). It owns no picture state."""
from __future__ import annotations

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QMainWindow, QWidget

from widgets import dialogs
from widgets.canvas import CanvasView
from widgets.edit_panel import EditPanel

from . import window_actions
from .autosave_hook import AutosaveHook
from .docks import make_docks
from .document import Document
from .document_io import DocumentFiles
from .edit_session import EditSession
from .settings import AppSettings
from .status_bar import WindowStatus


class MainWindow(QMainWindow):
    def __init__(self, settings: AppSettings | None = None, probe_device: bool = True, interactive: bool = True,
                 engine=None, load_model: bool | None = None, runner=None):
        super().__init__()
        self.settings = settings or AppSettings()
        # interactive=False (screenshots, scripts): problems go to stderr instead of modal dialogs.
        self.interactive = interactive
        self.document = Document(self)
        self.setObjectName("MainWindow")
        self.setAcceptDrops(True)
        self.setDockNestingEnabled(True)
        self._close_confirmed = False

        self.canvas = CanvasView(self.document, self)
        self.setCentralWidget(self.canvas)
        size, hardness = self.settings.brush()
        self.canvas.set_brush(size, hardness)

        self.status = WindowStatus(self.statusBar())
        self.files = DocumentFiles(self)
        window_actions.make_actions(self)
        panel = EditPanel()
        panel.setObjectName("EditPanel")
        make_docks(self, panel)
        window_actions.make_menus(self)
        window_actions.make_tool_bars(self)
        self.files.update_recent_menu()
        self._make_edit_session(panel, engine, runner)
        self.autosave = None
        if interactive:  # autosave and recovery (autosave_hook); screenshots and scripts keep nothing
            self.autosave = AutosaveHook(self, self.settings, self.files.maybe_keep_changes, self.files.error)
            self.autosave.status.connect(lambda text: self.status.message(text, 6000))
            QTimer.singleShot(0, self.autosave.offer_recovery)

        d, c, s = self.document, self.canvas, self.status
        d.file_changed.connect(self._update_title)
        for signal in (d.reset, d.layers_changed, d.points_changed, c.point_selection_changed):
            signal.connect(self._update_actions)
        d.active_layer_changed.connect(lambda _id: self._update_actions())
        d.layer_changed.connect(lambda _id: self._update_actions())
        d.reset.connect(lambda: s.show_size(d))
        c.zoom_changed.connect(s.show_zoom)
        c.cursor_moved.connect(s.show_cursor)
        self._update_title()
        self._update_actions()
        s.show_size(d)
        self.resize(1280, 800)
        if probe_device:
            QTimer.singleShot(0, self.probe_device)
        if probe_device if load_model is None else load_model:
            # Load the model in the background now, so the first Run starts at once.
            QTimer.singleShot(0, lambda: self.edit_session.controller.load_model(self.settings_model_spec()))

    # ---- the parts, for callers and tests --------------------------------------------------------
    zoom_label = property(lambda self: self.status.zoom_label)
    cursor_label = property(lambda self: self.status.cursor_label)
    size_label = property(lambda self: self.status.size_label)
    device_label = property(lambda self: self.status.device_label)
    download_bar = property(lambda self: self.status.download_bar)
    download_cancel = property(lambda self: self.status.download_cancel)

    def _make_edit_session(self, panel, engine, runner) -> None:
        self.edit_session = session = EditSession(self.document, self.canvas, panel, self.files.error, engine, self,
                                                  runner=runner)
        session.status.connect(lambda text: self.status.message(text, 6000))
        session.orphan_result.connect(self.files.open_orphan_result)
        ctl = session.controller
        ctl.model_loaded.connect(self.status.model_loaded)
        # Remembered once it loaded: a choice that fails is never what the next start tries first.
        ctl.model_loaded.connect(lambda _description: self.settings.save_model_spec(ctl.model_spec))
        panel.visible_check.setChecked(self.settings.edit_visible())
        panel.visible_picture_toggled.connect(self.settings.save_edit_visible)
        panel.notice_action.connect(self.ask_model)  # "the demo only knows simple shapes": choose a model
        ctl.model_loaded.connect(lambda _description: panel.set_few_step_model(ctl.loaded.few_step))
        ctl.model_failed.connect(self._on_model_failed)
        ctl.download_progress.connect(self.status.download_progress)
        ctl.device_status.connect(self.status.device_status)
        self.status.download_cancel.clicked.connect(ctl.cancel_model_load)

    def set_edit_panel(self, widget: QWidget) -> None:
        """Put another panel into the Edit dock."""
        old = self.edit_panel
        self.edit_panel = widget
        self.edit_dock.setWidget(widget)
        old.deleteLater()

    def run_diagnostic(self, method_name: str):
        """An engine check (Tools ▸ Diagnostics) on the edit target, with the method's defaults."""
        return self.edit_session.run(method_name, {})

    # ---- models ----------------------------------------------------------------------------------
    def settings_model_spec(self):
        """The model the last session loaded (the demo on a first start)."""
        return self.settings.model_spec()

    def ask_model(self) -> None:
        from widgets.model_dialog import ModelDialog

        ctl = self.edit_session.controller
        dlg = ModelDialog(ctl.model_spec, self, loaded=ctl.loaded.description if ctl.loaded else "")
        # Deleted after use (later, so it can still be read here): left to the window, it crashed at quit.
        if dialogs.exec_once(dlg):
            spec = dlg.spec()
            self.status.model_loading(spec.source)
            self.edit_session.controller.load_model(spec)

    def show_model_help(self) -> None:
        from .first_run import FIRST_RUN_MODEL_HELP as text

        if self.interactive:
            dialogs.show_info(self, "Getting Stable Diffusion", text)

    def _on_model_failed(self, kind: str, message: str) -> None:
        self.status.model_failed()
        if kind != "cancelled":
            self.files.error("Model unavailable", message)

    def probe_device(self) -> None:
        self.status.probe_device()

    # ---- files (document_io) ---------------------------------------------------------------------
    def open_path(self, path) -> bool:
        return self.files.open_path(path)

    def add_image_layers(self, paths) -> int:
        return self.files.add_image_layers(paths)

    def save(self) -> bool:
        return self.files.save()

    def save_as(self) -> bool:
        return self.files.save_as()

    def save_to(self, path) -> bool:
        return self.files.save_to(path)

    def export(self) -> bool:
        return self.files.export()

    def close_document(self) -> bool:
        return self.files.close_document()

    def handle_dropped_files(self, paths) -> None:
        self.files.handle_dropped_files(paths)

    # ---- view state ------------------------------------------------------------------------------
    def _update_title(self) -> None:
        d = self.document
        self.setWindowTitle("Malleable" if d.is_empty else f"{d.display_name}[*] — Malleable")
        self.setWindowModified(d.is_modified)

    def _update_actions(self) -> None:
        window_actions.update_actions(self)

    # ---- window events ---------------------------------------------------------------------------
    def restore_window_state(self) -> None:
        geometry, state = self.settings.window_geometry(), self.settings.window_state()
        if geometry is not None:
            self.restoreGeometry(geometry)
        if state is not None:
            self.restoreState(state)

    def closeEvent(self, event) -> None:
        if not self._close_confirmed:
            if not self.files.maybe_keep_changes():
                event.ignore()
                return
            self._close_confirmed = True
            self.settings.save_window(self.saveGeometry(), self.saveState())
            self.settings.save_brush(self.canvas.brush_size, self.canvas.brush_hardness)
        if not self.edit_session.finish(then=self.close):
            # Work in flight: cancelled; the window closes when the runner has stopped (polled, so
            # the GUI keeps drawing meanwhile). Nothing more can be started.
            self.status.finishing()
            for w in (self.centralWidget(), self.layers_dock, self.edit_dock, self.history_dock, self.menuBar()):
                w.setEnabled(False)
            event.ignore()
            return
        if self.autosave is not None:
            self.autosave.close_clean()  # a clean exit: nothing to recover next time
        self.status.window_closing()
        event.accept()

    def dragEnterEvent(self, event) -> None:
        if self.files.accepts(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:
        self.dragEnterEvent(event)

    def dropEvent(self, event) -> None:
        paths = self.files.local_files(event.mimeData())
        event.acceptProposedAction()
        self.files.handle_dropped_files(paths)
