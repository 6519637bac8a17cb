"""`malleable [FILE]` — the editor. `malleable --screenshot OUT.png [FILE]` renders the window
offscreen to a PNG and exits (for documentation and checks)."""
from __future__ import annotations

import argparse
import os
import sys


def parse_args(argv):
    p = argparse.ArgumentParser(prog="malleable", description="Edit pictures with Stable Diffusion.")
    p.add_argument("file", nargs="?", help="a picture or an .ora project to open")
    p.add_argument("--screenshot", metavar="OUT.png", help="render the window to a PNG offscreen and exit")
    p.add_argument("--size", default="1280x800", metavar="WxH", help="window size for --screenshot")
    args = p.parse_args(argv)
    try:
        w, h = (int(v) for v in args.size.lower().split("x"))
        if w < 200 or h < 150:
            raise ValueError
    except ValueError:
        p.error(f"--size must look like 1280x800 (at least 200x150), not {args.size!r}")
    args.size = (w, h)
    return args


def make_application():
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtWidgets import QApplication

    from widgets.theme import apply_dark_theme

    app = QApplication.instance()
    if app is None:
        # Fractional scale factors (125 %, 150 %) as they are, not rounded: sharp on every screen.
        QGuiApplication.setHighDpiScaleFactorRoundingPolicy(Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
        app = QApplication(sys.argv[:1])
    app.setApplicationName("Malleable")
    app.setOrganizationName("Malleable")
    app.setApplicationDisplayName("Malleable")
    apply_dark_theme(app)
    from .gui_gc import GuiThreadCollector

    GuiThreadCollector.install(app)  # cycles are collected on this thread only (see gui_gc)
    return app


def take_screenshot(window, out_path: str, size) -> int:
    from PySide6.QtWidgets import QApplication

    window.resize(*size)
    window.show()
    for _ in range(3):
        QApplication.processEvents()
    window.canvas.fit_to_window()
    QApplication.processEvents()
    pixmap = window.grab()
    if not pixmap.save(out_path, "PNG"):
        print(f"Could not write the screenshot to {out_path}", file=sys.stderr)
        return 1
    return 0


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.screenshot:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from .platform_check import check

    if check():  # Qt's xcb plugin would abort with no word of what is missing: say it, exit 2
        return 2
    app = make_application()

    from .main_window import MainWindow
    from .settings import AppSettings

    if args.screenshot:
        # A screenshot must look the same every time: no remembered layout, nothing saved.
        window = MainWindow(AppSettings.in_memory(), probe_device=False, interactive=False)
        window.probe_device()
        if args.file and not window.open_path(args.file):
            return 2
        code = take_screenshot(window, args.screenshot, args.size)
        window.document.undo_stack.setClean()
        window.close()
        return code

    window = MainWindow(AppSettings())
    window.restore_window_state()
    if args.file:
        # Before show(): the reading runs a local event loop (progress and Cancel), and a window
        # closed inside it would ask the application to quit before app.exec() started, which
        # then never returns.
        window.open_path(args.file)
    window.show()
    code = app.exec()
    # The window is gone; a model load it left running ends before the interpreter does (from the
    # interpreter's exit on, the loaders' thread pools refuse work and the load would fail noisily).
    window.edit_session.controller.runner.shutdown(wait=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
