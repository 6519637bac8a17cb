"""Connects the document and canvas to the engine: builds EditRequests from what is on the canvas,
streams previews onto it, and lands results as undoable layers.

The window owns one EditSession; the session owns the EditController (and so the worker thread)."""
from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage

from core import EditRequest, InvalidInput
from core.registry import get_method

from .edit_worker import EditController, EditJob

LAYER_PREFIX = "Layer: "  # path fields may name a document layer instead of a file


def preview_qimage(preview: np.ndarray) -> QImage:
    h, w, _ = preview.shape
    data = np.ascontiguousarray(preview)
    return QImage(data.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


def short_label(label: str) -> str:
    """'Restyle (PnP)' -> 'Restyle': layer names read "Restyle 1", "Drag 3"."""
    return label.split(" (")[0]


class EditSession(QObject):
    status = Signal(str)  # one-line messages for the status bar

    def __init__(self, document, canvas, panel, show_error: Callable[[str, str], None], engine=None,
                 parent=None):
        super().__init__(parent)
        self.doc = document
        self.canvas = canvas
        self.panel = panel
        self.show_error = show_error
        self.controller = EditController(engine, self)
        self.result_counts: Counter = Counter()
        self._temp = tempfile.TemporaryDirectory(prefix="malleable-")
        panel.run_requested.connect(self.run)
        panel.cancel_requested.connect(self.controller.cancel)
        self.controller.started.connect(lambda job: panel.set_busy(True))
        self.controller.busy_changed.connect(self._on_busy)
        self.controller.queue_changed.connect(panel.show_queue)
        self.controller.progress.connect(self._on_progress)
        self.controller.result_ready.connect(self._on_result)
        self.controller.failed.connect(self._on_failed)
        document.points_changed.connect(self._sync_points)
        document.layers_changed.connect(self._sync_layer_choices)
        document.reset.connect(self._sync_layer_choices)
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

    def _resolve_layer_paths(self, method, values: dict) -> dict:
        """A path field naming a layer gets that layer written to a temporary PNG."""
        from PIL import Image

        kinds = {f.name: f.metadata["kind"] for f in method.params.fields()}
        for name, v in values.items():
            if kinds.get(name) == "path" and isinstance(v, str) and v.startswith(LAYER_PREFIX):
                wanted = v[len(LAYER_PREFIX):]
                layer = next((ly for ly in self.doc.layers if ly.name == wanted), None)
                if layer is None:
                    raise InvalidInput(f"There is no layer named “{wanted}” any more: choose another.")
                path = Path(self._temp.name) / f"layer-{layer.id}.png"
                Image.fromarray(self.doc.layer_pixels(layer), "RGBA").save(path)
                values[name] = str(path)
        return values

    def build_request(self, method_name: str, values: dict) -> tuple[EditRequest, dict]:
        if self.doc.is_empty:
            raise InvalidInput("Open an image first (File ▸ Open…).")
        layer = self.doc.active_layer
        if layer is None:
            raise InvalidInput("Select the layer to edit in the Layers panel.")
        method = get_method(method_name)
        values = dict(values)
        if method.uses_points:
            values["points"] = self.doc.point_pairs()
        values = self._resolve_layer_paths(method, values)
        params = method.params.from_dict(values)
        mask8 = self.doc.edit_mask_array()
        mask = (mask8.astype(np.float32) / 255.0) if mask8.max() > 0 else None
        pixels = self.doc.layer_pixels(layer)
        if pixels[..., 3].max() == 0:
            raise InvalidInput(f"Layer “{layer.name}” is empty: select a layer with a picture on it.")
        request = EditRequest(method.name, pixels, params, mask=mask)
        context = dict(layer_id=layer.id, method=method, mask=mask8 if mask is not None else None,
                       points=self.doc.point_pairs())
        return request, context

    def run(self, method_name: str, values: dict) -> Optional[EditJob]:
        try:
            request, context = self.build_request(method_name, values)
        except InvalidInput as e:
            self.show_error("Cannot run this edit", str(e))
            return None
        job = self.controller.submit(request, context)
        if job is not self.controller.running:
            self.status.emit(f"{context['method'].label} queued: it starts when the running edit ends.")
        return job

    # ---- results ---------------------------------------------------------------------------------
    def _on_busy(self, busy: bool) -> None:
        self.panel.set_busy(busy)
        if not busy:
            self.canvas.set_preview(None)

    def _on_progress(self, job: EditJob, ev) -> None:
        self.panel.show_progress(ev)
        if ev.preview is not None:
            self.canvas.set_preview(preview_qimage(ev.preview))

    def _on_result(self, job: EditJob, result) -> None:
        ctx = job.context
        method = ctx["method"]
        self.canvas.set_preview(None)
        self.result_counts[method.name] += 1
        name = f"{short_label(method.label)} {self.result_counts[method.name]}"
        rgba = np.asarray(result.image.convert("RGBA")).copy()
        metadata = {"method": method.name, "params": result.params, "model": result.model_id,
                    "seconds": round(result.seconds, 2)}
        if "handles" in result.info:
            metadata["handles"] = result.info["handles"]
        try:
            above = self.doc.layer_by_id(ctx["layer_id"])
        except (KeyError, ValueError, IndexError):
            above = None  # the source layer was deleted meanwhile: put the result on top
        stack = self.doc.undo_stack
        stack.beginMacro(f"{name}")
        try:
            self.doc.add_result_layer(rgba, name, metadata, above=above, mask=ctx["mask"])
            handles = result.info.get("handles")
            if handles and ctx["points"] and len(handles) == len(ctx["points"]):
                # The handles now sit where the drag took them; targets stay.
                moved = [(float(h[0]), float(h[1]), p[2], p[3]) for h, p in zip(handles, ctx["points"])]
                self.doc.set_point_pairs(moved, text="Move Handles to Result")
        finally:
            stack.endMacro()
        self.panel.show_done(f"Done: {name} ({result.seconds:.1f} s)")
        self.status.emit(f"{name} added ({result.seconds:.1f} s)")

    def _on_failed(self, job: EditJob, kind: str, message: str) -> None:
        self.canvas.set_preview(None)
        if kind == "cancelled":
            self.panel.show_done("Cancelled")
            self.status.emit("Edit cancelled; nothing was changed.")
            return
        self.panel.show_done("Failed")
        self.show_error({"invalid input": "Cannot run this edit", "model unavailable": "Model unavailable",
                         "out of memory": "Out of memory"}.get(kind, "Edit failed"), message)

    def shutdown(self) -> None:
        self.controller.shutdown()
        self._temp.cleanup()
