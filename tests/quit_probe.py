"""A whole editor session in a process of its own, for tests/test_quit.py: `malleable PICTURE` as a
person starts it (editor_app.main.main: its settings, the model loading at start), then one edit
with tiny settings on the demo model, File ▸ Model… opened and cancelled, and the Quit action
(Ctrl+Q).

    python -m tests.quit_probe METHOD
    python -m tests.quit_probe at-once     (Ctrl+Q at once, while the model still loads)

It prints how the edit ended, the timers still running once the window closed ("timers: N") and
the threads left when main() returned ("threads: NAMES"), and exits with main()'s exit code. The
test reads stderr for Qt's warnings about objects deleted twice: they came just before the
crashes this guards against."""
from __future__ import annotations

import sys
import threading

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from editor_app import main as editor_main
from editor_app.main_window import MainWindow
from resources import resource_path
from tools.bench import params_for

SIZE = 256  # the sample picture's size: the drag's points are placed for it


def drive(win, method_name: str) -> None:
    """Run the session on `win` from its event loop."""
    from core.registry import get_method

    app = QApplication.instance()
    app.aboutToQuit.connect(lambda: print(f"timers: {sum(t.isActive() for t in win.findChildren(QTimer))}",
                                          flush=True))
    if method_name == "at-once":
        print("edit: done", flush=True)  # none: the line the test expects
        QTimer.singleShot(0, win.actions_by_key["quit"].trigger)
        return

    method = get_method(method_name)
    values = params_for(method, SIZE, tiny=True)
    points = values.pop("points", [])
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
        win.document.undo_stack.setClean()  # nothing to save: Quit asks nothing
        QTimer.singleShot(10, close_model_dialog)
        win.actions_by_key["model"].trigger()  # modal: returns once the dialog was cancelled
        win.actions_by_key["quit"].trigger()

    def start() -> None:  # from the event loop: main() has opened the picture by then
        for hx, hy, tx, ty in points:
            win.document.add_point_pair(hx, hy, tx, ty)
        if win.edit_session.run(method_name, values) is None:
            outcome.append("refused")
        QTimer.singleShot(20, after_edit)

    QTimer.singleShot(0, start)


def main(method_name: str) -> int:
    import torch

    from widgets import dialogs

    torch.set_num_threads(1)  # as in the test process: the machine's cores are shared
    # An error would wait for a person at a modal dialog: say it on stderr, and the edit has failed.
    dialogs.show_error = lambda parent, title, message: print(f"{title}: {message}", file=sys.stderr, flush=True)
    show = MainWindow.show

    def show_and_drive(win):
        show(win)
        if not getattr(win, "_probe_driven", False):
            win._probe_driven = True
            drive(win, method_name)

    MainWindow.show = show_and_drive
    code = editor_main.main([str(resource_path("samples", "shapes.png"))])
    print("threads:", " ".join(sorted(t.name for t in threading.enumerate() if t is not threading.main_thread())),
          flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
