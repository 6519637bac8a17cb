"""The window's side of autosave and recovery (the work itself is editor_app/autosave.py, Qt-free).

A QTimer (the interval from settings, default 5 minutes) snapshots a modified document on the GUI
thread — layer arrays are replaced, never changed in place, so the snapshot is a list of
references plus a copy of the edit mask — and the session writes it on its own thread. Saving the
document, or replacing it on purpose, drops its autosave; a clean exit removes the session. On
start, documents left by a session that did not exit cleanly are offered: open, discard or later."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from PySide6.QtCore import QObject, QTimer, Signal

from widgets import dialogs

from . import autosave, project_files
from .ora import OraError, ReadCancelled


class AutosaveHook(QObject):
    status = Signal(str)

    def __init__(self, window, settings, may_replace: Callable[[], bool], show_error: Callable[[str, str], None]):
        super().__init__(window)
        self.window = window
        self.doc = window.document
        self.may_replace = may_replace
        self.show_error = show_error
        self.session: Optional[autosave.AutosaveSession] = None
        try:
            self.session = autosave.AutosaveSession(settings.recovery_folder())
        except OSError as exc:  # a read-only home, a full disk: the editor still works, without autosave
            self.status.emit(f"Autosave is off: {exc}")
        self.key = autosave.AutosaveSession.new_key()
        self._dirty = False
        self.timer = QTimer(self)
        self.timer.timeout.connect(self.autosave_now)
        minutes = settings.autosave_minutes()
        if minutes > 0 and self.session is not None:
            self.timer.start(max(1000, int(minutes * 60_000)))
        stack = self.doc.undo_stack
        stack.indexChanged.connect(self._on_change)
        stack.cleanChanged.connect(self._on_clean_changed)
        self.doc.reset.connect(self._on_reset)

    # ---- following the document ------------------------------------------------------------------
    def _on_change(self, _index: int) -> None:
        self._dirty = True

    def _on_clean_changed(self, clean: bool) -> None:
        if clean:  # saved (or undone back to the saved state): nothing to recover
            self._drop()

    def _on_reset(self) -> None:
        """Another document replaced this one on purpose (opened, closed): its autosave goes."""
        self._drop()

    def _drop(self) -> None:
        if self.session is not None:
            self.session.forget(self.key)
        self.key = autosave.AutosaveSession.new_key()
        self._dirty = False

    def autosave_now(self):
        """Start writing a modified document's autosave; the Future, or None when there was nothing
        to do (unmodified, unchanged since the last autosave, or one still being written)."""
        d = self.doc
        if self.session is None or d.is_empty or not d.is_modified or not self._dirty:
            return None
        snapshot = project_files.document_to_project(d)
        fut = self.session.save(self.key, snapshot, d.display_name, d.file_path, d.source_path)
        if fut is not None:
            self._dirty = False
            fut.add_done_callback(lambda f: self._report(f))
        return fut

    def _report(self, fut) -> None:
        if fut.result() is False and self.session is not None and self.session.last_error:
            self.status.emit(f"Autosave failed: {self.session.last_error}")  # queued to the GUI thread

    # ---- recovery ------------------------------------------------------------------------------
    def offer_recovery(self) -> int:
        """Ask about each document a crashed session left; returns how many were opened."""
        if self.session is None:
            return 0
        opened = 0
        for item in autosave.find_recoverable(self.session.root, exclude=self.session.folder):
            answer = dialogs.ask_recover(self.window, item.describe())
            if answer == dialogs.OPEN:
                opened += self.open_recovered(item)
            elif answer == dialogs.DISCARD:
                autosave.discard(item)
        return opened

    def open_recovered(self, item: autosave.Recovered) -> bool:
        if not self.may_replace():
            return False
        from .file_loader import read_document_file

        try:
            opened = read_document_file(self.window, item.project, show_dialog=self.window.interactive)
        except (OraError, ReadCancelled) as exc:
            if not isinstance(exc, ReadCancelled):
                self.show_error("Could not recover", f"{item.title}: {exc}")
            return False
        file_path = item.file_path if item.file_path and project_files.is_project(item.file_path) else None
        project_files.load_into(self.doc, opened, belongs_to=(file_path, item.source_path or file_path))
        # The document belongs to this session now, still protected, and is not saved.
        self.key = self.session.adopt(item)
        self.doc.undo_stack.resetClean()
        self.status.emit(f"Recovered {item.title}: save it to keep it.")
        return True

    # ---- ending --------------------------------------------------------------------------------
    def close_clean(self) -> None:
        self.timer.stop()
        if self.session is not None:
            self.session.close()
            self.session = None

    @property
    def folder(self) -> Optional[Path]:
        return self.session.folder if self.session else None
