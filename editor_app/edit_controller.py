"""The GUI's view of the job runner: what is running, what waits, model loads, and cancel.

The work itself happens in `core.runner.LocalRunner` (one plain thread that owns the engine and so
the GPU); this QObject turns the runner's events, brought to the GUI thread by `RunnerBridge`, into
the signals the window and the Edit panel use. Requests are built whole by the caller (model spec
and origin included) and never changed here. A newer request for the same method replaces one
still waiting; cancel stops the running edit at its next step and drops the waiting ones."""
from __future__ import annotations

import logging
from typing import Optional

from PySide6.QtCore import QObject, Signal, Slot

from core import EditRequest, ModelSpec
from core.runner import (DeviceStatus, DownloadProgress, Event, Failed, Finished, Job, JobCancelled, LocalRunner,
                         ModelLoaded, ProgressEvent, Queued, Runner, Started, Supersede)

from .runner_bridge import RunnerBridge

log = logging.getLogger(__name__)


class EditController(QObject):
    started = Signal(object)               # core.runner.Job: the edit began on the runner
    progress = Signal(object, object)      # Job, core.events.Progress
    result_ready = Signal(object, object)  # Job, core.EditResult
    failed = Signal(object, str, str)      # Job, error kind, one-line message ("cancelled" when cancelled)
    busy_changed = Signal(bool)            # edits submitted and not ended: some / none
    queue_changed = Signal(int)            # edits waiting behind the current one
    model_loaded = Signal(str)             # description, e.g. "demo on cpu (fp32)"
    model_failed = Signal(str, str)        # error kind, message
    model_spec_changed = Signal(object)    # the ModelSpec new requests are built with
    download_progress = Signal(int, int)   # bytes done, bytes total
    device_status = Signal(object)         # core.runner.DeviceStatus, after every job

    def __init__(self, engine=None, parent=None, runner: Optional[Runner] = None):
        super().__init__(parent)
        self.runner = runner if runner is not None else LocalRunner(engine)
        self.model_spec = ModelSpec()      # what new requests are built with
        self._loaded_spec = self.model_spec
        self.loaded: Optional[ModelLoaded] = None  # the last model the runner loaded (description, few_step)
        self._edits: list[Job] = []        # submitted and not ended, in submission order
        self._started: set[int] = set()
        self._load: Optional[Job] = None   # the newest model load not ended
        self._bridge = RunnerBridge(self.runner)
        self._bridge.event.connect(self._on_event)

    # ---- state the GUI shows ------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """An edit is running or waiting."""
        return bool(self._edits)

    @property
    def running(self) -> Optional[Job]:
        """The edit that runs now or runs next (the runner may still be finishing a model load)."""
        return self._edits[0] if self._edits else None

    @property
    def queue(self) -> list[Job]:
        """Edits waiting behind the running one."""
        return self._edits[1:]

    @property
    def loading(self) -> bool:
        return self._load is not None

    @property
    def working(self) -> bool:
        """Anything at all on the runner (an edit, a load, or the tail of a cancelled job)."""
        return self.runner.busy

    # ---- edits ---------------------------------------------------------------------------------
    def submit(self, request: EditRequest, supersede: bool = True) -> Job:
        # A newer request for the same method replaces one waiting behind the current edit. The
        # current one is never replaced, even before the runner took it up (behind a model load):
        # what the user ran first runs, then the newest settings. Variations (supersede=False, a
        # "variation" origin) are a batch the user asked for as a whole: they are never replaced.
        for waiting in self.queue if supersede else ():
            if waiting.request.method == request.method and "variation" not in waiting.request.origin:
                self.runner.cancel(waiting)
        job = self.runner.submit(request, key=f"edit:{request.method}", supersede=Supersede.NONE)
        self._track(job)  # Queued already did this (it is emitted on this thread); kept for any runner
        return job

    def submit_live(self, request: EditRequest, key: str) -> Job:
        """Live editing: the newest request with `key` wins at once. Waiting ones with that key are
        dropped and the running one stops at its next step (Supersede.RUNNING): a dragged point
        never queues up work behind it."""
        job = self.runner.submit(request, key=key, supersede=Supersede.RUNNING)
        self._track(job)
        return job

    def cancel(self) -> None:
        """Stop the running edit at its next step and drop the waiting ones; model loads go on."""
        for job in reversed(self._edits):  # the waiting ones first, so each leaves quietly
            self.runner.cancel(job)

    # ---- models --------------------------------------------------------------------------------
    def load_model(self, spec: ModelSpec) -> Job:
        """Load (or keep) a model on the runner; requests built from now on name it."""
        self.model_spec = spec
        self._load = self.runner.load_model(spec)
        self.model_spec_changed.emit(spec)
        return self._load

    def cancel_model_load(self) -> None:
        if self._load is not None:
            self.runner.cancel(self._load)

    # ---- closing -------------------------------------------------------------------------------
    def cancel_everything(self) -> None:
        self.runner.cancel()

    def can_stop_now(self) -> bool:
        """Nothing is left that would stop soon if waited for: the runner is idle, or only a model
        load runs (it cannot be interrupted; it finishes on its own with the window gone)."""
        running = self.runner.running
        return running is None or running.kind == "load"

    def shutdown(self) -> None:
        """Stop listening and let the runner's thread end once its current job ends (it is not a
        daemon: the process waits for a model load to finish rather than killing it half-way)."""
        self.runner.cancel()
        self._bridge.detach()
        self.runner.shutdown(wait=False)

    # ---- runner events (GUI thread) --------------------------------------------------------------
    @Slot(object)
    def _on_event(self, ev: Event) -> None:
        try:
            if isinstance(ev, DeviceStatus):
                self.device_status.emit(ev)
            elif ev.job.kind == "load":
                self._on_load_event(ev)
            else:
                self._on_edit_event(ev)
        except Exception:  # a bug in a handler must never escape a Qt slot
            log.exception("handling %s failed", type(ev).__name__)

    def _track(self, job: Job) -> None:
        if job in self._edits or job.cancelled:
            return
        self._edits.append(job)
        if len(self._edits) == 1:
            self.busy_changed.emit(True)
        else:
            self.queue_changed.emit(len(self.queue))

    def _end(self, job: Job) -> None:
        self._edits.remove(job)
        self._started.discard(job.id)
        self.queue_changed.emit(len(self.queue))
        if not self._edits:
            self.busy_changed.emit(False)

    def _on_edit_event(self, ev: Event) -> None:
        job = ev.job
        if isinstance(ev, Queued):
            self._track(job)
            return
        if job not in self._edits:
            return  # already ended here (cancelled, superseded)
        if isinstance(ev, Started):
            self._started.add(job.id)
            self.started.emit(job)
        elif isinstance(ev, ProgressEvent):
            if not job.cancelled:
                self.progress.emit(job, ev.progress)
        elif isinstance(ev, Finished):
            self._end(job)
            self.result_ready.emit(job, ev.result)
        elif isinstance(ev, Failed):
            self._end(job)
            self.failed.emit(job, ev.kind, ev.message)
        elif isinstance(ev, JobCancelled):
            # Only the edit the user sees running reports "cancelled"; superseded and waiting
            # ones leave quietly, as they always did.
            shown = not ev.superseded and (job.id in self._started or job is self._edits[0])
            self._end(job)
            if shown:
                self.failed.emit(job, "cancelled", ev.message)

    def _on_load_event(self, ev: Event) -> None:
        job = ev.job
        if isinstance(ev, DownloadProgress):
            self.download_progress.emit(ev.done, ev.total)
            return
        if not isinstance(ev, (ModelLoaded, Failed, JobCancelled)):
            return
        latest = job is self._load
        if latest:
            self._load = None
        if isinstance(ev, ModelLoaded):
            self._loaded_spec = job.spec
            self.loaded = ev
            if latest:
                self.model_loaded.emit(ev.description)
            return
        if isinstance(ev, JobCancelled) and ev.superseded:
            return
        if latest and self.model_spec == job.spec:
            self.model_spec = self._loaded_spec  # edits go on with the model that is still there
            self.model_spec_changed.emit(self.model_spec)
        if isinstance(ev, JobCancelled):
            self.model_failed.emit("cancelled", "Model loading cancelled; the previous model is still in use.")
        else:
            self.model_failed.emit(ev.kind, ev.message)
