"""Python's cycle collector runs on the GUI thread only.

CPython collects reference cycles in whichever thread happens to allocate past the collector's
threshold. When that is the engine's thread (a model load or an edit allocates a great deal) and
the garbage holds Qt objects (a closed dialog or a widget caught in a reference cycle), those Qt
objects are destroyed off the GUI thread, and Qt crashes. The test suite met it once: a segfault
"Garbage-collecting" inside the runner's thread while it built a UNet.

So the application turns automatic collection off and collects from a GUI-thread timer instead,
at the interpreter's own thresholds: the same generations are collected as often as before, only
always here. The engine's threads never collect."""
from __future__ import annotations

import gc
from typing import Optional

from PySide6.QtCore import QObject, QTimer

INTERVAL_MS = 250  # how often the GUI thread looks; a collection is due far less often


def collect_if_due(thresholds: Optional[tuple[int, int, int]] = None) -> int:
    """One collection of the oldest generation whose threshold is passed, as the interpreter's own
    automatic collection would do; 0 (nothing collected) when none is due."""
    t0, t1, t2 = thresholds or gc.get_threshold()
    c0, c1, c2 = gc.get_count()
    if c0 <= t0:
        return 0
    generation = 2 if c2 > t2 else 1 if c1 > t1 else 0
    return gc.collect(generation)


class GuiThreadCollector(QObject):
    """Installed once per application (`install`): automatic collection off, a timer collecting on
    the GUI thread; `stop` gives the interpreter its automatic collection back."""

    def __init__(self, parent: Optional[QObject] = None):
        super().__init__(parent)
        self.thresholds = gc.get_threshold()
        self._was_enabled = gc.isenabled()
        gc.disable()
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.check)
        self._timer.start(INTERVAL_MS)

    def check(self) -> None:
        collect_if_due(self.thresholds)

    def stop(self) -> None:
        self._timer.stop()
        if self._was_enabled:
            gc.enable()

    @classmethod
    def install(cls, app: QObject) -> "GuiThreadCollector":
        """The application's collector, created on first call (kept as a child of `app`)."""
        found = app.findChild(cls)
        return found if found is not None else cls(app)
