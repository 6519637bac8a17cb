"""Selection tools on a known picture, through the canvas as an artist uses them: each tool's mask,
the modifier keys, the Select menu's operations, the selection being the edit mask (brush, undo,
project file)."""
import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt

from editor_app import selection, selection_actions
from editor_app.project_files import open_into, save_project
from widgets import dialogs
from widgets.canvas import Tool
from widgets.selection_tools import SelectMode, outline_segments
from tests.editor_helpers import open_window, mouse, sample_rgba, write_png

SHIFT, ALT = Qt.KeyboardModifier.ShiftModifier, Qt.KeyboardModifier.AltModifier
W, H = 96, 64


@pytest.fixture
def win(qtbot, monkeypatch, tmp_path):
    w = open_window(qtbot, monkeypatch)
    assert w.open_path(write_png(tmp_path / "pic.png", sample_rgba(W, H)))
    return w


def drag(view, points, modifiers=Qt.KeyboardModifier.NoModifier):
    screen = [view.map_from_image(QPointF(*p)) for p in points]
    mouse(view, "press", screen[0], modifiers=modifiers)
    for s in screen[1:]:
        mouse(view, "move", s, modifiers=modifiers)
    mouse(view, "release", screen[-1], modifiers=modifiers)


def click(view, x, y, modifiers=Qt.KeyboardModifier.NoModifier):
    drag(view, [(x, y)], modifiers)


def rect_mask(x0, y0, x1, y1):
    m = np.zeros((H, W), np.uint8)
    m[y0:y1, x0:x1] = 255
    return m


def select_rect(win, a, b, modifiers=Qt.KeyboardModifier.NoModifier):
    win.canvas.set_tool(Tool.SELECT_RECT)
    drag(win.canvas, [a, ((a[0] + b[0]) / 2, (a[1] + b[1]) / 2), b], modifiers)


def inside_polygon(poly, xs, ys):
    """Even-odd rule for points (xs, ys), one vectorised pass per edge."""
    inside = np.zeros(xs.shape, bool)
    for (x0, y0), (x1, y1) in zip(poly, poly[1:] + poly[:1]):
        crosses = (y0 > ys) != (y1 > ys)
        with np.errstate(divide="ignore", invalid="ignore"):
            at = x0 + (ys - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (xs < at)
    return inside


def distance_to_polygon(poly, xs, ys):
    best = np.full(xs.shape, np.inf)
    for (x0, y0), (x1, y1) in zip(poly, poly[1:] + poly[:1]):
        dx, dy = x1 - x0, y1 - y0
        t = np.clip(((xs - x0) * dx + (ys - y0) * dy) / (dx * dx + dy * dy), 0, 1)
        best = np.minimum(best, np.hypot(xs - (x0 + t * dx), ys - (y0 + t * dy)))
    return best


def check_polygon_mask(mask, poly):
    """Exact wherever a pixel's centre is more than a pixel from the outline; between 0 and 255
    (antialiased) only on it."""
    ys, xs = np.mgrid[0:H, 0:W] + 0.5
    expected = inside_polygon(poly, xs, ys)
    clear = distance_to_polygon(poly, xs, ys) > 1.0
    assert np.array_equal(mask[clear] == 255, expected[clear])
    assert np.array_equal(mask[clear] == 0, ~expected[clear])
    assert clear.sum() > 0.8 * clear.size


POLY = [(10.0, 8.0), (80.0, 12.0), (60.0, 30.0), (85.0, 55.0), (20.0, 50.0), (35.0, 30.0)]


# ---- each tool -------------------------------------------------------------------------------------
def test_rectangle_select_is_exact_and_snaps_to_pixels(win):
    select_rect(win, (10.3, 5.4), (30.4, 20.2))
    assert np.array_equal(win.document.edit_mask_array(), rect_mask(10, 5, 30, 20))
    assert win.document.undo_stack.text(win.document.undo_stack.index() - 1) == "Rectangle Select"
    # dragged the other way round, the same rectangle
    select_rect(win, (30.4, 20.2), (10.3, 5.4))
    assert np.array_equal(win.document.edit_mask_array(), rect_mask(10, 5, 30, 20))


def test_ellipse_select_area_within_two_percent(win):
    win.canvas.set_tool(Tool.SELECT_ELLIPSE)
    drag(win.canvas, [(8, 6), (40, 30), (88, 58)])
    mask = win.document.edit_mask_array().astype(float) / 255
    expected = np.pi * 40 * 26
    assert abs(mask.sum() - expected) / expected < 0.02
    assert mask[32, 48] == 1.0 and mask[7, 9] == 0.0 and mask[32, 89] == 0.0  # centre, corner, past the end
    edge = mask[32, 8]  # on the outline: partly covered (antialiased)
    assert 0.0 < edge < 1.0 or edge in (0.0, 1.0)


def test_magic_wand_on_a_two_colour_picture_is_exact(win, tmp_path):
    pic = np.zeros((H, W, 4), np.uint8)
    pic[...] = (200, 30, 30, 255)
    blob = np.zeros((H, W), bool)
    yy, xx = np.mgrid[0:H, 0:W]
    blob |= (xx - 25) ** 2 + (yy - 30) ** 2 <= 15 ** 2   # a disc…
    other = (xx >= 60) & (xx < 90) & (yy >= 10) & (yy < 50)  # …and, apart from it, a rectangle
    pic[blob | other] = (30, 40, 210, 255)
    assert win.open_path(write_png(tmp_path / "two.png", pic))
    d = win.document
    win.actions_by_key["tool_wand"].trigger()
    assert win.canvas.tool == Tool.WAND and not win.wand_options.isHidden()
    click(win.canvas, 25.5, 30.5)
    assert np.array_equal(d.edit_mask_array(), blob.astype(np.uint8) * 255)
    win.wand_contiguous.setChecked(False)  # every pixel of that colour, connected or not
    click(win.canvas, 25.5, 30.5)
    assert np.array_equal(d.edit_mask_array(), (blob | other).astype(np.uint8) * 255)
    click(win.canvas, 2, 2)  # the background
    assert np.array_equal(d.edit_mask_array(), (~(blob | other)).astype(np.uint8) * 255)


def test_wand_tolerance_and_sampling():
    pic = np.zeros((20, 30, 4), np.uint8)
    pic[..., 3] = 255
    pic[:, :10, :3] = 100
    pic[:, 10:20, :3] = 120   # 20 away from the left part
    pic[:, 20:, :3] = 200
    assert selection.wand(pic, 2, 2, 10).sum() // 255 == 200
    assert selection.wand(pic, 2, 2, 20).sum() // 255 == 400
    assert selection.wand(pic, 2, 2, 255).sum() // 255 == 600
    assert not selection.wand(pic, -1, 2, 255).any()  # a click beside the picture selects nothing
    # fully transparent pixels are one colour, whatever RGB they hold
    clear = np.random.default_rng(0).integers(0, 256, (10, 10, 4), dtype=np.uint8)
    clear[..., 3] = 0
    assert selection.wand(clear, 3, 3, 0).min() == 255


def test_contiguous_wand_follows_a_winding_region_beyond_its_first_window():
    # A spiral-like comb wider than the wand's first window: only connected teeth count.
    h, w = 300, 700
    b = np.zeros((h, w), bool)
    b[0:10, :] = True                 # the spine
    b[:, 0:700:20] = True             # teeth hanging from it
    b[295:, 6:15] = True              # a patch touching no tooth: not connected
    pic = np.zeros((h, w, 4), np.uint8)
    pic[..., 3] = 255
    pic[b] = (255, 255, 255, 255)
    got = selection.wand(pic, w - 1, 0, 0) == 255
    expected = np.zeros_like(b)
    expected[0:10, :] = True
    expected[:, 0:700:20] = True
    assert np.array_equal(got, expected)


def test_lasso_follows_the_drawn_outline(win):
    win.actions_by_key["cycle_lasso"].trigger()
    assert win.canvas.tool == Tool.LASSO
    outline = []
    for (x0, y0), (x1, y1) in zip(POLY, POLY[1:] + POLY[:1]):
        outline += [(x0 + (x1 - x0) * t, y0 + (y1 - y0) * t) for t in np.linspace(0, 1, 12, endpoint=False)]
    drag(win.canvas, outline + [POLY[0]])
    check_polygon_mask(win.document.edit_mask_array(), POLY)


@pytest.mark.parametrize("close", ["enter", "double-click", "first-corner"])
def test_polygon_lasso_closes_three_ways(win, close, qtbot):
    c = win.canvas
    win.actions_by_key["cycle_lasso"].trigger()
    win.actions_by_key["cycle_lasso"].trigger()
    assert c.tool == Tool.POLYGON
    for x, y in POLY:
        click(c, x, y)
    assert c.selection_tool.active and not win.document.edit_mask_array().any()
    assert len(c.selection_tool.vertices()) == len(POLY)
    if close == "enter":
        c.setFocus()
        qtbot.keyClick(c, Qt.Key.Key_Return)
    elif close == "double-click":
        from PySide6.QtCore import QEvent
        from PySide6.QtGui import QMouseEvent
        from PySide6.QtWidgets import QApplication
        p = c.map_from_image(QPointF(*POLY[-1]))
        ev = QMouseEvent(QEvent.Type.MouseButtonDblClick, p, c.viewport().mapToGlobal(p), Qt.MouseButton.LeftButton,
                         Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
        QApplication.sendEvent(c.viewport(), ev)
    else:
        click(c, POLY[0][0] + 0.2, POLY[0][1] - 0.2)
    assert not c.selection_tool.active
    check_polygon_mask(win.document.edit_mask_array(), POLY)


def test_polygon_backspace_and_escape(win, qtbot):
    c = win.canvas
    c.set_tool(Tool.POLYGON)
    for x, y in POLY[:4]:
        click(c, x, y)
    win.activateWindow()
    c.setFocus()
    qtbot.waitUntil(c.hasFocus)
    qtbot.keyClick(c, Qt.Key.Key_Backspace)
    assert len(c.selection_tool.vertices()) == 3
    qtbot.keyClick(c, Qt.Key.Key_Escape)
    assert not c.selection_tool.active and not win.document.edit_mask_array().any()
    assert win.document.undo_stack.count() == 0


def test_select_from_layer_alpha(win):
    d = win.document
    sticker = np.zeros((H, W, 4), np.uint8)
    sticker[10:30, 40:70] = (255, 255, 255, 255)
    sticker[30:40, 40:70] = (255, 255, 255, 128)
    d.add_layer(sticker, "sticker")
    mask = np.zeros((H, W), np.uint8)
    mask[:, 55:] = 255
    d.set_layer_mask(d.active_layer, mask)
    win.actions_by_key["select_alpha"].trigger()
    expected = np.zeros((H, W), np.uint8)
    expected[10:30, 55:70] = 255
    expected[30:40, 55:70] = 128
    assert np.array_equal(d.edit_mask_array(), expected)


# ---- combining ---------------------------------------------------------------------------------------
def test_modifiers_add_subtract_intersect(win):
    d = win.document
    a = rect_mask(10, 10, 50, 40)
    b = rect_mask(30, 20, 70, 60)
    select_rect(win, (10, 10), (50, 40))
    select_rect(win, (30, 20), (70, 60), SHIFT)
    assert np.array_equal(d.edit_mask_array(), np.maximum(a, b))
    select_rect(win, (10, 10), (50, 40))
    select_rect(win, (30, 20), (70, 60), ALT)
    assert np.array_equal(d.edit_mask_array(), np.where(b > 0, 0, a))
    select_rect(win, (10, 10), (50, 40))
    select_rect(win, (30, 20), (70, 60), SHIFT | ALT)
    assert np.array_equal(d.edit_mask_array(), np.minimum(a, b))
    texts = [d.undo_stack.text(i) for i in range(d.undo_stack.count())]
    assert texts[1:6:2] == ["Rectangle Select (Add)", "Rectangle Select (Subtract)", "Rectangle Select (Intersect)"]
    # the tool options' mode applies without modifiers
    win.select_mode_combo.setCurrentIndex(win.select_mode_combo.findData(SelectMode.ADD))
    select_rect(win, (80, 2), (90, 8))
    assert d.edit_mask_array()[5, 85] == 255 and d.edit_mask_array()[25, 35] == 255


def test_a_click_without_a_drag_deselects(win):
    select_rect(win, (10, 10), (50, 40))
    click(win.canvas, 60, 50)
    assert not win.document.edit_mask_array().any()
    assert win.document.undo_stack.text(win.document.undo_stack.index() - 1) == "Deselect"
    click(win.canvas, 60, 50)  # nothing left to drop: no empty history entry
    assert win.document.undo_stack.count() == 2


def test_combine_soft_values():
    old = np.array([[0, 100, 255, 200]], np.uint8)
    new = np.array([[50, 200, 0, 255]], np.uint8)
    assert selection.combine(old, new, SelectMode.REPLACE).tolist() == [[50, 200, 0, 255]]
    assert selection.combine(old, new, SelectMode.ADD).tolist() == [[50, 200, 255, 255]]
    assert selection.combine(old, new, SelectMode.SUBTRACT).tolist() == [[0, 55, 255, 0]]
    assert selection.combine(old, new, SelectMode.INTERSECT).tolist() == [[0, 100, 0, 200]]


# ---- operations ----------------------------------------------------------------------------------------
def test_select_all_deselect_invert_shortcuts_and_undo(win):
    d, a = win.document, win.actions_by_key
    assert a["mask_fill"].shortcut().toString() == "Ctrl+A"
    assert a["mask_clear"].shortcut().toString() == "Ctrl+Shift+A"
    assert a["mask_invert"].shortcut().toString() == "Ctrl+I"
    assert a["cycle_marquee"].shortcut().toString() == "M" and a["cycle_lasso"].shortcut().toString() == "L"
    assert a["tool_wand"].shortcut().toString() == "W"
    a["cycle_marquee"].trigger()
    assert win.canvas.tool == Tool.SELECT_RECT and a["tool_select_rect"].isChecked()
    a["cycle_marquee"].trigger()
    assert win.canvas.tool == Tool.SELECT_ELLIPSE and a["tool_select_ellipse"].isChecked()
    select_rect(win, (10, 10), (50, 40))
    a["mask_invert"].trigger()
    assert np.array_equal(d.edit_mask_array(), 255 - rect_mask(10, 10, 50, 40))
    a["mask_fill"].trigger()
    assert d.edit_mask_array().min() == 255
    a["mask_clear"].trigger()
    assert not d.edit_mask_array().any()
    texts = [d.undo_stack.text(i) for i in range(d.undo_stack.count())]
    assert texts == ["Rectangle Select", "Invert Selection", "Select All", "Deselect"]
    for expected in (255, 255 - rect_mask(10, 10, 50, 40), rect_mask(10, 10, 50, 40)):
        d.undo_stack.undo()
        assert np.array_equal(d.edit_mask_array(), np.broadcast_to(np.uint8(expected), (H, W)))


def test_grow_and_shrink_move_the_outline_by_whole_pixels(win, monkeypatch):
    d = win.document
    select_rect(win, (30, 20), (60, 44))
    monkeypatch.setattr(dialogs, "ask_number", lambda *args: 5)
    win.actions_by_key["select_grow"].trigger()
    grown = d.edit_mask_array()
    assert selection.bounding_box(grown) == (25, 15, 40, 34)
    assert grown[32, 25] == 255 and grown[15, 45] == 255  # the middles of the sides moved by 5
    assert grown[15, 25] == 0 and grown[17, 27] > 0      # the corners are round, as a disc grows
    d.undo_stack.undo()
    win.actions_by_key["select_shrink"].trigger()
    assert np.array_equal(d.edit_mask_array(), rect_mask(35, 25, 55, 39))
    # the picture's border counts as unselected: select all, shrink 3 leaves a 3-pixel frame
    win.actions_by_key["mask_fill"].trigger()
    selection_actions.apply_operation(win, "shrink", 3)
    assert np.array_equal(d.edit_mask_array(), rect_mask(3, 3, W - 3, H - 3))


def test_feather_softens_the_edge_over_the_radius(win):
    d = win.document
    select_rect(win, (20, 10), (76, 54))
    hard = d.edit_mask_array()
    selection_actions.apply_operation(win, "feather", 9)
    soft = d.edit_mask_array().astype(int)
    row = soft[32]
    assert row[48] == 255 and row[5] == 0            # far inside, far outside: as they were
    assert 100 < row[19] < 155 and 100 < row[20] < 155  # the edge is half selected
    assert np.all(np.diff(row[8:32]) >= 0)            # a ramp, rising into the selection…
    assert row[14] > 0 and row[25] < 255              # …spread over about the radius each side
    assert abs(soft.sum() - hard.astype(int).sum()) / hard.astype(int).sum() < 0.02  # nothing gained or lost
    assert d.undo_stack.text(d.undo_stack.index() - 1) == "Feather Selection 9 px"


def test_operations_without_a_selection_change_nothing(win):
    selection_actions.apply_operation(win, "grow", 4)
    assert win.document.undo_stack.count() == 0 and not win.document.edit_mask_array().any()


# ---- the selection is the edit mask ---------------------------------------------------------------------
def test_brush_and_eraser_work_on_the_selection(win):
    d, c = win.document, win.canvas
    select_rect(win, (10, 10), (40, 40))
    c.set_tool(Tool.BRUSH)
    c.set_brush(size=6, hardness=1.0)
    drag(c, [(60, 25), (80, 25)])
    m = d.edit_mask_array()
    assert m[25, 20] == 255 and m[25, 70] == 255 and m[25, 50] == 0
    c.set_tool(Tool.ERASER)
    drag(c, [(25, 25)])
    assert d.edit_mask_array()[25, 25] == 0 and d.edit_mask_array()[15, 15] == 255
    texts = [d.undo_stack.text(i) for i in range(d.undo_stack.count())]
    assert texts == ["Rectangle Select", "Brush Mask Stroke", "Erase Mask Stroke"]
    d.undo_stack.undo()
    d.undo_stack.undo()
    assert np.array_equal(d.edit_mask_array(), rect_mask(10, 10, 40, 40))
    # and an edit request carries it as its mask
    values = {**win.edit_panel.forms["pnp"].values(), "prompt": "a statue"}
    request = win.edit_session.build_request("pnp", values)
    assert np.array_equal(request.mask > 0.5, rect_mask(10, 10, 40, 40) > 0)


def test_a_selection_undo_entry_holds_only_what_changed(win):
    select_rect(win, (10, 10), (20, 16))
    cmd = win.document.undo_stack.command(0)
    assert cmd.rect == (10, 10, 10, 6) and cmd.before.shape == (6, 10)


def test_selection_is_saved_and_reopened(win, tmp_path):
    d = win.document
    win.canvas.set_tool(Tool.SELECT_ELLIPSE)
    drag(win.canvas, [(8, 6), (88, 58)])
    selection_actions.apply_operation(win, "feather", 4)
    saved = d.edit_mask_array()
    assert 0 < np.count_nonzero((saved > 0) & (saved < 255))  # soft values, kept exactly
    save_project(d, tmp_path / "sel.ora")
    d.close()
    open_into(d, tmp_path / "sel.ora")
    assert np.array_equal(d.edit_mask_array(), saved)
    assert win.canvas.ants.segment_count() > 0 and d.undo_stack.count() == 0


def test_marching_ants_follow_the_selection(win, qtbot):
    ants = win.canvas.ants
    assert ants.segment_count() == 0
    select_rect(win, (10, 10), (40, 30))
    qtbot.waitUntil(lambda: ants.segment_count() == 4, timeout=2000)  # a rectangle's outline: four segments
    win.actions_by_key["mask_clear"].trigger()
    qtbot.waitUntil(lambda: ants.segment_count() == 0, timeout=2000)
    assert not ants._march.isActive()  # nothing to march: no timer running


def test_outline_segments_of_a_shape_with_a_hole():
    b = np.zeros((10, 10), bool)
    b[2:8, 2:8] = True
    b[4:6, 4:6] = False
    segs = outline_segments(b)
    assert len(segs) == 8
    length = np.abs(segs[:, 2] - segs[:, 0]).sum() + np.abs(segs[:, 3] - segs[:, 1]).sum()
    assert length == 4 * 6 + 4 * 2
