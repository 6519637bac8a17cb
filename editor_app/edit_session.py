"""Connects the document and canvas to the engine: builds EditRequests from what is on the canvas,
streams previews onto it, and lands results as undoable layers.

A request holds everything the edit needs (pixels, mask, a layer used as style image, the model
spec) and an origin, {document identity, layer id}, that routes its result back. A result whose
document was closed or replaced is never put into another one: the window is told
(`orphan_result`) and offers to open it as a new picture.

The window owns one EditSession; the session owns the EditController (and so the job runner)."""
from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter
from typing import Callable, Optional

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal

from core import EditRequest, InvalidInput
from core.registry import get_method
from widgets import fast_mode
from widgets.qimage import rgb_to_qimage, rgba_to_qimage

from .demo_notice import notice_for
from .edit_controller import EditController

log = logging.getLogger(__name__)

LAYER_PREFIX = "Layer: "  # path fields may name a document layer instead of a file
# Closing waits this long for a cancelled edit to reach its next step; then the window goes and the
# runner's thread finishes on its own (the process exits when it does).
FINISH_TIMEOUT_S = 15.0
FINISH_POLL_MS = 50
LIVE_KEY = "live-drag"  # the runner key of live edits: the newest position supersedes the running one


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
        # Edit the visible picture (every visible layer together) instead of the active layer.
        self.edit_visible = False
        self._finish_timer: Optional[QTimer] = None
        panel.run_requested.connect(self.run)
        if hasattr(panel, "variations_requested"):
            panel.variations_requested.connect(self.run_variations)
        if hasattr(panel, "visible_picture_toggled"):
            panel.visible_picture_toggled.connect(self.set_edit_visible)
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
        document.reset.connect(self._sync_points)
        document.layers_changed.connect(self._sync_layer_choices)
        document.reset.connect(self._sync_layer_choices)
        document.reset.connect(lambda: canvas.set_preview(None))  # a preview of the old picture
        # The demo-on-a-photo notice follows the picture and the model; many changes in a row (an
        # opacity drag) are read once, when they stop.
        self._notice_timer = QTimer(self)
        self._notice_timer.setSingleShot(True)
        self._notice_timer.setInterval(150)
        self._notice_timer.timeout.connect(self.update_notice)
        for signal in (document.reset, document.layers_changed, document.active_layer_changed,
                       document.layer_changed, self.controller.model_spec_changed):
            signal.connect(lambda *_: self._notice_timer.start())
        self._sync_points()
        self._sync_layer_choices()
        self.update_notice()

    # ---- building a request from the document ----------------------------------------------------
    def set_edit_visible(self, on: bool) -> None:
        self.edit_visible = bool(on)
        self._notice_timer.start()

    def update_notice(self) -> None:
        """The Edit panel's notice for the picture an edit would take now, with the model it names."""
        show = getattr(self.panel, "show_notice", None)
        if show is None:
            return
        layer = self.doc.active_layer
        if layer is None:
            picture = None
        else:
            picture = self.doc.composite_rgba() if self.edit_visible else layer.pixels
        try:
            text = notice_for(self.controller.model_spec.source, picture)
        except Exception:  # a hint only: never an exception out of a slot
            log.exception("reading the picture for the demo notice failed")
            text = None
        show(text)

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

    def build_request(self, method_name: str, values: dict, origin_extra: Optional[dict] = None,
                      fast: bool = False, points=None) -> EditRequest:
        """The edit of the active layer (its pixels and its points), or of the visible picture when
        `edit_visible`; the result is routed back by the origin. fast: the few-step LCM sampler with
        its steps and guidance (widgets/fast_mode.py). points: the pairs to use instead of the
        layer's (a point still being dragged)."""
        if self.doc.is_empty:
            raise InvalidInput("Open an image first (File ▸ Open…).")
        layer = self.doc.active_layer
        if layer is None:
            raise InvalidInput("Select the layer to edit in the Layers panel.")
        method = get_method(method_name)
        values = dict(values)
        if method.uses_points:
            values["points"] = self.doc.point_pairs() if points is None else list(points)
        if fast:
            values.update(fast_mode.changes(method))
        params = method.params.from_dict(values)
        mask8 = self.doc.edit_mask_array()
        mask = (mask8.astype(np.float32) / 255.0) if mask8.max() > 0 else None
        if self.edit_visible:
            pixels = self.doc.composite_rgba()
            if pixels[..., 3].max() == 0:
                raise InvalidInput("Nothing is visible: show a layer (its check box in the Layers panel).")
        else:
            pixels = self.doc.layer_pixels(layer)
            if pixels[..., 3].max() == 0:
                raise InvalidInput(f"Layer “{layer.name}” is empty: select a layer with a picture on it.")
        origin = {"document": self.doc.identity, "layer": layer.id, **(origin_extra or {})}
        if self.edit_visible:
            origin["visible"] = True
        return EditRequest(method.name, pixels, params, mask=mask, model=self.controller.model_spec,
                           inputs=self._layer_inputs(method, values), origin=origin,
                           sampler=fast_mode.SAMPLER if fast else "ddim")

    def run(self, method_name: str, values: dict):
        try:
            request = self.build_request(method_name, values, fast=getattr(self.panel, "fast", False))
        except InvalidInput as e:
            self.show_error("Cannot run this edit", str(e))
            return None
        job = self.controller.submit(request)
        if job is not self.controller.running:
            label = get_method(request.method).plain_name
            self.status.emit(f"{label} queued: it starts when the running edit ends.")
        return job

    def run_variations(self, method_name: str, values: dict, count: int):
        """The same edit with `count` seeds (the form's seed, then the next ones); the results land
        as one group of layers, the first shown, to pick from (editor_app/variations.py)."""
        method = get_method(method_name)
        seed = int(values.get("seed", 0) or 0)
        self.result_counts[method.name] += 1
        group = f"{method.plain_name} {self.result_counts[method.name]}"
        fast = getattr(self.panel, "fast", False)
        try:
            requests = [self.build_request(method_name, {**values, "seed": seed + k}, fast=fast,
                                           origin_extra={"variation": {"group": group, "index": k, "of": count,
                                                                       "seed": seed + k}})
                        for k in range(count)]
        except InvalidInput as e:
            self.show_error("Cannot run this edit", str(e))
            return []
        jobs = [self.controller.submit(r, supersede=False) for r in requests]  # a batch: none replaces another
        self.status.emit(f"{group}: {count} variations queued; they land as a group of layers to pick from.")
        return jobs

    # ---- live editing ----------------------------------------------------------------------------
    def _on_point_moving(self, index: int, end: str, x: float, y: float) -> None:
        """With Live on, every new position of a dragged target re-runs the edit at once: the request
        supersedes the running one at its next step, and its first preview (the warp, before any
        denoising pass) shows on the canvas. A live run's origin says "live": it never lands."""
        if not self.panel.live or end != "target":
            return
        pairs = list(self.doc.point_pairs())
        if not 0 <= index < len(pairs):
            return
        hx, hy, _, _ = pairs[index]
        pairs[index] = (hx, hy, x, y)
        try:
            request = self.build_request(self.panel.method.name, self.panel.form.values(), {"live": True},
                                         fast=getattr(self.panel, "fast", False), points=pairs)
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
            request = self.build_request(self.panel.method.name, self.panel.form.values(),
                                         fast=getattr(self.panel, "fast", False))
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
            # Inside the request's mask only, over the picture: what the edit can change.
            self.canvas.set_preview(rgb_to_qimage(ev.preview), job.request.mask)

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
                self.canvas.set_preview(rgba_to_qimage(np.asarray(result.image.convert("RGBA"))), job.request.mask)
            self.panel.show_done(f"Live: {result.seconds:.1f} s")
            return
        method = get_method(result.method)
        variation = result.origin.get("variation")
        if variation:  # its number was given when the group was queued
            group = variation["group"]
            name = f"{group} · seed {variation['seed']}"
        else:
            group = ""
            self.result_counts[method.name] += 1
            name = f"{method.plain_name} {self.result_counts[method.name]}"
        if not self._is_current(result.origin):
            self.panel.show_done(f"Done: {name}, for a picture no longer open")
            self.orphan_result.emit(result, name)
            return
        # A group of variations shows one at a time: the first to arrive, until another is picked.
        visible = not (group and any(layer.group == group for layer in self.doc.layers))
        self._add_result(job.request, result, name, group, visible)
        self.panel.show_done(f"Done: {name} ({result.seconds:.1f} s)")
        self.status.emit(f"{name} added ({result.seconds:.1f} s)")

    def _add_result(self, request: EditRequest, result, name: str, group: str = "", visible: bool = True) -> None:
        """The result as a layer above its source and the results already on it (on top when the
        source layer was deleted, or the edit was of the visible picture), carrying the source's
        point pairs, a drag's with their handles where they ended: one undo entry, or nothing at
        all. The source stays the edit target; after an edit of the visible picture the result,
        now the top of what is seen, becomes the active layer (its points are the current ones)."""
        doc = self.doc
        rgba = np.asarray(result.image.convert("RGBA")).copy()
        if rgba.shape[:2] != (doc.height, doc.width):
            raise ValueError(f"it is {rgba.shape[1]}×{rgba.shape[0]} px and the picture {doc.width}×{doc.height} px")
        mask = None if request.mask is None else np.round(request.mask * 255.0).astype(np.uint8)
        metadata = {"method": result.method, "params": result.params, "model": result.model_id,
                    "seconds": round(result.seconds, 2),
                    # The whole model choice, LoRA files and scales included: saved with the project.
                    "model_spec": dataclasses.asdict(request.model), "sampler": request.sampler}
        if "handles" in result.info:
            metadata["handles"] = result.info["handles"]
        try:
            source = doc.layer_by_id(result.origin.get("layer"))
        except KeyError:
            source = None
        on_visible = bool(result.origin.get("visible"))
        pairs = doc.point_pairs(source) if source is not None else []
        points = tuple(getattr(request.params, "points", ()) or ())
        handles = result.info.get("handles")
        if handles and points and len(handles) == len(points):
            # The handles now sit where the drag took them; targets stay.
            pairs = [(float(h[0]), float(h[1]), p[2], p[3]) for h, p in zip(handles, points)]
        stack = doc.undo_stack
        stack.beginMacro(name)
        try:
            layer = doc.add_result_layer(rgba, name, metadata, above=source, mask=mask, points=pairs, group=group,
                                         on_top=on_visible or source is None, activate=on_visible)
            if not visible:
                doc.set_layer_visible(layer, False)
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
        self._notice_timer.stop()
        self.controller.shutdown()
