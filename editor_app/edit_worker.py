"""The one thread that owns the engine (and so the GPU), and the GUI-side controller that queues
edit requests to it.

The GUI thread never runs a model pass: it submits an EditRequest and gets Qt signals back —
progress with previews, a result, or an error whose message came from the engine. Requests run
one at a time; a new request for the same method supersedes a queued (not yet running) one;
cancel stops the running edit at its next step."""
from __future__ import annotations

import itertools
import logging
import traceback
from dataclasses import dataclass, field
from typing import Any, Optional

from PySide6.QtCore import QObject, QThread, Signal, Slot

from core import Cancelled, EditRequest, MalleableError, ModelSpec
from core.engine import Engine
from core.events import CancelToken

log = logging.getLogger(__name__)


class EditWorker(QObject):
    """Lives in the worker thread. Slots are invoked through queued signals only."""

    progress = Signal(int, object)        # job id, core.events.Progress
    finished = Signal(int, object)        # job id, core.EditResult
    failed = Signal(int, str, str)        # job id, error kind, one-line message
    model_loaded = Signal(str)            # description, e.g. "demo on cpu (fp32)"
    model_failed = Signal(str, str)       # error kind, message
    download_progress = Signal(int, int)  # bytes done, bytes total

    def __init__(self, engine: Optional[Engine] = None):
        super().__init__()
        self.engine = engine or Engine()

    @Slot(int, object, object)
    def run_edit(self, job_id: int, request: EditRequest, cancel: CancelToken) -> None:
        try:
            result = self.engine.run(request, lambda ev: self.progress.emit(job_id, ev), cancel)
        except Cancelled as e:
            self.failed.emit(job_id, "cancelled", str(e))
        except MalleableError as e:
            self.failed.emit(job_id, e.kind, str(e))
        except Exception as e:  # never let an engine bug take the application down
            log.error("edit failed:\n%s", traceback.format_exc())
            self.failed.emit(job_id, "error", f"Unexpected error ({type(e).__name__}): {e}")
        else:
            self.finished.emit(job_id, result)

    @Slot(object, object)
    def load_model(self, spec: ModelSpec, cancel: CancelToken) -> None:
        def on_bytes(done: int, total: int) -> None:
            self.download_progress.emit(done, total)
            cancel.check()  # raising inside the download aborts it

        try:
            model = self.engine.load_model(spec, on_bytes)
        except Cancelled:
            self.model_failed.emit("cancelled", "Model loading cancelled; the previous model is still in use.")
        except MalleableError as e:
            self.model_failed.emit(e.kind, str(e))
        except Exception as e:
            log.error("model load failed:\n%s", traceback.format_exc())
            self.model_failed.emit("error", f"Unexpected error loading the model ({type(e).__name__}): {e}")
        else:
            self.model_loaded.emit(model.description)


@dataclass
class EditJob:
    id: int
    request: EditRequest
    context: Any = None  # what the GUI needs to place the result (source layer, points, …)
    cancel: CancelToken = field(default_factory=CancelToken)


class EditController(QObject):
    """GUI-thread side: queueing, cancelling, and forwarding the worker's signals."""

    started = Signal(object)              # EditJob
    progress = Signal(object, object)     # EditJob, Progress
    result_ready = Signal(object, object)  # EditJob, EditResult
    failed = Signal(object, str, str)     # EditJob, kind, message (kind "cancelled" when cancelled)
    busy_changed = Signal(bool)
    queue_changed = Signal(int)           # jobs waiting
    model_loaded = Signal(str)
    model_failed = Signal(str, str)
    download_progress = Signal(int, int)

    _run = Signal(int, object, object)
    _load = Signal(object, object)

    def __init__(self, engine: Optional[Engine] = None, parent=None):
        super().__init__(parent)
        self._ids = itertools.count(1)
        self.running: Optional[EditJob] = None
        self.queue: list[EditJob] = []
        self.model_spec = ModelSpec()
        self._load_cancel: Optional[CancelToken] = None
        self.thread = QThread()
        self.thread.setObjectName("EditWorker")
        self.worker = EditWorker(engine)
        self.worker.moveToThread(self.thread)
        self._run.connect(self.worker.run_edit)
        self._load.connect(self.worker.load_model)
        self.worker.progress.connect(self._on_progress)
        self.worker.finished.connect(self._on_finished)
        self.worker.failed.connect(self._on_failed)
        self.worker.model_loaded.connect(self.model_loaded)
        self.worker.model_failed.connect(self.model_failed)
        self.worker.download_progress.connect(self.download_progress)
        # Started on first use: a window that never edits never owns a running thread.

    def _ensure_thread(self) -> None:
        if not self.thread.isRunning():
            self.thread.start()

    # ---- edits ---------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self.running is not None

    def submit(self, request: EditRequest, context: Any = None) -> EditJob:
        request = request.replace(model=self.model_spec)
        job = EditJob(next(self._ids), request, context)
        if self.running is None:
            self._start(job)
        else:
            # A newer request for the same method replaces the one still waiting.
            self.queue = [j for j in self.queue if j.request.method != request.method] + [job]
            self.queue_changed.emit(len(self.queue))
        return job

    def cancel(self) -> None:
        """Stop the running edit at its next step and drop anything queued."""
        if self.queue:
            self.queue.clear()
            self.queue_changed.emit(0)
        if self.running is not None:
            self.running.cancel.cancel()

    def _start(self, job: EditJob) -> None:
        self._ensure_thread()
        self.running = job
        self.busy_changed.emit(True)
        self.started.emit(job)
        self._run.emit(job.id, job.request, job.cancel)

    def _job(self, job_id: int) -> Optional[EditJob]:
        return self.running if self.running is not None and self.running.id == job_id else None

    def _on_progress(self, job_id: int, ev) -> None:
        job = self._job(job_id)
        if job is not None and not job.cancel.cancelled:
            self.progress.emit(job, ev)

    def _on_finished(self, job_id: int, result) -> None:
        job = self._job(job_id)
        if job is None:
            return
        self._next()
        if job.cancel.cancelled:  # finished in the same instant as the cancel: honour the cancel
            self.failed.emit(job, "cancelled", "Cancelled: the image was left as it was.")
        else:
            self.result_ready.emit(job, result)

    def _on_failed(self, job_id: int, kind: str, message: str) -> None:
        job = self._job(job_id)
        if job is None:
            return
        self._next()
        self.failed.emit(job, kind, message)

    def _next(self) -> None:
        self.running = None
        if self.queue:
            job = self.queue.pop(0)
            self.queue_changed.emit(len(self.queue))
            self._start(job)
        else:
            self.busy_changed.emit(False)

    # ---- models --------------------------------------------------------------------------------
    def load_model(self, spec: ModelSpec) -> None:
        """Load (or reuse) a model on the worker thread; edits submitted afterwards use it."""
        self.model_spec = spec
        self._ensure_thread()
        self._load_cancel = CancelToken()
        self._load.emit(spec, self._load_cancel)

    def cancel_model_load(self) -> None:
        if self._load_cancel is not None:
            self._load_cancel.cancel()

    def shutdown(self, wait_ms: int = 30000) -> None:
        self.cancel()
        self.cancel_model_load()
        if self.thread.isRunning():
            self.thread.quit()
            self.thread.wait(wait_ms)
