"""The Runner protocol on a Ray cluster (the optional `cluster` extra: `pip install "malleable[cluster]"`).

    runner = RayRunner()                 # a cluster on this machine; RayRunner("ray://head:10001")
    runner.run_items(spec, items, on_row)   # a batch: Ray Data, one model copy per actor
    job = runner.submit(request)         # one request: the same events as LocalRunner's

Both paths end in the same place as a local edit: an `EditActor` on a worker holds a `LocalRunner`
with its own Engine, so the model is loaded once per actor and every image takes the engine's one
path (core.batch.run_item for a batch, LocalRunner.run for a request).

- A batch is a Ray Data pipeline: `from_items` of the planned items → `map_batches(EditActor,
  compute=ActorPoolStrategy(size=N), num_gpus=1)` (CPU actors when the cluster has no GPU) →
  manifest rows streamed back to the driver, which appends them to the manifest. Each actor reads
  its inputs and writes its outputs itself (Ray's `write_images` cannot keep input names), so
  INPUT_DIR and OUTPUT_DIR must be on a file system every node sees at the same path; every error
  on an image is a row, never the end of the run.
- `submit`/`cancel`/`subscribe`/`shutdown` are LocalRunner's (queue, supersede by key, events
  tagged by job); its engine is a `RemoteEngine` that ships the request to one actor and streams its
  progress back. One request runs at a time, as in the GUI; throughput is the batch path's.

Ray is imported only here, and only when a runner is used."""
from __future__ import annotations

import json
import logging
import os
import queue
from types import SimpleNamespace
from typing import Iterator, Optional

from .batch.execute import RowSink, failed_row, load_model, run_item, worker_name
from .batch.plan import BatchItem, BatchSpec
from .errors import Cancelled, InvalidInput, MalleableError, ModelUnavailable, OutOfMemory
from .events import CancelToken, Progress
from .models import ModelSpec
from .request import EditRequest, EditResult
from .runner import TERMINAL, Failed, Finished, JobCancelled, LocalRunner, ProgressEvent, Supersede

log = logging.getLogger(__name__)
RAY_INSTALL = 'pip install "malleable[cluster]"'
_ERRORS = {cls.kind: cls for cls in (InvalidInput, ModelUnavailable, OutOfMemory, Cancelled)}


def require_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise InvalidInput(f"Running on a cluster needs Ray, which is not installed: {RAY_INSTALL}") from None
    return ray


def _error_row(e: BaseException) -> tuple[str, str]:
    if isinstance(e, MalleableError):
        return e.kind, str(e)
    first = str(e).splitlines()[0] if str(e) else ""
    return "error", f"Unexpected error ({type(e).__name__}): {first}"


class EditActor:
    """One model copy on one Ray worker. Ray Data builds it with a batch's spec (the model is loaded
    here, once) and calls it with batches of items; RemoteEngine builds it bare and calls `load` and
    `run_request`. A failure to load becomes every item's failed row."""

    def __init__(self, spec: Optional[dict] = None):
        self.runner = LocalRunner(name="malleable-ray-actor")
        self.worker = worker_name()
        self.spec = BatchSpec.from_dict(spec) if spec else None
        self.load_error: Optional[tuple[str, str]] = None
        self.jobs: dict = {}  # RemoteEngine's token -> the running job, for cancel_request
        if self.spec is not None:
            try:
                load_model(self.runner, self.spec.model)
            except Exception as e:  # noqa: BLE001 - reported in every row instead
                self.load_error = _error_row(e)

    # ---- Ray Data: a batch of items -> their manifest rows ----------------------------------------
    def __call__(self, batch: dict) -> dict:
        import numpy as np

        rows = []
        for text in batch["item"]:
            item = BatchItem.from_dict(json.loads(text))
            if self.load_error is not None:
                row = failed_row(item, *self.load_error, worker=self.worker)
            else:
                try:
                    row = run_item(item, self.spec, self.runner, self.worker)
                except Cancelled as e:
                    row = failed_row(item, e.kind, str(e), worker=self.worker)
            rows.append(json.dumps(row, default=str))
        return {"row": np.array(rows, dtype=object)}

    # ---- RemoteEngine: one request --------------------------------------------------------------------
    def load(self, spec: dict) -> str:
        return load_model(self.runner, ModelSpec(**spec))

    def run_request(self, data: dict, token: str) -> Iterator[dict]:
        """A streaming generator: {"progress": ...} per step, then one terminal message.
        `cancel_request(token)` (or a `ray.cancel` of this task) cancels the job at the engine's next
        step; the generator then ends with {"cancelled": ...}."""
        import ray

        request = EditRequest.from_dict(data)
        inbox: "queue.Queue" = queue.Queue()
        unsubscribe = self.runner.subscribe(lambda ev: inbox.put(ev) if ev.job.request is request else None)
        try:
            job = self.runner.submit(request, supersede=Supersede.NONE)
            self.jobs[token] = job
            context = ray.get_runtime_context()
            while True:
                if context.is_canceled() and not job.cancelled:
                    self.runner.cancel(job)
                try:
                    ev = inbox.get(timeout=0.05)
                except queue.Empty:
                    continue
                if isinstance(ev, ProgressEvent):
                    p = ev.progress
                    yield {"progress": dict(stage=p.stage, step=p.step, total=p.total, message=p.message,
                                            preview=p.preview)}
                elif isinstance(ev, Finished):
                    yield {"finished": ev.result.to_dict(pixels=True)}
                    return
                elif isinstance(ev, Failed):
                    yield {"failed": dict(kind=ev.kind, message=ev.message, exit_code=ev.exit_code)}
                    return
                elif isinstance(ev, JobCancelled):
                    yield {"cancelled": ev.message}
                    return
                elif isinstance(ev, TERMINAL):
                    return
        finally:
            self.jobs.pop(token, None)
            unsubscribe()

    def cancel_request(self, token: str) -> bool:
        """Cancels the request `run_request` runs under `token`. It arrives on the actor's second
        thread (the actor runs with max_concurrency=2) while run_request works: a `ray.cancel` of a
        streaming actor task does not reach a running generator (measured: a cancelled 1000-step
        job went on for a minute and held the actor)."""
        job = self.jobs.get(token)
        if job is None:
            return False
        self.runner.cancel(job)
        return True


class RemoteEngine:
    """What LocalRunner calls an engine, answered by an EditActor on the cluster."""

    def __init__(self, owner: "RayRunner"):
        self.owner = owner
        self.models = SimpleNamespace(current=None)  # device memory is the worker's: not reported here
        self._actor = None

    def _get_actor(self):
        if self._actor is None:
            ray, gpus = self.owner.connect()
            # two threads: cancel_request must run while run_request works
            self._actor = ray.remote(EditActor).options(num_cpus=self.owner.cpus_per_worker,
                                                        num_gpus=1 if gpus else 0, max_concurrency=2).remote()
        return self._actor

    def load_model(self, spec: ModelSpec, progress=None):
        import dataclasses

        ray, _ = self.owner.connect()
        try:
            return SimpleNamespace(description=ray.get(self._get_actor().load.remote(dataclasses.asdict(spec))))
        except ray.exceptions.RayTaskError as e:
            raise _remote_error(e) from None

    def run(self, request: EditRequest, events=None, cancel: Optional[CancelToken] = None) -> EditResult:
        import uuid

        ray, _ = self.owner.connect()
        actor = self._get_actor()
        token = uuid.uuid4().hex
        stream = actor.run_request.options(num_returns="streaming").remote(request.to_dict(), token)
        cancelled = False
        try:
            while True:
                if cancel is not None and cancel.cancelled and not cancelled:
                    # the actor stops at its engine's next step and ends the stream with "cancelled"
                    actor.cancel_request.remote(token)
                    cancelled = True
                ready, _ = ray.wait([stream], timeout=0.1)
                if not ready:
                    continue
                try:
                    msg = ray.get(next(stream))
                except StopIteration:
                    raise Cancelled("The worker ended the job without a result.") from None
                if "progress" in msg:
                    if events is not None:
                        events(Progress(**msg["progress"]))
                elif "finished" in msg:
                    return EditResult.from_dict(msg["finished"], origin=request.origin)
                elif "failed" in msg:
                    f = msg["failed"]
                    error = _ERRORS.get(f["kind"], MalleableError)(f["message"])
                    error.exit_code, error.kind = f["exit_code"], f["kind"]
                    raise error
                else:
                    raise Cancelled(msg.get("cancelled") or "Cancelled: the image was left as it was.")
        except ray.exceptions.TaskCancelledError:
            raise Cancelled("Cancelled: the image was left as it was.") from None
        except ray.exceptions.RayTaskError as e:
            raise _remote_error(e) from None


def _remote_error(e) -> MalleableError:
    cause = getattr(e, "cause", None)
    if isinstance(cause, MalleableError):
        return cause
    return ModelUnavailable(f"The Ray worker failed: {str(cause or e).splitlines()[0]}")


def _quiet_ray_data_console() -> None:
    """Ray Data logs its progress to the console at INFO: the CLI draws its own progress from the
    rows, so only errors reach stderr (everything still goes to Ray's ray-data.log)."""
    for handler in logging.getLogger("ray.data").handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            handler.setLevel(logging.ERROR)


class RayRunner(LocalRunner):
    """LocalRunner's queue and events with a remote engine, plus `run_items` for batches.

    `address`: None starts a cluster on this machine (Ray's `address=None`), else "auto" or
    "ray://head:10001". A Ray session already started in this process (ray.init) is used as it is and
    left running. `workers`: actors of a batch (default: one per GPU of the cluster, or 1)."""

    def __init__(self, address: Optional[str] = None, workers: Optional[int] = None, cpus_per_worker: float = 1):
        super().__init__(engine=RemoteEngine(self), name="malleable-ray-runner")
        self.address = address
        self.requested_workers = workers
        self.workers = workers or 1
        self.cpus_per_worker = cpus_per_worker
        self._started_ray = False
        self._gpus: Optional[float] = None

    def connect(self):
        """(ray, GPUs in the cluster), starting or joining the cluster on first use."""
        ray = require_ray()
        if not ray.is_initialized():
            if self.address is None:
                # Logical CPUs beyond the actors': Ray Data's own tasks (splitting, output) need some,
                # and with exactly one per actor they starve and the job hangs (seen on 2 cores).
                cpus = max(os.cpu_count() or 1, int((self.requested_workers or 1) * self.cpus_per_worker) + 2)
                ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
            else:
                ray.init(address=self.address, log_to_driver=False, logging_level=logging.ERROR)
            self._started_ray = True
        if self._gpus is None:
            self._gpus = float(ray.cluster_resources().get("GPU", 0))
            _quiet_ray_data_console()
        return ray, self._gpus

    def run_items(self, spec: BatchSpec, items: list[BatchItem], on_row: RowSink) -> None:
        ray, gpus = self.connect()
        use_gpus = gpus >= 1 and spec.model.device != "cpu"
        self.workers = self.requested_workers or (int(gpus) if use_gpus else 1)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the CLI draws its own, from the rows
        context.print_on_execution_start = False
        ds = ray.data.from_items([{"item": json.dumps(item.to_dict())} for item in items])
        ds = ds.map_batches(
            EditActor, fn_constructor_kwargs={"spec": spec.to_dict()},
            batch_size=1,  # one image per call: its row comes back as soon as it is written
            compute=ray.data.ActorPoolStrategy(size=self.workers),
            num_cpus=self.cpus_per_worker, num_gpus=1 if use_gpus else None)
        for row in ds.iter_rows():
            on_row(json.loads(row["row"]))

    def shutdown(self, wait: bool = True, timeout: Optional[float] = None) -> bool:
        stopped = super().shutdown(wait, timeout)
        actor, self.engine._actor = self.engine._actor, None
        if self._started_ray:
            import ray

            ray.shutdown()
            self._started_ray = False
        elif actor is not None:
            import ray

            ray.kill(actor)
        return stopped
