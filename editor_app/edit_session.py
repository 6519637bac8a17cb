"""Connects the document and canvas to the engine: builds EditRequests from what is on the canvas,
streams previews onto it, and lands results as undoable layers.

A request holds everything the edit needs (pixels, mask, a layer used as style image, the model
spec) and an origin, {document identity, layer id}, that routes its result back. A result whose
document was closed or replaced is never put into another one: the window is told
(`orphan_result`) and offers to open it as a new picture.

The window owns one EditSession; the session owns the EditController (and so the job runner)."""
from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Callable, Optional

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal

from core import EditRequest, InvalidInput
from core.registry import get_method
from widgets.qimage import rgb_to_qimage, rgba_to_qimage

from .edit_controller import EditController

log = logging.getLogger(__name__)

LAYER_PREFIX = "Layer: "  # path fields may name a document layer instead of a file
# Closing waits this long for a cancelled edit to reach its next step; then the window goes and the
# runner's thread finishes on its own (the process exits when it does).
FINISH_TIMEOUT_S = 15.0
FINISH_POLL_MS = 50
LIVE_KEY = "live-drag"  # the runner key of live edits: the newest position supersedes the running one


def short_label(label: str) -> str:
    """'Restyle (PnP)' -> 'Restyle': layer names read "Restyle 1", "Drag 3"."""
    return label.split(" (")[0]


class EditSession(QObject):
    status = Signal(str)                 # one-line messages for the status bar
    orphan_result = Signal(object, str)  # EditResult, layer name: its picture is no longer open

    def __init__(self, document, canvas, panel, show_error: Callable[[str, str], None], engine=None,
                 parent=None, runner=None):
        super().__init__(parent)
        self.doc = document
        self.canvas = canvas
        self.panel = panel
        self.show_error = show_error
        self.controller = EditController(engine, self, runner=runner)
        self.result_counts: Counter = Counter()
        self._finish_timer: Optional[QTimer] = None
        panel.run_requested.connect(self.run)
        panel.cancel_requested.connect(self.controller.cancel)
        self.controller.started.connect(lambda job: panel.set_busy(True))
        self.controller.busy_changed.connect(self._on_busy)
        self.controller.queue_changed.connect(panel.show_queue)
        self.controller.progress.connect(self._on_progress)
        self.controller.result_ready.connect(self._on_result)
        self.controller.failed.connect(self._on_failed)
        canvas.point_moving.connect(self._on_point_moving)
        canvas.point_drag_finished.connect(self._on_point_released)
        self._live_dragging = False
        document.points_changed.connect(self._sync_points)
        document.layers_changed.connect(self._sync_layer_choices)
        document.reset.connect(self._sync_layer_choices)
        document.reset.connect(lambda: canvas.set_preview(None))  # a preview of the old picture
        self._sync_points()
        self._sync_layer_choices()

    # ---- building a request from the document ----------------------------------------------------
    def _sync_points(self) -> None:
        pairs = self.doc.point_pairs()
        for form in self.panel.forms.values():
            for name in form.fields_of_kind("points"):
                form._setters[name](pairs)

    def _sync_layer_choices(self) -> None:
        names = [LAYER_PREFIX + layer.name for layer in self.doc.layers]
        for form in self.panel.forms.values():
            for name in form.fields_of_kind("path"):
                form.editor(name).set_choices(names)

    def _layer_inputs(self, method, values: dict) -> dict:
        """Pixels for the path fields that name a layer: they travel with the request."""
        kinds = {f.name: f.metadata["kind"] for f in method.params.fields()}
        inputs = {}
        for name, v in values.items():
            if kinds.get(name) == "path" and isinstance(v, str) and v.startswith(LAYER_PREFIX):
                wanted = v[len(LAYER_PREFIX):]
                layer = next((ly for ly in self.doc.layers if ly.name == wanted), None)
                if layer is None:
                    raise InvalidInput(f"There is no layer named “{wanted}” any more: choose another.")
                inputs[name] = self.doc.layer_pixels(layer)
        return inputs

    def build_request(self, method_name: str, values: dict, points=None, live: bool = False) -> EditRequest:
        """`points`: the pairs to use instead of the document's (a point still being dragged);
        `live`: the result is a preview, never a layer (its origin says so)."""
        if self.doc.is_empty:
            raise InvalidInput("Open an image first (File ▸ Open…).")
        layer = self.doc.active_layer
        if layer is None:
            raise InvalidInput("Select the layer to edit in the Layers panel.")
        method = get_method(method_name)
        values = dict(values)
        if method.uses_points:
            values["points"] = self.doc.point_pairs() if points is None else list(points)
        params = method.params.from_dict(values)
        mask8 = self.doc.edit_mask_array()
        mask = (mask8.astype(np.float32) / 255.0) if mask8.max() > 0 else None
        pixels = self.doc.layer_pixels(layer)
        if pixels[..., 3].max() == 0:
            raise InvalidInput(f"Layer “{layer.name}” is empty: select a layer with a picture on it.")
        return EditRequest(method.name, pixels, params, mask=mask, model=self.controller.model_spec,
                           inputs=self._layer_inputs(method, values),
                           origin={"document": self.doc.identity, "layer": layer.id, **({"live": True} if live else {})})

    def run(self, method_name: str, values: dict):
        try:
            request = self.build_request(method_name, values)
        except InvalidInput as e:
            self.show_error("Cannot run this edit", str(e))
            return None
        job = self.controller.submit(request)
        if job is not self.controller.running:
            label = get_method(request.method).label
            self.status.emit(f"{label} queued: it starts when the running edit ends.")
        return job

    # ---- live editing ----------------------------------------------------------------------------
    def _on_point_moving(self, index: int, end: str, x: float, y: float) -> None:
        """With Live on, every new position of a dragged target re-runs the edit at once: the request
        supersedes the running one at its next step, and its first preview (the warp, before any
        denoising pass) shows on the canvas."""
        if not self.panel.live or end != "target":
            return
        pairs = list(self.doc.point_pairs())
        if not 0 <= index < len(pairs):
            return
        hx, hy, _, _ = pairs[index]
        pairs[index] = (hx, hy, x, y)
        try:
            request = self.build_request(self.panel.method.name, self.panel.form.values(), points=pairs, live=True)
        except InvalidInput:
            return  # e.g. the target passes over its handle: that position is skipped, the next one runs
        self._live_dragging = True
        self.controller.submit_live(request, LIVE_KEY)

    def _on_point_released(self, index: int, end: str) -> None:
        """Letting go of a live-dragged point runs the final edit with the points the document now
        holds; it supersedes the last preview run and lands as one layer."""
        if not self._live_dragging:
            return
        self._live_dragging = False
        try:
            request = self.build_request(self.panel.method.name, self.panel.form.values())
        except InvalidInput as e:
            self.show_error("Cannot run this edit", str(e))
            return
        self.controller.submit_live(request, LIVE_KEY)

    # ---- results ---------------------------------------------------------------------------------
    def _is_current(self, origin) -> bool:
        return origin.get("document") == self.doc.identity

    def _on_busy(self, busy: bool) -> None:
        self.panel.set_busy(busy)
        if not busy:
            self.canvas.set_preview(None)

    def _on_progress(self, job, ev) -> None:
        self.panel.show_progress(ev)
        if job.origin.get("live") and ev.message == "reused":
            return  # a cache's look at the source picture: while dragging it would only flicker
        if ev.preview is not None and self._is_current(job.origin):
            self.canvas.set_preview(rgb_to_qimage(ev.preview))

    def _on_result(self, job, result) -> None:
        self.canvas.set_preview(None)
        try:
            self._land(job, result)
        except Exception as e:  # never out of a slot: the user hears of it, the document is untouched
            log.exception("adding the result of job %s failed", job.id)
            self.panel.show_done("Failed")
            self.show_error("Could not add the result", f"The edit finished but its result could not be added: {e}")

    def _land(self, job, result) -> None:
        if result.origin.get("live"):
            # A live run that finished before the next position superseded it: its picture is the
            # best preview there is until the point is let go; it never becomes a layer.
            if self._is_current(result.origin):
                self.canvas.set_preview(rgba_to_qimage(np.asarray(result.image.convert("RGBA"))))
            self.panel.show_done(f"Live: {result.seconds:.1f} s")
            return
        method = get_method(result.method)
        self.result_counts[method.name] += 1
        name = f"{short_label(method.label)} {self.result_counts[method.name]}"
        if not self._is_current(result.origin):
            self.panel.show_done(f"Done: {name}, for a picture no longer open")
            self.orphan_result.emit(result, name)
            return
        self._add_result(job.request, result, name)
        self.panel.show_done(f"Done: {name} ({result.seconds:.1f} s)")
        self.status.emit(f"{name} added ({result.seconds:.1f} s)")

    def _add_result(self, request: EditRequest, result, name: str) -> None:
        """The result as a layer above its source (on top when the source layer was deleted), and
        a drag's handles moved to where they ended: one undo entry, or nothing at all."""
        doc = self.doc
        rgba = np.asarray(result.image.convert("RGBA")).copy()
        if rgba.shape[:2] != (doc.height, doc.width):
            raise ValueError(f"it is {rgba.shape[1]}×{rgba.shape[0]} px and the picture {doc.width}×{doc.height} px")
        mask = None if request.mask is None else np.round(request.mask * 255.0).astype(np.uint8)
        metadata = {"method": result.method, "params": result.params, "model": result.model_id,
                    "seconds": round(result.seconds, 2)}
        if "handles" in result.info:
            metadata["handles"] = result.info["handles"]
        try:
            above = doc.layer_by_id(result.origin.get("layer"))
        except KeyError:
            above = None
        points = tuple(getattr(request.params, "points", ()) or ())
        handles = result.info.get("handles")
        moved = None
        if handles and points and len(handles) == len(points):
            # The handles now sit where the drag took them; targets stay.
            moved = [(float(h[0]), float(h[1]), p[2], p[3]) for h, p in zip(handles, points)]
        stack = doc.undo_stack
        stack.beginMacro(name)
        try:
            doc.add_result_layer(rgba, name, metadata, above=above, mask=mask)
            if moved is not None:
                doc.set_point_pairs(moved, text="Move Handles to Result")
        except Exception:
            stack.endMacro()
            stack.undo()  # roll back whatever part was done: the document is as it was
            raise
        stack.endMacro()

    def _on_failed(self, job, kind: str, message: str) -> None:
        self.canvas.set_preview(None)
        if self.finishing:
            return  # the window is closing: "Finishing…" stays until it has
        if kind == "cancelled":
            self.panel.show_done("Cancelled")
            self.status.emit("Edit cancelled; nothing was changed.")
            return
        self.panel.show_done("Failed")
        self.show_error({"invalid input": "Cannot run this edit", "model unavailable": "Model unavailable",
                         "out of memory": "Out of memory"}.get(kind, "Edit failed"), message)

    # ---- closing ---------------------------------------------------------------------------------
    def finish(self, then: Callable[[], None]) -> bool:
        """Get ready for the window to close. True: nothing runs, close now. False: work was in
        flight; it is cancelled, and `then` is called (from a timer, the GUI never blocks) once the
        runner has stopped, or only a model load that cannot be interrupted is left, or
        FINISH_TIMEOUT_S passed."""
        ctl = self.controller
        if self._finish_timer is None:
            if not ctl.working:
                self.shutdown()
                return True
            ctl.cancel_everything()
            self.panel.show_done("Finishing…")
            deadline = time.monotonic() + FINISH_TIMEOUT_S
            self._finish_timer = timer = QTimer(self)
            timer.setInterval(FINISH_POLL_MS)

            def poll() -> None:
                if ctl.can_stop_now() or time.monotonic() > deadline:
                    timer.stop()
                    self.shutdown()
                    then()

            timer.timeout.connect(poll)
            timer.start()
        return not self._finish_timer.isActive()

    @property
    def finishing(self) -> bool:
        return self._finish_timer is not None and self._finish_timer.isActive()

    def shutdown(self) -> None:
        self.controller.shutdown()
