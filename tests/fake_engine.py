"""An engine stand-in for a LocalRunner, for tests of what the front ends do while work is in flight:
its edits and model loads wait on gates the test opens, so a test decides exactly when a job ends
(no sleeps, no timing). Its edit result is the negative of the input, so a test can tell it apart."""
from __future__ import annotations

import threading
from types import SimpleNamespace

import numpy as np
from PIL import Image

from core.events import Progress
from core.request import EditRequest, EditResult

MB = 2 ** 20


class FakeEngine:
    def __init__(self, downloading: bool = False, result_size=None, broken_sources=(), few_step_sources=()):
        self.models = SimpleNamespace(current=None)  # what LocalRunner reads for DeviceStatus
        self.edit_gate = threading.Event()
        self.edit_gate.set()            # edits finish at once unless a test closes the gate
        self.edit_started = threading.Event()
        self.load_gate = threading.Event()
        self.load_gate.set()
        self.load_started = threading.Event()
        self.load_finished = threading.Event()
        self.downloading = downloading  # report bytes while loading (and so honour cancel)
        self.result_size = result_size  # (w, h): return a result of another size (a broken engine)
        self.broken_sources = set(broken_sources)      # model sources whose load fails
        self.few_step_sources = set(few_step_sources)  # model sources that load as few-step models
        self.runs = 0
        self.requests = []  # every request run, in order

    def load_model(self, spec, progress=None):
        self.load_started.set()
        if spec.source in self.broken_sources:
            from core.errors import ModelUnavailable
            raise ModelUnavailable(f"No model at {spec.source}: check the path.")
        while not self.load_gate.wait(0.01):
            if self.downloading and progress is not None:
                progress(50 * MB, 200 * MB)  # raises Cancelled once the job is cancelled
        self.models.current = SimpleNamespace(device=SimpleNamespace(type="cpu"))
        self.load_finished.set()
        return SimpleNamespace(description=f"fake {spec.source} (Stable Diffusion 1.x) on cpu (fp32)", family="sd1",
                               few_step=spec.source in self.few_step_sources)

    def run(self, request: EditRequest, events=None, cancel=None) -> EditResult:
        self.edit_started.set()
        if events is not None:
            events(Progress("edit", 0, 1, preview=np.zeros((8, 8, 3), np.uint8)))
        while not self.edit_gate.wait(0.01):
            if cancel is not None:
                cancel.check()
        self.runs += 1
        self.requests.append(request)
        src = request.image
        rgb = 255 - np.asarray(src.rgb)
        out = Image.fromarray(np.dstack([rgb, src.alpha]) if src.alpha is not None else rgb)
        if self.result_size is not None:
            out = out.resize(self.result_size)
        return EditResult(out, request.method, "fake", request.params.to_dict(), 0.01, {"edit": 0.01},
                          origin=request.origin)

