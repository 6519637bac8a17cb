"""Running a planned batch: each image through a `LocalRunner` (the same path as the GUI and a
single `malleable-edit`), its output written atomically, its manifest row returned.

`run_item` is the one path from an item to a row; `LocalBatch` calls it in a loop on this machine,
and the Ray runner's actors call it on theirs (core/ray_runner.py). `run_batch` is the driver's
part for both: skip what is done, hand the rest to a backend, append each row to the manifest as
it comes back."""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Protocol

from ..errors import Cancelled, MalleableError, ModelUnavailable
from ..images import load_image, save_atomic
from ..models import ModelSpec
from ..runner import TERMINAL, Failed, Finished, JobCancelled, LocalRunner, ModelLoaded
from .manifest import Manifest
from .plan import BatchItem, BatchSpec

log = logging.getLogger(__name__)
RowSink = Callable[[dict], None]


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def load_model(runner: LocalRunner, spec: ModelSpec, timeout: Optional[float] = None) -> str:
    """Load `spec` on the runner's thread and wait; returns its description, raises the load's
    error (ModelUnavailable, OutOfMemory, ...)."""
    box: list = []
    arrived = threading.Event()

    def listen(ev) -> None:
        if ev.job.kind == "load" and ev.job.spec is spec and isinstance(ev, TERMINAL):
            box.append(ev)
            arrived.set()

    unsubscribe = runner.subscribe(listen)
    try:
        runner.load_model(spec)
        if not arrived.wait(timeout):
            raise ModelUnavailable(f"The model did not load within {timeout} s.")
    finally:
        unsubscribe()
    end = box[0]
    if isinstance(end, ModelLoaded):
        return end.description
    if isinstance(end, JobCancelled):
        raise Cancelled(end.message)
    raise end.error if isinstance(end.error, MalleableError) else ModelUnavailable(end.message)


def model_loads(runner: LocalRunner) -> int:
    return getattr(runner.engine.models, "loads", 0)


def _row(item: BatchItem, status: str, **values) -> dict:
    row = dict(image=item.image, output=item.output, status=status, seconds=0.0,
               seed=item.params.get("seed"), unet_passes=0, passes={}, error_kind=None, error=None)
    row.update(values)
    return row


def skipped_row(item: BatchItem) -> dict:
    return _row(item, "skipped", error="the output exists (--redo runs it again)")


def failed_row(item: BatchItem, kind: str, message: str, **values) -> dict:
    return _row(item, "failed", error_kind=kind, error=message, **values)


def run_item(item: BatchItem, spec: BatchSpec, runner: LocalRunner, worker: str = "") -> dict:
    """Edit one image and write its output. Every failure of this image is a failed row; only a
    cancel (Ctrl+C, shutdown) propagates, to stop the batch."""
    started = time.perf_counter()
    where = dict(worker=worker or worker_name())

    def elapsed() -> float:
        return round(time.perf_counter() - started, 3)

    if item.error:
        return failed_row(item, item.error_kind or "invalid input", item.error, **where)
    try:
        image = load_image(item.source(spec))
        end = runner.run(spec.request(item, image))
        if isinstance(end, JobCancelled):
            raise Cancelled(end.message)
        if isinstance(end, Failed):
            return failed_row(item, end.kind, end.message, seconds=elapsed(), model_loads=model_loads(runner),
                              **where)
        assert isinstance(end, Finished)
        result = end.result
        out = item.destination(spec)
        out.parent.mkdir(parents=True, exist_ok=True)
        save_atomic(result.image, out)
    except Cancelled:
        raise
    except MalleableError as e:
        return failed_row(item, e.kind, str(e), seconds=elapsed(), model_loads=model_loads(runner), **where)
    except OSError as e:  # e.g. OUTPUT_DIR's subfolder cannot be made
        return failed_row(item, "invalid input", f"Cannot write {item.output}: {e.strerror or e}.",
                          seconds=elapsed(), **where)
    except Exception as e:  # an engine bug on one image must not end the batch
        first = str(e).splitlines()[0] if str(e) else ""
        log.exception("batch item %s failed", item.image)
        return failed_row(item, "error", f"Unexpected error ({type(e).__name__}): {first}", seconds=elapsed(),
                          **where)
    return _row(item, "ok", seconds=elapsed(), unet_passes=int(result.passes.get("unet", 0)),
                passes=dict(result.passes), width=result.width, height=result.height, model=result.model_id,
                params=dict(result.params), model_loads=model_loads(runner), **where)


class Backend(Protocol):
    """Runs items (none skipped, none with errors) and reports each one's row as it ends."""

    workers: int

    def run_items(self, spec: BatchSpec, items: list[BatchItem], on_row: RowSink) -> None: ...


class LocalBatch:
    """A LocalRunner in a loop: the model is loaded once, before the first image."""

    workers = 1

    def __init__(self, runner: Optional[LocalRunner] = None):
        self.runner = runner

    def run_items(self, spec: BatchSpec, items: list[BatchItem], on_row: RowSink) -> None:
        own = self.runner is None
        runner = self.runner or LocalRunner()
        try:
            load_model(runner, spec.model)
            worker = worker_name()
            for item in items:
                on_row(run_item(item, spec, runner, worker))
        finally:
            if own:
                runner.shutdown(wait=True)


@dataclass
class Summary:
    run: str
    manifest: str
    total: int = 0
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    workers: int = 1
    rows: list = field(default_factory=list, repr=False)

    @property
    def processed(self) -> int:
        return self.ok + self.failed

    @property
    def images_per_minute(self) -> float:
        return round(60.0 * self.processed / self.seconds, 2) if self.seconds > 0 else 0.0

    @property
    def exit_code(self) -> int:
        """0 when no image failed (skipped ones were done before), 1 when some did."""
        return 1 if self.failed else 0

    def to_dict(self) -> dict:
        return dict(run=self.run, manifest=self.manifest, total=self.total, ok=self.ok, failed=self.failed,
                    skipped=self.skipped, seconds=round(self.seconds, 3), images_per_minute=self.images_per_minute,
                    workers=self.workers)


def run_batch(spec: BatchSpec, items: list[BatchItem], backend: Backend,
              on_row: Optional[RowSink] = None, manifest: Optional[Manifest] = None) -> Summary:
    """Skip the items whose output exists (unless spec.redo), fail those that cannot run, give the
    rest to the backend; every row goes to the manifest the moment it is known, then to on_row."""
    manifest = manifest or Manifest(spec.manifest_path)
    summary = Summary(manifest.run, str(manifest.path), total=len(items))
    started = time.perf_counter()

    def record(row: dict) -> None:
        row = manifest.append(row)
        summary.rows.append(row)
        setattr(summary, row["status"], getattr(summary, row["status"]) + 1)
        summary.seconds = time.perf_counter() - started
        if on_row is not None:
            on_row(row)

    pending = []
    for item in items:
        if not spec.redo and item.destination(spec).exists():
            record(skipped_row(item))
        elif item.error:
            record(failed_row(item, item.error_kind or "invalid input", item.error))
        else:
            pending.append(item)
    if pending:
        backend.run_items(spec, pending, record)
        summary.workers = backend.workers  # a cluster's default is known once it is reached
    summary.seconds = time.perf_counter() - started
    return summary
