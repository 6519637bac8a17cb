"""Reading a file off the GUI thread, with a progress dialog and Cancel.

The reading itself is Qt-free (project_files.read_file → ora.read_ora, which reports progress per
layer and asks cancel() between layers); here it runs on a worker thread while a local event loop
keeps the window painting. The dialog appears only when reading takes longer than DELAY_MS, and
is window-modal, so nothing else can change the document meanwhile."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable, TypeVar

from PySide6.QtCore import QEventLoop, QObject, Qt, Signal
from PySide6.QtWidgets import QProgressDialog, QWidget

T = TypeVar("T")
DELAY_MS = 400


class _Relay(QObject):
    """Carries the worker's news to the GUI thread (queued signals)."""

    progress = Signal(int, int, str)
    done = Signal()


def run_with_progress(parent: QWidget | None, label: str, read: Callable[[Callable, Callable], T],
                      show_dialog: bool = True) -> T:
    """read(progress, cancel) on a worker thread; its result, or its exception re-raised here (the
    reader's ReadCancelled when the user pressed Cancel)."""
    relay = _Relay()
    cancelled = threading.Event()
    outcome: dict = {}

    def work() -> None:
        try:
            outcome["value"] = read(lambda done, total, what: relay.progress.emit(done, total, what),
                                    cancelled.is_set)
        except BaseException as exc:  # handed to the GUI thread, raised there
            outcome["error"] = exc
        finally:
            relay.done.emit()

    dialog = None
    if show_dialog:
        dialog = QProgressDialog(label, "Cancel", 0, 0, parent)
        dialog.setWindowTitle("Opening")
        dialog.setWindowModality(Qt.WindowModality.WindowModal)
        dialog.setMinimumDuration(DELAY_MS)
        dialog.setAutoClose(False)
        dialog.setAutoReset(False)
        dialog.canceled.connect(cancelled.set)

        def on_progress(done: int, total: int, what: str) -> None:
            if dialog.wasCanceled():  # cancel() itself does not emit canceled
                cancelled.set()
                return
            dialog.setMaximum(max(total, 1))
            dialog.setValue(min(done, max(total, 1)))
            if what:
                dialog.setLabelText(f"{label}\n{what}")
        relay.progress.connect(on_progress)

    loop = QEventLoop()
    relay.done.connect(loop.quit)
    worker = threading.Thread(target=work, name="malleable-open", daemon=True)
    worker.start()
    loop.exec()
    worker.join()
    if dialog is not None:
        dialog.close()
        dialog.deleteLater()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def read_document_file(parent: QWidget | None, path, show_dialog: bool = True):
    """project_files.read_file(path) off the GUI thread, with progress and Cancel."""
    from . import project_files

    path = Path(path)
    return run_with_progress(parent, f"Opening “{path.name}”…",
                             lambda progress, cancel: project_files.read_file(path, progress, cancel),
                             show_dialog)
