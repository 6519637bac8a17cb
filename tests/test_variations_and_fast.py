"""Run ×4 (issue 25, item 11): the same edit with four seeds lands as a group of layers to pick from;
and the Edit panel's Fast (LCM) choice on a few-step model (issue 21, editor side). A fake engine on
the real LocalRunner records every request it ran."""
import zipfile

import numpy as np
import pytest

from core import ModelSpec
from tests.editor_helpers import open_window, sample_rgba, write_png
from tests.fake_engine import FakeEngine
from widgets import fast_mode


@pytest.fixture
def win(qtbot, tmp_path, errors, monkeypatch):
    w = open_window(qtbot, monkeypatch, engine=FakeEngine(few_step_sources={"lcm/model"}))
    assert w.open_path(write_png(tmp_path / "photo.png", sample_rgba(64, 48)))
    yield w
    w.edit_session.controller.runner.shutdown(wait=True, timeout=30)


def fill(win, method="pnp", **values):
    panel = win.edit_panel
    panel.select_method(method)
    panel.form.set_values({"prompt": "a dog", "steps": 3, **values})
    return panel


def run_variations(qtbot, win, **values):
    panel = fill(win, **values)
    ctl = win.edit_session.controller
    panel.variations_button.click()  # "Run ×4"
    qtbot.waitUntil(lambda: not ctl.busy, timeout=30000)


def test_run_x4_lands_four_seeds_as_a_group_to_pick_from(qtbot, win):
    doc, engine = win.document, win.engine
    source = doc.active_layer
    run_variations(qtbot, win, seed=7)
    assert [r.params.seed for r in engine.requests] == [7, 8, 9, 10]  # none replaced another
    assert [l.name for l in doc.layers] == ["photo"] + [f"Restyle 1 · seed {s}" for s in (7, 8, 9, 10)]
    group = doc.layers[1:]
    assert {l.group for l in group} == {"Restyle 1"} and source.group == ""
    assert [l.visible for l in group] == [True, False, False, False]  # one shown at a time
    assert doc.active_layer is source

    # ticking another one's box in the Layers panel picks it
    panel = win.layer_panel
    row, item = panel._item_for(group[2].id)
    item.setCheckState(item.checkState().Checked)
    assert [l.visible for l in group] == [False, False, True, False]
    assert doc.undo_stack.text(doc.undo_stack.index() - 1) == "Pick Variation"
    doc.undo_stack.undo()
    assert [l.visible for l in group] == [True, False, False, False]
    doc.undo_stack.redo()

    # Layer ▸ Keep Only This Variation
    doc.set_active_layer(group[2])
    keep = win.actions_by_key["variation_keep"]
    assert keep.isEnabled()
    keep.trigger()
    assert [l.name for l in doc.layers] == ["photo", "Restyle 1 · seed 9"]
    assert doc.layers[1].group == "" and doc.layers[1].visible and not keep.isEnabled()
    doc.undo_stack.undo()
    assert len(doc.layers) == 5


def test_a_plain_run_does_not_replace_waiting_variations(qtbot, win):
    doc, engine = win.document, win.engine
    engine.edit_gate.clear()
    panel = fill(win, seed=0)
    panel.variations_button.click()
    assert engine.edit_started.wait(30)
    panel.run_button.click()  # the same method again: it used to replace the waiting ones
    engine.edit_gate.set()
    qtbot.waitUntil(lambda: not win.edit_session.controller.busy, timeout=30000)
    assert [r.params.seed for r in engine.requests] == [0, 1, 2, 3, 0]
    assert len(doc.layers) == 6


def test_a_group_is_a_layer_group_in_the_project(qtbot, win, tmp_path):
    doc = win.document
    run_variations(qtbot, win)
    path = tmp_path / "v.ora"
    assert win.save_to(path)
    with zipfile.ZipFile(path) as zf:
        xml = zf.read("stack.xml").decode()
    assert xml.count('<stack name="Restyle 1"') == 1  # what Krita and GIMP show as a group
    before = [(l.name, l.group, l.visible) for l in doc.layers]
    doc.close()
    assert win.open_path(path)
    assert [(l.name, l.group, l.visible) for l in doc.layers] == before


# ---- Fast (LCM) --------------------------------------------------------------------------------

def load(qtbot, win, source):
    ctl = win.edit_session.controller
    with qtbot.waitSignal(ctl.model_loaded, timeout=30000):
        ctl.load_model(ModelSpec(source))


def test_fast_is_offered_only_on_a_few_step_model_for_methods_that_hold_up(qtbot, win):
    panel = win.edit_panel
    load(qtbot, win, "plain/model")
    panel.select_method("pnp")
    assert not panel.fast_check.isVisibleTo(panel)
    load(qtbot, win, "lcm/model")
    assert panel.fast_check.isVisibleTo(panel)
    panel.select_method("drag")  # drag's samplers do not include lcm
    assert not panel.fast_check.isVisibleTo(panel)


def test_fast_runs_the_lcm_sampler_at_four_steps_and_low_guidance_and_says_so(qtbot, win):
    panel, engine = win.edit_panel, win.engine
    load(qtbot, win, "lcm/model")
    fill(win, guidance=7.5, steps=50)
    panel.fast_check.setChecked(True)
    assert panel.fast_note.isVisibleTo(panel)
    assert "4 steps" in panel.fast_note.text() and "guidance 1.5" in panel.fast_note.text()
    assert not panel.form.editor("steps").isEnabled() and not panel.form.editor("guidance").isEnabled()
    assert panel.form.editor("prompt").isEnabled()
    with qtbot.waitSignal(win.edit_session.controller.result_ready, timeout=30000):
        panel.run_button.click()
    request = engine.requests[-1]
    assert request.sampler == "lcm" and request.params.steps == fast_mode.STEPS == 4
    assert request.params.guidance == fast_mode.GUIDANCE == 1.5
    assert win.document.layers[-1].metadata["sampler"] == "lcm"
    panel.fast_check.setChecked(False)
    assert panel.form.editor("steps").isEnabled()
    with qtbot.waitSignal(win.edit_session.controller.result_ready, timeout=30000):
        panel.run_button.click()
    assert engine.requests[-1].sampler == "ddim" and engine.requests[-1].params.steps == 50


def test_fast_does_not_stick_when_the_model_is_not_a_few_step_one(qtbot, win):
    panel, engine = win.edit_panel, win.engine
    load(qtbot, win, "lcm/model")
    fill(win)
    panel.fast_check.setChecked(True)
    load(qtbot, win, "plain/model")
    assert not panel.fast
    with qtbot.waitSignal(win.edit_session.controller.result_ready, timeout=30000):
        panel.run_button.click()
    assert engine.requests[-1].sampler == "ddim"


def test_fast_on_a_method_without_a_guidance_field_changes_only_the_steps():
    from core.registry import get_method

    assert fast_mode.changes(get_method("reconstruct")) == {"steps": 4}
    assert "guidance" not in fast_mode.note(get_method("reconstruct"))
    assert np.isclose(fast_mode.changes(get_method("pnp"))["guidance"], 1.5)
