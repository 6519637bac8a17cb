"""The seam between every front end and the engine: a `Runner` takes frozen `EditRequest`s and
answers with a stream of events tagged with the job they belong to.

    runner = LocalRunner()
    unsubscribe = runner.subscribe(on_event)       # called on the runner's thread
    job = runner.submit(request, key="drag", supersede=Supersede.RUNNING)
    runner.cancel(job)

`LocalRunner` owns one worker thread (plain `threading`, no Qt) and the engine, so the model stays
resident between jobs. The GUI's Qt adapter turns these events into signals; the CLI waits on
them; the batch and cluster runners implement the same protocol.

Supersede policy, by key: a new job with the key of a *queued* job replaces it (`QUEUED`, the
default: the last settings win, nothing runs twice); with `RUNNING` the running job with that key is
cancelled too, at its next step (live dragging: the newest target position wins at once).
"""
from __future__ import annotations

import collections
import enum
import itertools
import logging
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable, Optional, Protocol, Union

from .errors import Cancelled, MalleableError
from .events import CancelToken, Progress
from .models import ModelSpec
from .request import EditRequest, EditResult

log = logging.getLogger(__name__)


class Supersede(enum.Enum):
    NONE = "none"        # every job runs
    QUEUED = "queued"    # a newer job with the same key replaces the queued one
    RUNNING = "running"  # ... and cancels the running one with the same key


@dataclass(eq=False)
class Job:
    """One unit of work. `kind` is "edit" (request set) or "load" (spec set)."""

    id: int
    kind: str
    request: Optional[EditRequest] = None
    spec: Optional[ModelSpec] = None
    key: Optional[str] = None
    cancel_token: CancelToken = field(default_factory=CancelToken, repr=False)
    submitted: float = field(default_factory=time.monotonic)
    superseded: bool = False  # stopped or dropped for a newer job with its key

    @property
    def origin(self):
        return self.request.origin if self.request is not None else {}

    @property
    def cancelled(self) -> bool:
        return self.cancel_token.cancelled


# ---- events -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Event:
    job: Job


@dataclass(frozen=True)
class Queued(Event):
    position: int  # jobs ahead of it (0 = next)


@dataclass(frozen=True)
class Started(Event):
    pass


@dataclass(frozen=True)
class ProgressEvent(Event):
    progress: Progress


@dataclass(frozen=True)
class Finished(Event):
    result: EditResult


@dataclass(frozen=True)
class ModelLoaded(Event):
    description: str        # e.g. "demo (Stable Diffusion 1.x) on cpu (fp32)"
    few_step: bool = False  # an LCM/TCD model or LoRA: front ends offer the few-step sampler
    family: str = ""        # "sd1", "sd2", "sdxl"


@dataclass(frozen=True)
class DownloadProgress(Event):
    done: int   # bytes
    total: int


@dataclass(frozen=True)
class Failed(Event):
    kind: str        # MalleableError.kind, or "error" for a bug
    message: str     # one line a person can act on
    exit_code: int
    error: Optional[BaseException] = field(default=None, repr=False, compare=False)  # the exception itself


@dataclass(frozen=True)
class JobCancelled(Event):
    """The job ended without effect: cancelled, or superseded by a newer job with its key (`superseded`:
    dropped from the queue, or stopped at its next step under Supersede.RUNNING).
    (Named apart from core.errors.Cancelled, the exception the engine raises.)"""

    superseded: bool = False
    message: str = "Cancelled: the image was left as it was."


@dataclass(frozen=True)
class DeviceStatus(Event):
    """Memory of the device the engine runs on, read by the runner's thread after each job (the
    GUI thread never touches torch.cuda)."""

    device: str
    allocated: int = 0   # bytes
    reserved: int = 0
    total: int = 0


TERMINAL = (Finished, Failed, JobCancelled, ModelLoaded)
Listener = Callable[[Event], None]


class Runner(Protocol):
    def submit(self, request: EditRequest, key: Optional[str] = None,
               supersede: Supersede = Supersede.QUEUED) -> Job: ...

    def load_model(self, spec: ModelSpec) -> Job: ...

    def cancel(self, job: Optional[Job] = None) -> None: ...

    def subscribe(self, listener: Listener) -> Callable[[], None]: ...

    def shutdown(self, wait: bool = True, timeout: Optional[float] = None) -> bool: ...


# ---- the local runner --------------------------------------------------------------------------------

class LocalRunner:
    """One worker thread that owns the engine. Jobs run one at a time in submission order.

    Listeners are called on the worker thread (Qt adapters re-emit them as queued signals), except
    `Queued` and the `JobCancelled` of jobs dropped before they ran, which come from the thread that
    called submit/cancel; a listener that raises is logged and never stops the runner. The thread is not a daemon: a model
    load that cannot be interrupted finishes before the process exits, instead of being killed
    half-way (shutdown(wait=False) lets a window close meanwhile)."""

    def __init__(self, engine=None, name: str = "malleable-runner"):
        if engine is None:
            from .engine import Engine

            engine = Engine()
        self.engine = engine
        self._ids = itertools.count(1)
        self._queue: collections.deque[Job] = collections.deque()
        self._cv = threading.Condition()
        self._running: Optional[Job] = None
        self._listeners: list[Listener] = []
        self._stopping = False
        self._name = name
        self._thread: Optional[threading.Thread] = None  # started on first use

    # ---- protocol --------------------------------------------------------------------------------
    def submit(self, request: EditRequest, key: Optional[str] = None,
               supersede: Supersede = Supersede.QUEUED) -> Job:
        if not isinstance(request, EditRequest):
            raise TypeError("submit() takes an EditRequest")
        return self._enqueue(Job(next(self._ids), "edit", request=request, key=key), supersede)

    def load_model(self, spec: ModelSpec) -> Job:
        """Load (or keep) a model on the worker thread; a newer load replaces a queued one."""
        return self._enqueue(Job(next(self._ids), "load", spec=spec, key="\0load"), Supersede.QUEUED)

    def cancel(self, job: Optional[Job] = None) -> None:
        """Cancel one job (queued: dropped; running: stopped at its next step), or every job."""
        dropped = []
        with self._cv:
            targets = [job] if job is not None else list(self._queue) + ([self._running] if self._running else [])
            for j in targets:
                j.cancel_token.cancel()
                if j in self._queue:
                    self._queue.remove(j)
                    dropped.append(j)
        for j in dropped:
            self._emit(JobCancelled(j))

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        with self._cv:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._cv:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def shutdown(self, wait: bool = True, timeout: Optional[float] = None) -> bool:
        """Cancel everything and stop the thread. With wait, block until it has stopped (or
        `timeout` passed). Returns whether the thread has stopped."""
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        self.cancel()
        t = self._thread
        if t is None or not t.is_alive():
            return True
        if wait:
            t.join(timeout)
        return not t.is_alive()

    # ---- state ---------------------------------------------------------------------------------------
    @property
    def running(self) -> Optional[Job]:
        return self._running

    @property
    def pending(self) -> list[Job]:
        with self._cv:
            return list(self._queue)

    @property
    def busy(self) -> bool:
        with self._cv:
            return self._running is not None or bool(self._queue)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ---- waiting (for front ends without an event loop) ------------------------------------------------
    def run(self, request: EditRequest, on_event: Optional[Listener] = None,
            timeout: Optional[float] = None) -> Event:
        """Submit and wait for the terminal event (Finished, Failed or JobCancelled), passing every
        event of the job to `on_event` on the way. KeyboardInterrupt cancels the job, waits for the
        engine to stop at its next step and re-raises."""
        inbox: "collections.deque[Event]" = collections.deque()
        arrived = threading.Event()

        def listen(ev: Event) -> None:
            if ev.job.request is request:  # this call's own request object: its job alone
                inbox.append(ev)
                arrived.set()

        unsubscribe = self.subscribe(listen)
        try:
            job = self.submit(request, supersede=Supersede.NONE)
            deadline = None if timeout is None else time.monotonic() + timeout
            try:
                while True:
                    left = None if deadline is None else max(0.0, deadline - time.monotonic())
                    if not arrived.wait(0.1 if left is None else min(0.1, left)):
                        if deadline is not None and time.monotonic() >= deadline:
                            raise TimeoutError(f"job {job.id} did not finish in {timeout} s")
                        continue
                    arrived.clear()
                    while inbox:
                        ev = inbox.popleft()
                        if on_event is not None:
                            on_event(ev)
                        if isinstance(ev, TERMINAL):
                            return ev
            except KeyboardInterrupt:
                self.cancel(job)
                self.wait_idle()
                raise
        finally:
            unsubscribe()

    def wait_idle(self, timeout: Optional[float] = None) -> bool:
        """Block until no job runs or waits (or `timeout`). Returns whether it is idle."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            while self._running is not None or self._queue:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cv.wait(0.05 if left is None else min(0.05, left))
        return True

    # ---- internals -----------------------------------------------------------------------------------
    def _enqueue(self, job: Job, supersede: Supersede) -> Job:
        replaced, stop_running = [], None
        with self._cv:
            if self._stopping:
                raise RuntimeError("the runner is shut down")
            if job.key is not None and supersede is not Supersede.NONE:
                replaced = [j for j in self._queue if j.key == job.key]
                for j in replaced:
                    self._queue.remove(j)
                    j.superseded = True
                    j.cancel_token.cancel()
                r = self._running
                if supersede is Supersede.RUNNING and r is not None and r.key == job.key:
                    stop_running = r
            self._queue.append(job)
            position = len(self._queue) - 1 + (1 if self._running is not None else 0)
            if stop_running is not None:
                stop_running.superseded = True
                stop_running.cancel_token.cancel()
            # Emitted under the lock, so the worker cannot report the job's Started before its
            # Queued (listeners run briefly and never wait on the runner).
            for j in replaced:
                self._emit(JobCancelled(j, superseded=True, message="Superseded by a newer request."))
            self._emit(Queued(job, position))
            self._ensure_thread()
            self._cv.notify_all()
        return job

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name=self._name, daemon=False)
            self._thread.start()

    def _emit(self, event: Event) -> None:
        with self._cv:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(event)
            except Exception:  # a front end's bug must not stop the engine's thread
                log.exception("runner listener failed on %s", type(event).__name__)

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._stopping:
                    self._cv.wait()
                if not self._queue:  # stopping and nothing left
                    return
                job = self._queue.popleft()
                self._running = job
            try:
                self._run_job(job)
            finally:
                with self._cv:
                    self._running = None
                    self._cv.notify_all()
                self._emit_device_status(job)

    def _run_job(self, job: Job) -> None:
        if job.cancelled:
            self._emit(JobCancelled(job, superseded=job.superseded))
            return
        self._emit(Started(job))
        try:
            if job.kind == "load":
                def on_bytes(done: int, total: int) -> None:
                    self._emit(DownloadProgress(job, done, total))
                    job.cancel_token.check()  # raising inside the download aborts it

                model = self.engine.load_model(job.spec, on_bytes)
                self._emit(ModelLoaded(job, model.description, bool(getattr(model, "few_step", False)),
                                       str(getattr(model, "family", ""))))
                return
            result = self.engine.run(job.request, lambda p: self._emit(ProgressEvent(job, p)), job.cancel_token)
        except Cancelled as e:
            self._emit(JobCancelled(job, superseded=job.superseded, message=str(e)))
        except MalleableError as e:
            self._emit(Failed(job, e.kind, str(e), e.exit_code, e))
        except Exception as e:  # never let an engine bug take a front end down
            log.error("job %s failed:\n%s", job.id, traceback.format_exc())
            first = str(e).splitlines()[0] if str(e) else ""
            self._emit(Failed(job, "error", f"Unexpected error ({type(e).__name__}): {first}", 1, e))
        else:
            if job.cancelled:  # finished in the same instant as the cancel: honour the cancel
                self._emit(JobCancelled(job, superseded=job.superseded))
            else:
                self._emit(Finished(job, result))

    def _emit_device_status(self, job: Job) -> None:
        try:
            import torch

            model = self.engine.models.current
            if model is None:
                return
            dev = model.device
            if dev.type == "cuda":
                free, total = torch.cuda.mem_get_info(dev)
                self._emit(DeviceStatus(job, str(dev), torch.cuda.memory_allocated(dev),
                                        torch.cuda.memory_reserved(dev), total))
            else:
                self._emit(DeviceStatus(job, str(dev)))
        except Exception:  # memory readings are informative only
            log.debug("device status unavailable", exc_info=True)


AnyEvent = Union[Queued, Started, ProgressEvent, Finished, Failed, JobCancelled, ModelLoaded, DownloadProgress,
                 DeviceStatus]
