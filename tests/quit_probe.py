"""A whole editor session in a process of its own, for tests/test_quit.py: open the sample picture,
run one edit with tiny settings on the demo model, open File ▸ Model… and cancel it, then quit
with the Quit action (Ctrl+Q), as a person would.

    python -m tests.quit_probe METHOD

It prints what is still running once the window has closed ("timers: N", "threads: NAMES") and
exits with the application's exit code. The test reads stderr for Qt's warnings about objects
deleted twice: they come just before the crashes this guards against."""
from __future__ import annotations

import sys
import threading

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from editor_app.main_window import MainWindow
from editor_app.settings import AppSettings
from resources import resource_path
from tools.bench import params_for

SIZE = 256  # the sample picture's size: the drag's points are placed for it


def main(method_name: str) -> int:
    from core.registry import get_method

    app = QApplication(sys.argv[:1])
    win = MainWindow(AppSettings.in_memory(), probe_device=False, load_model=False, interactive=False)
    win.show()
    if not win.open_path(str(resource_path("samples", "shapes.png"))):
        return 3
    method = get_method(method_name)
    values = params_for(method, SIZE, tiny=True)
    if method.uses_points:
        for hx, hy, tx, ty in values.pop("points"):
            win.document.add_point_pair(hx, hy, tx, ty)
    ctl = win.edit_session.controller
    outcome = []
    ctl.result_ready.connect(lambda job, result: outcome.append("done"))
    ctl.failed.connect(lambda job, kind, message: outcome.append(f"{kind}: {message}"))

    def close_model_dialog() -> None:
        for w in app.topLevelWidgets():
            if type(w).__name__ == "ModelDialog" and w.isVisible():
                w.reject()
                return
        QTimer.singleShot(10, close_model_dialog)

    def after_edit() -> None:
        if not outcome:
            QTimer.singleShot(20, after_edit)
            return
        print("edit:", outcome[0], flush=True)
        QTimer.singleShot(10, close_model_dialog)
        win.actions_by_key["model"].trigger()  # modal: returns once the dialog was cancelled
        win.actions_by_key["quit"].trigger()

    def start() -> None:
        if win.edit_session.run(method_name, values) is None:
            outcome.append("refused")
        QTimer.singleShot(20, after_edit)

    QTimer.singleShot(0, start)
    code = app.exec()
    active = [t for t in win.findChildren(QTimer) if t.isActive()]
    runner = ctl.runner
    if runner._thread is not None:
        runner._thread.join(30)
    print(f"timers: {len(active)}", flush=True)
    print("threads:", " ".join(sorted(t.name for t in threading.enumerate() if t is not threading.main_thread())),
          flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
