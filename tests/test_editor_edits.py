"""Running edits from the editor (pytest-qt, offscreen, the demo model)."""
from dataclasses import dataclass

import numpy as np
import pytest
from PySide6.QtCore import QPointF, QTimer

from core.engine import Engine
from core.params import MethodParams, param
from core.registry import all_methods, get_method
from core.runner import JobCancelled
from editor_app.main_window import MainWindow
from editor_app.settings import AppSettings
from resources import resource_path
from tools.bench import BENCH_PARAMS, TINY_OVERRIDES
from widgets import dialogs
from widgets.canvas import Tool
from widgets.param_form import ParamForm
from tests.editor_helpers import mouse

SAMPLE = resource_path("samples", "shapes.png")


@pytest.fixture(scope="module")
def engine():
    return Engine()  # shared by the tests here: the demo model loads once


@pytest.fixture
def win(qtbot, monkeypatch, engine, errors):
    monkeypatch.setattr(dialogs, "ask_save_changes", lambda parent, name: dialogs.DISCARD)
    w = MainWindow(AppSettings.in_memory(), probe_device=False, engine=engine)
    qtbot.addWidget(w)
    w.resize(1000, 700)
    w.show()
    assert w.open_path(str(SAMPLE))
    return w


def _fill(win, method_name, **extra):
    panel = win.edit_panel
    panel.select_method(method_name)
    form = panel.form
    names = {f.name for f in form.params_cls.fields()}
    values = {k: v for k, v in {**BENCH_PARAMS.get(method_name, {}), **TINY_OVERRIDES, **extra}.items()
              if k in names and k != "points"}
    form.set_values(values)
    return panel


@pytest.mark.parametrize("method", [m.name for m in all_methods()])
def test_every_method_runs_from_the_panel_and_undoes(qtbot, win, method, errors):
    doc = win.document
    if any(m.uses_points for m in all_methods() if m.name == method):
        doc.add_point_pair(128, 128, 160, 128)
    n_layers, source = len(doc.layers), doc.active_layer
    previews = []
    win.edit_session.controller.progress.connect(
        lambda job, ev: previews.append(ev) if ev.preview is not None else None)
    with qtbot.waitSignal(win.edit_session.controller.result_ready, timeout=120000):
        if get_method(method).diagnostic:  # an engine check: Tools ▸ Diagnostics, with its defaults
            win.actions_by_key[f"diagnostic_{method}"].trigger()
        else:
            _fill(win, method).run_button.click()
    assert errors == []
    assert len(doc.layers) == n_layers + 1
    result = doc.layers[doc.index_of(source) + 1]
    assert result.metadata["method"] == method and result.name.endswith(" 1")
    assert doc.layer_pixels(result).shape == (256, 256, 4)
    assert previews, "previews stream during the run"
    assert win.canvas.preview_item.image() is None  # replaced by the result layer
    doc.undo_stack.undo()
    assert len(doc.layers) == n_layers


def test_drag_result_carries_its_handles_where_they_ended(qtbot, win):
    doc = win.document
    doc.add_point_pair(128, 128, 160, 128)
    source = doc.active_layer
    panel = _fill(win, "drag")
    with qtbot.waitSignal(win.edit_session.controller.result_ready, timeout=120000) as blocker:
        panel.run_button.click()
    handles = blocker.args[1].info["handles"]
    result = doc.layers[doc.index_of(source) + 1]
    hx, hy, tx, ty = doc.point_pairs(result)[0]
    assert (hx, hy) == pytest.approx(tuple(handles[0])) and (tx, ty) == (160, 128)
    # The source stays the edit target with its own points: a second try starts from the original.
    assert doc.active_layer is source and doc.point_pairs() == [(128, 128, 160, 128)]
    doc.undo_stack.undo()  # one undo: the layer with its points
    assert result not in doc.layers and doc.point_pairs() == [(128, 128, 160, 128)]


def test_gui_stays_responsive_and_cancel_leaves_document_unchanged(qtbot, win):
    doc = win.document
    before_layers, before_undo = len(doc.layers), doc.undo_stack.count()
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(10)
    panel = _fill(win, "pnp", steps=400)
    seen = []
    ctl = win.edit_session.controller
    ctl.progress.connect(lambda job, ev: seen.append(ev))
    panel.run_button.click()
    qtbot.waitUntil(lambda: any(ev.stage == "invert" and ev.step >= 3 for ev in seen), timeout=60000)
    assert len(ticks) > 3  # the GUI thread kept handling events while the model ran
    with qtbot.waitSignal(ctl.failed, timeout=60000) as blocker:
        panel.cancel_button.click()
    assert blocker.args[1] == "cancelled"
    timer.stop()
    assert len(doc.layers) == before_layers and doc.undo_stack.count() == before_undo
    assert "Cancelled" in panel.stage_label.text()
    assert win.canvas.preview_item.image() is None  # the live preview is gone with the edit


def test_errors_surface_as_dialogs(qtbot, win, errors):
    panel = _fill(win, "pnp", prompt="")
    panel.run_button.click()  # refused before it reaches the worker
    assert errors and "prompt" in errors[-1][1].lower()
    panel = _fill(win, "diffuseit", prompt="", style_image="/no/such/style.png")
    with qtbot.waitSignal(win.edit_session.controller.failed, timeout=60000):
        panel.run_button.click()
    qtbot.waitUntil(lambda: len(errors) == 2)
    assert "style" in errors[-1][1].lower()
    assert len(win.document.layers) == 1


def test_second_run_is_queued_never_parallel(qtbot, win):
    ctl = win.edit_session.controller
    panel = _fill(win, "pnp", steps=8)
    panel.run_button.click()
    panel.run_button.click()
    assert ctl.busy and len(ctl.queue) == 1
    assert "queued" in panel.queue_label.text()
    qtbot.waitUntil(lambda: not ctl.busy, timeout=120000)
    assert len(win.document.layers) == 3  # both ran, one after the other


def test_form_is_generated_from_the_dataclass(qtbot):
    @dataclass(frozen=True, kw_only=True)
    class WithNewField(MethodParams):
        prompt: str = param("", "Target.", kind="text", required=True)
        sharpness: float = param(0.25, "A brand-new knob.", min=0.0, max=1.0)
        secret: int = param(3, "Tucked away.", advanced=True, min=0, max=9)

    form = ParamForm(WithNewField)
    qtbot.addWidget(form)
    assert form.editor("sharpness").value() == 0.25
    assert "brand-new" in form.editor("sharpness").toolTip()
    assert form.editor("secret").maximum() == 9 and form.advanced is not None
    form.set_values({"sharpness": 0.75, "prompt": "x"})
    assert WithNewField.from_dict(form.values()).sharpness == 0.75
    form.reset()
    assert form.values()["sharpness"] == 0.25


def test_first_launch_on_the_demo_explains_how_to_get_sd15(qtbot, monkeypatch, engine):
    w = MainWindow(AppSettings.in_memory(), probe_device=False, engine=engine, load_model=True)
    qtbot.addWidget(w)
    with qtbot.waitSignal(w.edit_session.controller.model_loaded, timeout=60000):
        pass
    assert "Getting Stable Diffusion" in w.statusBar().currentMessage()
    assert w.device_label.text().startswith("Model: demo")


# ---- the Drag entry: Instant and Precise, and live dragging -------------------------------------------

def test_drag_offers_instant_by_default_and_precise_one_click_away(qtbot, win):
    panel = win.edit_panel
    panel.select_method("quick-drag")
    assert panel.method_combo.currentText() == "Drag" and panel.drag_row.isVisibleTo(panel)
    assert panel.method.name == "quick-drag"
    panel.variant_buttons["drag"].click()
    assert panel.method.name == "drag" and panel.form is panel.forms["drag"]
    assert not panel.live_check.isEnabled()  # live editing is the instant drag's
    panel.variant_buttons["quick-drag"].click()
    assert panel.method.name == "quick-drag" and panel.live_check.isEnabled()
    # both read the same points from the canvas
    win.document.add_point_pair(100, 100, 120, 110)
    for name in ("quick-drag", "drag"):
        assert list(panel.forms[name].values()["points"]) == [(100.0, 100.0, 120.0, 110.0)]
    # on a few-step model Fast (LCM) is offered for Instant (it holds up with LCM), not for Precise
    panel.set_few_step_model(True)
    assert panel.fast_check.isVisibleTo(panel)
    panel.variant_buttons["drag"].click()
    assert not panel.fast_check.isVisibleTo(panel)
    panel.set_few_step_model(False)
    panel.select_method("pnp")
    assert not panel.drag_row.isVisibleTo(panel)


def test_live_drag_through_five_positions_lands_one_layer(qtbot, win, errors):
    doc, panel, canvas = win.document, win.edit_panel, win.canvas
    controller = win.edit_session.controller
    panel.select_method("quick-drag")
    panel.form.set_values({"steps": 12})  # 8 denoising steps: a run outlasts the move to the next position
    panel.live_check.setChecked(True)
    assert panel.live
    canvas.set_tool(Tool.POINTS)
    doc.add_point_pair(128, 128, 150, 128)
    n_layers = len(doc.layers)
    previews, superseded, results = {}, [], []
    controller.progress.connect(lambda job, ev: previews.setdefault(job.id, ev) if ev.preview is not None else None)
    controller.runner.subscribe(lambda ev: superseded.append(ev.job.id)
                                if isinstance(ev, JobCancelled) and ev.superseded else None)
    controller.result_ready.connect(lambda job, res: results.append((job.id, res)))
    live_jobs = []
    original_submit = controller.submit_live
    controller.submit_live = lambda req, key: live_jobs.append(original_submit(req, key)) or live_jobs[-1]

    positions = [(154, 130), (160, 133), (166, 136), (172, 138), (178, 140)]
    mouse(canvas, "press", canvas.map_from_image(QPointF(150, 128)))
    for k, (x, y) in enumerate(positions):
        mouse(canvas, "move", canvas.map_from_image(QPointF(x, y)))
        assert len(live_jobs) == k + 1  # every new position is a new job at once
        # each position's first preview reaches the canvas before the point moves on
        qtbot.waitUntil(lambda: live_jobs[-1].id in previews, timeout=60000)
        assert canvas.preview_item.image() is not None
    mouse(canvas, "release", canvas.map_from_image(QPointF(*positions[-1])))
    assert len(live_jobs) == 6  # five positions and the final run
    qtbot.waitUntil(lambda: not controller.busy, timeout=120000)

    assert errors == []
    assert len(doc.layers) == n_layers + 1  # exactly one layer, from the final run
    layer = doc.layers[-1]
    assert layer.metadata["method"] == "quick-drag"
    assert layer.metadata["params"]["points"][0][2:] == [178.0, 140.0]
    assert doc.point_pairs()[0][2:] == (178.0, 140.0)
    # live runs ended as previews or were superseded; none landed, none was reported as cancelled
    finished_live = {job_id for job_id, r in results if r.origin.get("live")}
    assert [job_id for job_id, r in results if not r.origin.get("live")] == [live_jobs[-1].id]
    assert all(j.id in superseded or j.id in finished_live for j in live_jobs[:5])
    assert superseded, "a new position stops the running edit"
    assert panel.stage_label.text().startswith("Done")
    doc.undo_stack.undo()  # the layer (with its own copy of the points) in one step
    assert len(doc.layers) == n_layers
    doc.undo_stack.undo()  # then the target's move
    assert doc.point_pairs() == [(128, 128, 150, 128)]
