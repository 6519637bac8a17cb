"""Before/after (hold backslash, or the split slider) changes only what is shown, never the document;
a result layer's tooltip lists its settings, and "Edit Again" puts them back into the Edit panel."""
import zipfile

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt

from core.registry import get_method
from editor_app.ora import write_ora
from editor_app.project_files import document_to_project
from widgets.compare_view import compared_layer
from tests.editor_helpers import open_window, write_png

W, H = 80, 60
BASE, RESULT = (250, 250, 250, 255), (20, 60, 220, 255)


@pytest.fixture
def win(qtbot, monkeypatch, tmp_path):
    w = open_window(qtbot, monkeypatch)
    assert w.open_path(write_png(tmp_path / "photo.png", np.full((H, W, 4), BASE, np.uint8)))
    return w


def add_result(doc, method="pnp", **values):
    params = get_method(method).params.from_dict(values).to_dict()
    base = doc.layers[0]
    layer = doc.add_result_layer(np.full((H, W, 4), RESULT, np.uint8), "Restyle 1",
                                 {"method": method, "params": params, "model": "demo", "seconds": 2.5}, above=base)
    doc.set_active_layer(base)  # the source stays the layer being edited
    return layer


def canvas_colour(win, x, y):
    c = win.canvas
    c.viewport().repaint()
    px = c.grab().toImage().pixelColor(c.map_from_image(QPointF(x, y)).toPoint())
    return px.red(), px.green(), px.blue()


def document_state(doc, tmp_path):
    """Everything that is the document: its layers, masks, selection, points, history, and the
    project file's entries (byte for byte, without the zip's timestamps)."""
    path = tmp_path / "state.ora"
    write_ora(path, document_to_project(doc))
    with zipfile.ZipFile(path) as zf:
        entries = {name: zf.read(name) for name in zf.namelist()}
    stack = doc.undo_stack
    return (entries, [(l.id, l.visible, l.opacity) for l in doc.layers], doc.active_layer.id,
            stack.count(), stack.index(), stack.isClean())


def test_holding_backslash_shows_what_is_below_and_changes_nothing(win, qtbot, tmp_path):
    d, c = win.document, win.canvas
    add_result(d, prompt="a blue picture")
    assert canvas_colour(win, 40, 30) == RESULT[:3]
    before = document_state(d, tmp_path)
    win.activateWindow()
    c.setFocus()
    qtbot.waitUntil(c.hasFocus)
    qtbot.keyPress(c, Qt.Key.Key_Backslash)
    assert win.compare.holding
    assert canvas_colour(win, 40, 30) == BASE[:3]
    qtbot.keyRelease(c, Qt.Key.Key_Backslash)
    assert not win.compare.holding
    assert canvas_colour(win, 40, 30) == RESULT[:3]
    assert document_state(d, tmp_path) == before


def test_split_slider_compares_left_and_right(win, tmp_path):
    d = win.document
    add_result(d, prompt="a blue picture")
    before = document_state(d, tmp_path)
    win.actions_by_key["compare_split"].trigger()
    assert win.compare.split and not win.compare.bar.isHidden()
    win.compare.bar.slider.setValue(500)
    assert canvas_colour(win, 20, 30) == BASE[:3] and canvas_colour(win, 60, 30) == RESULT[:3]
    win.compare.bar.slider.setValue(900)
    assert win.compare.split_position == pytest.approx(0.9)
    assert canvas_colour(win, 60, 30) == BASE[:3] and canvas_colour(win, 76, 30) == RESULT[:3]
    win.actions_by_key["compare_split"].trigger()
    assert not win.compare.split and win.compare.bar.isHidden()
    assert canvas_colour(win, 20, 30) == RESULT[:3]
    assert document_state(d, tmp_path) == before


def test_the_compared_layer(win):
    d = win.document
    base = d.layers[0]
    assert compared_layer(d) is base  # nothing above: the active layer itself
    result = add_result(d, prompt="x")
    assert compared_layer(d) is result  # the source is active: the result above it
    d.set_active_layer(result)
    assert compared_layer(d) is result
    d.set_layer_visible(result, False)
    d.set_active_layer(base)
    assert compared_layer(d) is base  # a hidden result is not what the picture shows


def test_closing_the_picture_ends_the_comparison(win):
    add_result(win.document, prompt="x")
    win.compare.hold(True)
    win.compare.set_split(True)
    win.document.close()
    assert not win.compare.holding and not win.compare.split and not win.compare.item.isVisible()


def test_the_result_tooltip_lists_its_settings(win):
    add_result(win.document, prompt="a blue picture", steps=12, seed=7)
    tip = win.layer_panel.list.item(0).toolTip()
    assert "Result of Restyle (Plug-and-Play)" in tip
    for words in ("a blue picture", "12", "7", "demo, 2.5 s", "Edit Again"):
        assert words in tip
    assert "Result of" not in win.layer_panel.list.item(1).toolTip()


def test_edit_again_fills_the_panel_with_the_stored_settings(win):
    d, panel = win.document, win.edit_panel
    result = add_result(d, prompt="a blue picture", steps=12, seed=7, guidance=3.5)
    panel.select_method("drag")
    d.set_active_layer(result)
    assert win.actions_by_key["edit_again"].isEnabled()
    win.actions_by_key["edit_again"].trigger()
    assert panel.method.name == "pnp"
    values = panel.form.values()
    assert (values["prompt"], values["steps"], values["seed"], values["guidance"]) == ("a blue picture", 12, 7, 3.5)
    assert d.active_layer is d.layers[0]  # the result's source is the layer to edit again
    assert d.undo_stack.count() == 1       # nothing in the document changed (only the result's own entry)


def test_edit_again_restores_a_drags_points(win):
    d, panel = win.document, win.edit_panel
    pairs = [(10.0, 12.0, 30.0, 20.0), (50.0, 40.0, 55.0, 45.0)]
    result = add_result(d, method="drag", points=pairs, drag_steps=9)
    d.set_point_pairs([(1, 1, 2, 2)])
    d.set_active_layer(result)
    win.actions_by_key["edit_again"].trigger()
    assert panel.method.name == "drag" and panel.form.values()["drag_steps"] == 9
    assert d.point_pairs() == pairs
    d.undo_stack.undo()  # restoring them was one undo entry
    assert d.point_pairs() == [(1, 1, 2, 2)]


def test_edit_again_finds_the_source_under_a_stack_of_results(win):
    d = win.document
    first = add_result(d, prompt="one")
    second = d.add_result_layer(np.full((H, W, 4), RESULT, np.uint8), "Restyle 2",
                                {"method": "pnp", "params": {"prompt": "two"}}, above=first)
    d.set_active_layer(second)
    win.actions_by_key["edit_again"].trigger()
    assert d.active_layer is d.layers[0] and win.edit_panel.form.values()["prompt"] == "two"


def test_edit_again_on_a_plain_layer_says_so(win):
    win.actions_by_key["edit_again"].setEnabled(True)
    win.actions_by_key["edit_again"].trigger()
    assert "not the result of an edit" in win.statusBar().currentMessage()
