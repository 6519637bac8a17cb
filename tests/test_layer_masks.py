"""Layer masks: add, paint with brush and eraser, invert, apply, remove, all undoable; shown as an
overlay; a result's mask refined after the fact; kept in the project file."""
import numpy as np
import pytest
from PySide6.QtCore import QPointF

from editor_app.document import Document
from editor_app.project_files import open_into, save_project
from widgets.canvas import Tool
from tests.editor_helpers import open_window, drag_image, write_png

W, H = 80, 60
RED = (255, 0, 0, 255)


@pytest.fixture
def win(qtbot, monkeypatch, tmp_path):
    w = open_window(qtbot, monkeypatch)
    white = np.full((H, W, 4), 255, np.uint8)
    assert w.open_path(write_png(tmp_path / "white.png", white))
    red = np.zeros((H, W, 4), np.uint8)
    red[...] = RED
    w.document.add_layer(red, "red")
    return w


def shown(win, x, y):
    c = win.canvas.composite_item.composite().pixelColor(x, y)
    return c.red(), c.green(), c.blue()


def test_paint_a_layer_mask_with_brush_and_eraser_and_undo(win):
    d, c, a = win.document, win.canvas, win.actions_by_key
    red = d.active_layer
    a["layer_mask_edit"].trigger()
    assert c.paint_layer_mask and c.tool == Tool.BRUSH and win.layer_mask_overlay.isVisible()
    assert not c.mask_item.isVisible()  # the selection's tint waits while the mask is painted
    c.set_brush(size=10, hardness=1.0)
    # the eraser hides: the layer had no mask, the stroke gives it one
    c.set_tool(Tool.ERASER)
    drag_image(c, [(10, 30), (40, 30)])
    assert red.mask is not None and red.mask[30, 25] == 0 and red.mask[5, 5] == 255
    assert shown(win, 25, 30) == (255, 255, 255) and shown(win, 60, 30) == (255, 0, 0)
    assert not d.edit_mask_array().any()  # the selection was not touched
    # the brush reveals again
    c.set_tool(Tool.BRUSH)
    drag_image(c, [(25, 30)])
    assert red.mask[30, 25] == 255 and red.mask[30, 12] == 0
    texts = [d.undo_stack.text(i) for i in range(d.undo_stack.count())]
    assert texts[-2:] == ["Hide with Layer Mask", "Reveal with Layer Mask"]
    d.undo_stack.undo()
    assert red.mask[30, 25] == 0 and shown(win, 25, 30) == (255, 255, 255)
    d.undo_stack.undo()
    assert red.mask is None and shown(win, 25, 30) == (255, 0, 0)
    d.undo_stack.redo()
    assert red.mask[30, 25] == 0
    # the overlay tints what the mask hides
    a["layer_mask_edit"].trigger()
    assert not c.paint_layer_mask and c.mask_item.isVisible() and not win.layer_mask_overlay.isVisible()
    a["layer_mask_show"].trigger()
    grab = c.grab().toImage()
    hidden = grab.pixelColor(c.map_from_image(QPointF(25, 30)).toPoint())
    kept = grab.pixelColor(c.map_from_image(QPointF(60, 30)).toPoint())
    assert hidden.blue() > hidden.red() and kept.red() > 200 and kept.blue() < 60


def test_a_live_mask_stroke_patches_only_what_it_touched(win):
    """While the mouse is down the canvas shows the stroke (recomposited only where it painted);
    the layer's revision moves once, when the stroke ends."""
    from tests.editor_helpers import mouse
    d, c = win.document, win.canvas
    red = d.active_layer
    win.actions_by_key["layer_mask_edit"].trigger()
    c.set_tool(Tool.ERASER)
    c.set_brush(size=10, hardness=1.0)
    assert shown(win, 20, 30) == (255, 0, 0)
    composite = c.composite_item.composite()
    revision = red.revision
    mouse(c, "press", c.map_from_image(QPointF(10, 30)))
    mouse(c, "move", c.map_from_image(QPointF(30, 30)))
    assert c.composite_item.composite() is composite  # patched in place, not rebuilt
    assert shown(win, 20, 30) == (255, 255, 255) and shown(win, 60, 30) == (255, 0, 0)
    assert red.revision == revision
    mouse(c, "release", c.map_from_image(QPointF(30, 30)))
    assert red.revision > revision and shown(win, 20, 30) == (255, 255, 255)


def test_brush_on_a_maskless_layer_changes_nothing_and_leaves_no_entry(win):
    d, c = win.document, win.canvas
    win.actions_by_key["layer_mask_edit"].trigger()
    drag_image(c, [(10, 10), (20, 20)])  # revealing what is all shown already
    assert d.active_layer.mask is None and d.undo_stack.count() == 1  # only "Add Layer"


def test_add_invert_apply_remove(win):
    d, a = win.document, win.actions_by_key
    red = d.active_layer
    a["layer_mask_add"].trigger()
    assert red.mask is not None and red.mask.min() == 255 and not a["layer_mask_add"].isEnabled()
    d.set_edit_mask(np.pad(np.full((20, 20), 255, np.uint8), ((10, H - 30), (10, W - 30))))
    a["mask_from_edit"].trigger()
    assert red.mask[15, 15] == 255 and red.mask[50, 50] == 0
    assert shown(win, 50, 50) == (255, 255, 255)
    a["layer_mask_invert"].trigger()
    assert red.mask[15, 15] == 0 and red.mask[50, 50] == 255
    assert shown(win, 15, 15) == (255, 255, 255) and shown(win, 50, 50) == (255, 0, 0)
    before_apply = shown(win, 15, 15), shown(win, 50, 50)
    a["layer_mask_apply"].trigger()
    assert red.mask is None and red.pixels[15, 15, 3] == 0 and red.pixels[50, 50, 3] == 255
    assert (shown(win, 15, 15), shown(win, 50, 50)) == before_apply  # the picture looks the same
    assert d.undo_stack.text(d.undo_stack.index() - 1) == "Apply Layer Mask"
    d.undo_stack.undo()  # one entry brings both the pixels and the mask back
    assert red.mask is not None and red.pixels[15, 15, 3] == 255 and red.mask[15, 15] == 0
    a["mask_remove"].trigger()
    assert red.mask is None and shown(win, 15, 15) == (255, 0, 0)
    d.undo_stack.undo()
    assert red.mask[15, 15] == 0
    texts = [d.undo_stack.text(i) for i in range(d.undo_stack.index())]
    assert texts[1:] == ["Add Layer Mask", "Set Edit Mask", "Layer Mask from Selection",
                         "Invert Layer Mask"]


def test_a_results_mask_can_be_refined_after_the_fact(win):
    d, c = win.document, win.canvas
    applied = np.zeros((H, W), np.uint8)
    applied[10:40, 10:40] = 255  # where the edit applied
    result = d.add_result_layer(np.full((H, W, 4), (0, 0, 255, 255), np.uint8), "Restyle 1",
                                {"method": "pnp", "params": {"prompt": "blue"}}, mask=applied)
    assert shown(win, 50, 20) == (255, 0, 0)
    d.set_active_layer(result)  # results land without taking the edit target from their source
    win.actions_by_key["layer_mask_edit"].trigger()
    c.set_brush(size=12, hardness=1.0)
    drag_image(c, [(45, 20), (60, 20)])  # reveal the edit further to the right
    assert result.mask[20, 50] == 255 and shown(win, 50, 20) == (0, 0, 255)
    assert np.array_equal(result.mask[:, :30], applied[:, :30])
    d.undo_stack.undo()
    assert np.array_equal(result.mask, applied)


def test_layer_masks_are_kept_in_the_project(win, tmp_path):
    d, c = win.document, win.canvas
    win.actions_by_key["layer_mask_edit"].trigger()
    c.set_tool(Tool.ERASER)
    c.set_brush(size=9, hardness=0.3)
    drag_image(c, [(20, 20), (60, 40)])
    mask = d.active_layer.mask.copy()
    assert 0 < np.count_nonzero((mask > 0) & (mask < 255))
    save_project(d, tmp_path / "m.ora")
    again = Document()
    open_into(again, tmp_path / "m.ora")
    assert np.array_equal(again.layers[1].mask, mask)
    assert np.array_equal(again.layers[1].pixels, d.layers[1].pixels)
    assert np.array_equal(again.composite_rgba(), d.composite_rgba())


def test_context_menu_lists_the_mask_and_result_actions(win):
    menu = win.layer_panel.context_menu()
    names = [act.objectName() for act in menu.actions() if not act.isSeparator()]
    for key in ("edit_again", "layer_mask_add", "mask_from_edit", "layer_mask_invert", "layer_mask_apply",
                "mask_remove", "layer_mask_edit", "select_alpha"):
        assert key in names
    menu.deleteLater()
