"""Between the window and files: open, add as layers, save, save as, export, close, recent files,
drag-and-drop, and an edit result whose picture is no longer open. File problems become dialogs
(or stderr lines when the window is not interactive); the document is never left half-changed."""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from core.errors import InvalidInput
from core.formats import IMAGE_EXTENSIONS, PROJECT_EXTENSION
from widgets import dialogs, export_dialog
from widgets.export_dialog import ExportOptions, export_formats

from . import project_files
from .export import ExportError, export_document
from .file_loader import read_document_file
from .ora import OraError, ReadCancelled

FILE_ERRORS = (OraError, InvalidInput)
ORPHAN_TEXT = "The edit finished for a picture that is no longer open."


class DocumentFiles:
    def __init__(self, window):
        self.win = window
        self.doc = window.document
        self.settings = window.settings
        self._last_export: tuple[str, ExportOptions] | None = None  # (document identity, options)
        self._export_settings = ExportOptions()  # the last ones used, for the next picture's dialog

    # ---- messages --------------------------------------------------------------------------------
    def error(self, title: str, message: str) -> None:
        if self.win.interactive:
            dialogs.show_error(self.win, title, message)
        else:
            print(f"{title}: {message}", file=sys.stderr)

    def _status(self, text: str) -> None:
        self.win.status.message(text, 4000)

    def maybe_keep_changes(self) -> bool:
        """True when it is fine to replace the document (saved, discarded or nothing to lose)."""
        if not self.doc.is_modified or not self.win.interactive:
            return True
        answer = dialogs.ask_save_changes(self.win, self.doc.display_name)
        if answer == dialogs.SAVE:
            return self.save()
        return answer == dialogs.DISCARD

    # ---- opening ---------------------------------------------------------------------------------
    def open_path(self, path) -> bool:
        path = Path(path)
        if not self.maybe_keep_changes():
            return False
        try:
            # Read off the GUI thread (a progress dialog with Cancel for a large project), then load.
            opened = read_document_file(self.win, path, show_dialog=self.win.interactive)
            project_files.load_into(self.doc, opened)
        except ReadCancelled:
            self._status(f"Opening {path.name} was cancelled")
            return False
        except FILE_ERRORS as exc:
            self.error("Could not open", str(exc))
            return False
        except Exception as exc:  # a file we did not foresee must not take the editor down
            self.error("Could not open", f"“{path.name}” could not be opened: {exc}")
            return False
        self.settings.add_recent_file(path)
        self.update_recent_menu()
        self._status(f"Opened {path.name}")
        return True

    def add_image_layers(self, paths) -> int:
        if self.doc.is_empty:
            paths = list(paths)
            if not paths or not self.open_path(paths[0]):
                return 0
            return 1 + self.add_image_layers(paths[1:])
        added = 0
        for path in map(Path, paths):
            try:
                rgba = project_files.read_picture(path)
            except InvalidInput as exc:
                self.error("Could not add layer", str(exc))
                continue
            self.doc.add_layer(rgba, path.stem)
            added += 1
        return added

    def ask_open(self) -> None:
        path = dialogs.ask_open_path(self.win, self.settings.last_dir())
        if path:
            self.open_path(path)

    def ask_add_layers(self) -> None:
        paths = dialogs.ask_open_paths(self.win, self.settings.last_dir())
        if paths:
            self.add_image_layers(paths)

    def open_orphan_result(self, result, name: str) -> None:
        """An edit finished after its picture was closed or replaced: never into this document;
        say so, and open it as a new picture if the user wants it."""
        if not self.win.interactive:
            print(f"{ORPHAN_TEXT} “{name}” was not added.", file=sys.stderr)
            return
        if not dialogs.ask_open_result(self.win, ORPHAN_TEXT, name):
            self._status(f"{name} was discarded.")
            return
        if not self.maybe_keep_changes():
            return
        try:
            self.doc.load_image(np.asarray(result.image.convert("RGBA")).copy(), name)
        except Exception as exc:  # called from a slot: a message, never an exception out of it
            self.error("Could not open the result", f"“{name}” could not be opened: {exc}")
            return
        self._status(f"Opened {name} as a new picture")

    # ---- saving ----------------------------------------------------------------------------------
    def save(self) -> bool:
        if self.doc.file_path is None:
            return self.save_as()
        return self.save_to(self.doc.file_path)

    def save_as(self) -> bool:
        d = self.doc
        base = (d.file_path or d.source_path or Path(self.settings.last_dir()) / "Untitled")
        suggested = str(Path(self.settings.last_dir()) / (base.stem + PROJECT_EXTENSION))
        path = dialogs.ask_save_path(self.win, suggested, dialogs.PROJECT_FILTER, "Save Project")
        if not path:
            return False
        if Path(path).suffix.lower() != PROJECT_EXTENSION:
            path += PROJECT_EXTENSION
        return self.save_to(path)

    def save_to(self, path) -> bool:
        try:
            project_files.save_project(self.doc, path)
        except (OraError, OSError) as exc:
            self.error("Could not save", str(exc))
            return False
        self.settings.add_recent_file(path)
        self.update_recent_menu()
        self._status(f"Saved {Path(path).name}")
        return True

    def export(self) -> bool:
        """File ▸ Export…: the dialog (the last settings for this picture, else the last ones used
        with a file named after it), then the file."""
        d = self.doc
        options = export_dialog.ask_export_options(self.win, self._export_defaults(),
                                                   [(l.id, l.name) for l in reversed(d.layers)],
                                                   bool(d.edit_mask_view().any()))
        return options is not None and self.export_with(options)

    def export_again(self) -> bool:
        """The last export of this picture again, same file and settings; the dialog if there was none."""
        last = self._last_export
        if last is None or last[0] != self.doc.identity:
            return self.export()
        return self.export_with(last[1])

    def export_with(self, options: ExportOptions) -> bool:
        try:
            path = export_document(self.doc, options)
        except ExportError as exc:
            self.error("Could not export", str(exc))
            return False
        self._last_export = (self.doc.identity, options)
        self._export_settings = options
        self._status(f"Exported {path.name}  (Export Again: Ctrl+Shift+E)")
        return True

    def _export_defaults(self) -> ExportOptions:
        d = self.doc
        if self._last_export is not None and self._last_export[0] == d.identity:
            return self._last_export[1]
        base = (d.file_path or d.source_path or Path("Untitled")).stem
        ext = export_formats()[self._export_settings.format][0]
        path = Path(self.settings.last_dir()) / f"{base}{ext}"
        if d.source_path is not None and path.resolve() == Path(d.source_path).resolve():
            path = path.with_name(f"{base}-edited{ext}")  # never suggest writing over the picture opened
        return replace(self._export_settings, path=str(path), layer_id=None, selection_only=False)

    def close_document(self) -> bool:
        if not self.maybe_keep_changes():
            return False
        self.doc.close()
        return True

    # ---- recent files ------------------------------------------------------------------------------
    def update_recent_menu(self) -> None:
        m = self.win.recent_menu
        m.clear()
        files = self.settings.recent_files()
        for i, f in enumerate(files):
            act = m.addAction(f"&{(i + 1) % 10} {Path(f).name}")
            act.setToolTip(f)
            act.triggered.connect(lambda _=False, f=f: self.open_path(f))
        if files:
            m.addSeparator()
            m.addAction("Clear List", lambda: (self.settings.clear_recent_files(), self.update_recent_menu()))
        m.setEnabled(bool(files))

    # ---- drag and drop -----------------------------------------------------------------------------
    @staticmethod
    def local_files(mime) -> list[Path]:
        return [Path(u.toLocalFile()) for u in mime.urls() if u.isLocalFile()] if mime.hasUrls() else []

    def accepts(self, mime) -> bool:
        return any(p.suffix.lower() in IMAGE_EXTENSIONS + (PROJECT_EXTENSION,) for p in self.local_files(mime))

    def handle_dropped_files(self, paths) -> None:
        """A project replaces the document; pictures open (when nothing is open) or become layers."""
        projects = [p for p in paths if project_files.is_project(p)]
        if projects:
            self.open_path(projects[0])
            return
        self.add_image_layers([p for p in paths if p.suffix.lower() in IMAGE_EXTENSIONS])
