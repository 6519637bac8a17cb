"""Shared helpers for the editor tests: sample pictures made on the fly and synthetic mouse input."""
from __future__ import annotations

import numpy as np
from PIL import Image
from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication


def sample_rgba(w=64, h=48, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    a[..., 3] = 255
    a[: h // 4, : w // 4, 3] = 0  # a transparent corner, so alpha must survive too
    return a


def write_png(path, rgba) -> str:
    Image.fromarray(rgba).save(path)
    return str(path)


def open_window(qtbot, monkeypatch, size=(1000, 700), engine=None):
    """The main window as the tests drive it: shown, remembering nothing, and a modified document
    never stops it closing with a prompt (pytest-qt closes it after the test). engine: what its
    runner runs (tests/fake_engine.py), kept as `w.engine`."""
    from editor_app.main_window import MainWindow
    from editor_app.settings import AppSettings
    from widgets import dialogs

    monkeypatch.setattr(dialogs, "ask_save_changes", lambda parent, name: dialogs.DISCARD)
    w = MainWindow(AppSettings.in_memory(), probe_device=False, engine=engine)
    w.engine = engine
    qtbot.addWidget(w)
    w.resize(*size)
    w.show()
    qtbot.waitExposed(w)
    return w


def mouse(view, kind: str, pos: QPointF, button=Qt.MouseButton.LeftButton, modifiers=Qt.KeyboardModifier.NoModifier):
    vp = view.viewport()
    etype = {"press": QEvent.Type.MouseButtonPress, "move": QEvent.Type.MouseMove,
             "release": QEvent.Type.MouseButtonRelease}[kind]
    held = Qt.MouseButton.NoButton if kind == "release" else button
    which = Qt.MouseButton.NoButton if kind == "move" else button
    ev = QMouseEvent(etype, QPointF(pos), vp.mapToGlobal(QPointF(pos)), which, held, modifiers)
    QApplication.sendEvent(vp, ev)


def drag_image(view, points, button=Qt.MouseButton.LeftButton):
    """Press at the first image point, move through the rest, release at the last."""
    screen = [view.map_from_image(QPointF(*p)) for p in points]
    mouse(view, "press", screen[0], button)
    for s in screen[1:]:
        mouse(view, "move", s, button)
    mouse(view, "release", screen[-1], button)


def click_image(view, x, y, modifiers=Qt.KeyboardModifier.NoModifier):
    s = view.map_from_image(QPointF(x, y))
    mouse(view, "press", s, modifiers=modifiers)
    mouse(view, "release", s, modifiers=modifiers)
