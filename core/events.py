"""Progress events and cancellation. The engine reports through a plain callable, never into Qt."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from .errors import Cancelled


@dataclass(frozen=True)
class Progress:
    """One step of one stage. `preview` is a small HxWx3 uint8 image of the predicted result."""

    stage: str
    step: int
    total: int
    preview: Optional[np.ndarray] = None
    message: str = ""


EventSink = Callable[[Progress], None]


def null_sink(_: Progress) -> None:
    pass


class CancelToken:
    """Set from any thread; the engine checks it every step and raises Cancelled."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise Cancelled("Cancelled: the image was left as it was.")


@dataclass
class StageTimer:
    """Seconds spent per stage, in the order stages ran (for the CLI's JSON and benchmarks)."""

    seconds: dict = field(default_factory=dict)
    _current: Optional[str] = None
    _started: float = 0.0

    def enter(self, stage: str) -> None:
        now = time.perf_counter()
        if self._current is not None:
            self.seconds[self._current] = self.seconds.get(self._current, 0.0) + now - self._started
        self._current, self._started = stage, now

    def close(self) -> dict:
        self.enter(None)  # type: ignore[arg-type]
        self._current = None
        return dict(self.seconds)


class Reporter:
    """What a method talks to: emits Progress, checks cancel, times stages."""

    def __init__(self, sink: EventSink | None = None, cancel: CancelToken | None = None):
        self.sink = sink or null_sink
        self.cancel = cancel or CancelToken()
        self.timer = StageTimer()
        self._stage = ""
        # Set by the engine: crops the working canvas's padding off previews, so a preview
        # scaled to the image's size lines up with the image.
        self.preview_transform: Callable[[np.ndarray], np.ndarray] | None = None

    def stage(self, name: str, total: int) -> None:
        self.cancel.check()
        self._stage = name
        self.timer.enter(name)
        self.sink(Progress(name, 0, total))

    def step(self, step: int, total: int, preview: np.ndarray | None = None, message: str = "") -> None:
        if preview is not None and self.preview_transform is not None:
            preview = self.preview_transform(preview)
        self.sink(Progress(self._stage, step, total, preview, message))
        self.cancel.check()
