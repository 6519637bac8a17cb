"""The Drag tool in the editor: Instant and Precise one click apart, and live dragging (pytest-qt,
offscreen, the demo model)."""
import pytest
from PySide6.QtCore import QPointF

from core.engine import Engine
from core.runner import JobCancelled
from editor_app.main_window import MainWindow
from editor_app.settings import AppSettings
from resources import resource_path
from tests.editor_helpers import mouse
from widgets import dialogs
from widgets.canvas import Tool

SAMPLE = resource_path("samples", "shapes.png")


@pytest.fixture(scope="module")
def engine():
    return Engine()


@pytest.fixture
def win(qtbot, monkeypatch, engine, errors):
    monkeypatch.setattr(dialogs, "ask_save_changes", lambda parent, name: dialogs.DISCARD)
    w = MainWindow(AppSettings.in_memory(), probe_device=False, engine=engine)
    qtbot.addWidget(w)
    w.resize(1000, 700)
    w.show()
    assert w.open_path(str(SAMPLE))
    return w


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
    panel.select_method("pnp")
    assert not panel.drag_row.isVisibleTo(panel)


def test_live_drag_through_five_positions_lands_one_layer(qtbot, win, errors):
    doc, panel, canvas = win.document, win.edit_panel, win.canvas
    controller = win.edit_session.controller
    panel.select_method("quick-drag")
    panel.form.set_values({"steps": 6})
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
    assert panel.stage_label.text().startswith("Done")
    doc.undo_stack.undo()  # the layer (and the handles it moved) in one step
    assert len(doc.layers) == n_layers
    doc.undo_stack.undo()  # then the target's move
    assert doc.point_pairs() == [(128, 128, 150, 128)]
