"""The only place Qt meets the runner: a QObject that subscribes to a `core.runner` Runner and
re-emits each of its events as a Qt signal.

Runner listeners are called on the runner's own thread (and, for Queued and the cancellation of
jobs that never ran, on the thread that submitted). `event` is emitted from there; a slot of a
QObject that lives on the GUI thread, connected with the default AutoConnection, then runs on the
GUI thread: queued when the event came from the runner's thread, at once when the GUI itself
caused it (so a submit's Queued is seen before submit returns). Nothing else in the editor
touches the runner's thread."""
from __future__ import annotations

from typing import Callable, Optional

from PySide6.QtCore import QObject, Signal

from core.runner import Event, Runner


class RunnerBridge(QObject):
    event = Signal(object)  # a core.runner Event

    def __init__(self, runner: Runner):
        # No Qt parent on purpose: the runner's listener list holds this object (a bound method),
        # so the C++ object can never be deleted under a thread that is emitting through it.
        super().__init__()
        self.runner = runner
        self._unsubscribe: Optional[Callable[[], None]] = runner.subscribe(self._forward)

    def _forward(self, ev: Event) -> None:  # any thread
        self.event.emit(ev)

    def detach(self) -> None:
        """Stop forwarding (the window is going away; the runner may still finish a job)."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
