"""The editor window as an artist uses it, driven with synthetic mouse and keyboard input."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent, QImage

from editor_app.main_window import MainWindow
from editor_app.settings import AppSettings
from widgets import dialogs
from widgets.canvas import Tool
from tests.editor_helpers import click_image, drag_image, mouse, open_window, sample_rgba, write_png

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def window(qtbot, monkeypatch):
    return open_window(qtbot, monkeypatch)


def undo_redo_round(doc, check_after, check_before):
    """Undo must bring back the previous state and redo the new one."""
    check_after()
    doc.undo_stack.undo()
    check_before()
    doc.undo_stack.redo()
    check_after()


def test_full_session_round_trips_through_ora(window, tmp_path, errors):
    doc, canvas = window.document, window.canvas
    assert window.open_path(write_png(tmp_path / "photo.png", sample_rgba(80, 60)))
    assert doc.size() == (80, 60) and window.size_label.text() == "80 × 60 px"

    # add a layer
    window.add_image_layers([write_png(tmp_path / "sticker.png", sample_rgba(20, 20, seed=1))])
    assert [l.name for l in doc.layers] == ["photo", "sticker"]
    undo_redo_round(doc, lambda: len(doc.layers) == 2 or pytest.fail(), lambda: len(doc.layers) == 1 or pytest.fail())

    # paint the edit mask with the brush, then erase part of it
    window.actions_by_key["tool_brush"].trigger()
    canvas.set_brush(size=8, hardness=1.0)
    drag_image(canvas, [(10, 30), (30, 30), (50, 30)])
    painted = doc.edit_mask_array()
    assert painted[30, 10] == 255 and painted[30, 50] == 255 and painted[30, 30] == 255
    assert painted[5, 5] == 0 and painted[50, 70] == 0
    undo_redo_round(doc, lambda: doc.edit_mask_array()[30, 30] == 255 or pytest.fail(),
                    lambda: not doc.edit_mask_array().any() or pytest.fail())
    window.actions_by_key["tool_eraser"].trigger()
    drag_image(canvas, [(30, 30)])
    assert doc.edit_mask_array()[30, 30] == 0 and doc.edit_mask_array()[30, 10] == 255
    undo_redo_round(doc, lambda: doc.edit_mask_array()[30, 30] == 0 or pytest.fail(),
                    lambda: doc.edit_mask_array()[30, 30] == 255 or pytest.fail())

    # add a pair of points: click the handle, then its target
    window.actions_by_key["tool_points"].trigger()
    assert canvas.tool == Tool.POINTS
    click_image(canvas, 20, 15)
    assert doc.point_pairs() == [] and canvas.pending_handle is not None
    click_image(canvas, 60, 45)
    (hx, hy, tx, ty), = doc.point_pairs()
    assert abs(hx - 20) < 0.5 and abs(hy - 15) < 0.5 and abs(tx - 60) < 0.5 and abs(ty - 45) < 0.5
    undo_redo_round(doc, lambda: len(doc.point_pairs()) == 1 or pytest.fail(),
                    lambda: doc.point_pairs() == [] or pytest.fail())
    click_image(canvas, 70, 10)
    click_image(canvas, 5, 50)
    assert len(doc.point_pairs()) == 2
    handle, target, arrow = canvas.point_items()[1]
    assert handle.number == target.number == 2

    # drag the first target to a new place
    before = doc.point_pairs()
    drag_image(canvas, [(60, 45), (55, 40), (50, 35)])
    moved = doc.point_pairs()
    assert abs(moved[0][2] - 50) < 0.5 and abs(moved[0][3] - 35) < 0.5 and moved[0][:2] == before[0][:2]
    assert moved[1] == before[1]
    undo_redo_round(doc, lambda: doc.point_pairs() == moved or pytest.fail(),
                    lambda: doc.point_pairs() == before or pytest.fail())

    # select the second pair and delete it with the Delete key
    click_image(canvas, 70, 10)
    assert canvas.selected_pairs() == {1} and canvas.point_items()[1][0].selected
    assert window.actions_by_key["points_delete"].isEnabled()
    window.actions_by_key["points_delete"].trigger()
    assert doc.point_pairs() == moved[:1]
    undo_redo_round(doc, lambda: doc.point_pairs() == moved[:1] or pytest.fail(),
                    lambda: doc.point_pairs() == moved or pytest.fail())

    # every change is in the history panel
    assert window.history_view.stack() is doc.undo_stack
    texts = [doc.undo_stack.text(i) for i in range(doc.undo_stack.count())]
    assert texts[:3] == ["Add Layer “sticker”", "Brush Mask Stroke", "Erase Mask Stroke"]
    assert "Move Target Point" in texts and texts[-1] == "Delete Point Pair"
    assert window.isWindowModified()

    # save and reopen: identical layers, mask and points
    project = tmp_path / "session.ora"
    assert window.save_to(project)
    assert not window.isWindowModified() and errors == []
    saved = ([(l.name, l.opacity, l.visible, l.pixels.copy()) for l in doc.layers],
             doc.edit_mask_array(), doc.point_pairs())
    doc.close()
    assert doc.is_empty
    assert window.open_path(project)
    assert [(l.name, l.opacity, l.visible) for l in doc.layers] == [s[:3] for s in saved[0]]
    assert all(np.array_equal(l.pixels, s[3]) for l, s in zip(doc.layers, saved[0]))
    assert np.array_equal(doc.edit_mask_array(), saved[1])
    assert doc.point_pairs() == saved[2]
    assert len(canvas.point_items()) == 1
    assert window.settings.recent_files()[0] == str(project.resolve())


def test_zoom_keeps_points_on_their_image_pixel(window, tmp_path):
    doc, canvas = window.document, window.canvas
    window.open_path(write_png(tmp_path / "a.png", sample_rgba(120, 90)))
    doc.add_point_pair(30.5, 40.25, 100, 12)
    handle, target, arrow = canvas.point_items()[0]
    viewport_rect = canvas.viewport().rect()
    for zoom, anchor in ((4.0, None), (0.5, QPointF(10, 10)), (9.0, canvas.map_from_image(QPointF(30.5, 40.25)))):
        canvas.set_zoom(zoom, anchor)
        assert canvas.zoom == pytest.approx(zoom)
        for dot, (x, y) in ((handle, (30.5, 40.25)), (target, (100, 12))):
            drawn = dot.deviceTransform(canvas.viewportTransform()).map(QPointF(0, 0))
            expected = canvas.map_from_image(QPointF(x, y))
            assert (drawn - expected).manhattanLength() < 1e-6
            back = canvas.map_to_image(drawn)
            assert abs(back.x() - x) < 1e-6 and abs(back.y() - y) < 1e-6
    # zoomed in 9x, a drag from where the dot is drawn moves exactly that point
    assert viewport_rect.contains(canvas.map_from_image(QPointF(30.5, 40.25)).toPoint())
    window.actions_by_key["tool_points"].trigger()
    drag_image(canvas, [(30.5, 40.25), (32.0, 41.0)])
    hx, hy, tx, ty = doc.point_pairs()[0]
    assert abs(hx - 32) < 0.2 and abs(hy - 41) < 0.2 and (tx, ty) == (100, 12)
    assert doc.point_pairs()[0] == pytest.approx((hx, hy, 100, 12))


def test_zoom_and_pan_controls(window, tmp_path):
    canvas = window.canvas
    window.open_path(write_png(tmp_path / "a.png", sample_rgba(400, 300)))
    window.actions_by_key["actual"].trigger()
    assert canvas.zoom == pytest.approx(1.0) and window.zoom_label.text() == "100 %"
    window.actions_by_key["zoom_in"].trigger()
    assert canvas.zoom == pytest.approx(1.25)
    window.actions_by_key["zoom_out"].trigger()
    window.actions_by_key["zoom_out"].trigger()
    assert canvas.zoom == pytest.approx(0.8)
    window.actions_by_key["fit"].trigger()
    vp = canvas.viewport().rect()
    tl, br = canvas.map_from_image(QPointF(0, 0)), canvas.map_from_image(QPointF(400, 300))
    assert vp.contains(tl.toPoint()) and vp.contains(br.toPoint())
    assert br.x() - tl.x() > vp.width() * 0.9 or br.y() - tl.y() > vp.height() * 0.9
    # the middle button pans whatever the tool, and paints nothing
    canvas.set_zoom(4.0)
    spot = canvas.map_to_image(QPointF(200, 200))
    mouse(canvas, "press", QPointF(200, 200), Qt.MouseButton.MiddleButton)
    mouse(canvas, "move", QPointF(150, 170), Qt.MouseButton.MiddleButton)
    mouse(canvas, "release", QPointF(150, 170), Qt.MouseButton.MiddleButton)
    now = canvas.map_from_image(spot)
    assert abs(now.x() - 150) <= 1 and abs(now.y() - 170) <= 1
    assert not window.document.edit_mask_array().any()
    # so does a left drag while Space is held, with the brush tool active
    from PySide6.QtTest import QTest
    canvas.setFocus()
    spot = canvas.map_to_image(QPointF(150, 170))
    QTest.keyPress(canvas.viewport(), Qt.Key.Key_Space)
    drag_image(canvas, [(spot.x(), spot.y()), (spot.x() + 5, spot.y() + 5)])
    QTest.keyRelease(canvas.viewport(), Qt.Key.Key_Space)
    now = canvas.map_from_image(spot)
    assert abs(now.x() - 170) <= 1 and abs(now.y() - 190) <= 1
    assert not window.document.edit_mask_array().any()
    # [ and ] change the brush size
    size = canvas.brush_size
    window.actions_by_key["brush_bigger"].trigger()
    assert canvas.brush_size > size and window.size_slider.value() == round(canvas.brush_size)


def test_damaged_project_shows_error_and_keeps_document(window, tmp_path, errors):
    doc = window.document
    window.open_path(write_png(tmp_path / "a.png", sample_rgba()))
    doc.add_point_pair(1, 2, 3, 4)
    layers, count = doc.layers, doc.undo_stack.count()
    bad = tmp_path / "broken.ora"
    bad.write_bytes(b"PK\x03\x04garbage")
    window.document.undo_stack.setClean()
    assert not window.open_path(bad)
    assert len(errors) == 1 and "broken.ora" in errors[0][1]
    assert doc.layers == layers and doc.undo_stack.count() == count and doc.point_pairs() == [(1, 2, 3, 4)]
    assert not window.open_path(tmp_path / "nothing.png")
    assert len(errors) == 2 and doc.layers == layers


def test_layer_panel_drives_the_document(window, tmp_path):
    doc, panel = window.document, window.layer_panel
    window.open_path(write_png(tmp_path / "a.png", sample_rgba()))
    window.add_image_layers([write_png(tmp_path / "b.png", sample_rgba(seed=2))])
    lst = panel.list
    assert [lst.item(r).text() for r in range(lst.count())] == ["b", "a"]  # top layer first
    assert not lst.item(0).icon().isNull()
    # drag "b" below "a": the document reorders, the list follows
    lst.move_requested.emit(0, 1)
    assert [l.name for l in doc.layers] == ["b", "a"]
    assert [lst.item(r).text() for r in range(lst.count())] == ["a", "b"]
    # visibility check box, rename in place, opacity slider, selection
    lst.item(0).setCheckState(Qt.CheckState.Unchecked)
    assert doc.layer_by_id(lst.item(0).data(Qt.ItemDataRole.UserRole + 1)).visible is False
    lst.item(1).setText("renamed")
    assert doc.layers[0].name == "renamed"
    lst.setCurrentRow(1)
    assert doc.active_layer.name == "renamed"
    panel.opacity_slider.setValue(30)
    panel.opacity_slider.setValue(40)
    assert doc.active_layer.opacity == pytest.approx(0.4)
    doc.undo_stack.undo()  # the slider drag was one entry
    assert doc.active_layer.opacity == 1.0 and panel.opacity_slider.value() == 100
    doc.undo_stack.undo()
    assert doc.layers[0].name == "b" and lst.item(1).text() == "b"
    # the hidden top layer is not composited: the canvas shows the one below
    lower, upper = doc.layers
    assert upper.name == "a" and not upper.visible
    c = window.canvas.composite_item.composite().pixelColor(40, 30)
    assert (c.red(), c.green(), c.blue()) == tuple(int(v) for v in lower.pixels[30, 40, :3])
    upper_row = 0
    lst.setCurrentRow(upper_row)
    assert window.actions_by_key["merge_down"].isEnabled()
    window.actions_by_key["merge_down"].trigger()
    assert [l.name for l in doc.layers] == ["b"] and lst.count() == 1


def test_layer_masks_and_preview(window, tmp_path):
    doc, canvas = window.document, window.canvas
    window.open_path(write_png(tmp_path / "a.png", np.full((40, 40, 4), 255, np.uint8)))
    doc.fill_edit_mask()
    red = np.zeros((40, 40, 4), np.uint8)
    red[...] = (255, 0, 0, 255)
    doc.add_layer(red, "red")
    half = np.zeros((40, 40), np.uint8)
    half[:, :20] = 255
    doc.set_edit_mask(half)
    window.actions_by_key["mask_from_edit"].trigger()
    img = canvas.composite_item.composite()
    assert img.pixelColor(5, 5).red() == 255 and img.pixelColor(5, 5).green() == 0
    assert img.pixelColor(35, 5).green() == 255  # masked out: the white layer below shows
    assert window.actions_by_key["mask_remove"].isEnabled()
    preview = QImage(8, 8, QImage.Format.Format_RGB32)
    preview.fill(Qt.GlobalColor.blue)
    canvas.set_preview(preview)
    grab = canvas.grab().toImage()
    centre = canvas.map_from_image(QPointF(30, 30)).toPoint()
    assert grab.pixelColor(centre).blue() > 200 and grab.pixelColor(centre).red() < 50
    canvas.set_preview(None)
    assert canvas.preview_item.image() is None


def test_unsaved_changes_prompt_on_close(window, tmp_path, monkeypatch):
    window.open_path(write_png(tmp_path / "a.png", sample_rgba()))
    window.document.fill_edit_mask()
    answers = []
    monkeypatch.setattr(dialogs, "ask_save_changes", lambda parent, name: answers.pop(0))
    answers.append(dialogs.CANCEL)
    assert not window.close() and window.isVisible()
    answers.append(dialogs.SAVE)
    monkeypatch.setattr(dialogs, "ask_save_path", lambda *a: str(tmp_path / "kept"))
    assert window.close()
    assert (tmp_path / "kept.ora").exists()


def test_dropping_files_opens_then_adds_layers(window, tmp_path):
    a = write_png(tmp_path / "a.png", sample_rgba())
    b = write_png(tmp_path / "b.png", sample_rgba(seed=3))
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(a), QUrl.fromLocalFile(b)])
    event = QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    window.dropEvent(event)
    assert [l.name for l in window.document.layers] == ["a", "b"]
    assert window.document.undo_stack.count() == 1  # opening is not an undo step; the added layer is


def test_window_structure(window):
    titles = [a.text().replace("&", "") for a in window.menuBar().actions()]
    assert titles == ["File", "Edit", "Select", "Layer", "Tools", "View", "Help"]
    diagnostics = [a.text().replace("&", "") for a in window.diagnostics_menu.actions()]
    assert diagnostics == ["Reconstruct (invert and regenerate: a check of the engine)"]
    assert "reconstruct" not in [m.name for m in window.edit_panel.methods]  # not an artist's edit
    assert window.edit_dock.widget() is window.edit_panel
    shortcuts = {k: window.actions_by_key[k].shortcut().toString() for k in
                 ("open", "save", "save_as", "export", "tool_brush", "tool_eraser", "tool_points", "tool_hand",
                  "fit", "undo", "redo")}
    assert shortcuts == {"open": "Ctrl+O", "save": "Ctrl+S", "save_as": "Ctrl+Shift+S", "export": "Ctrl+E",
                         "tool_brush": "B", "tool_eraser": "E", "tool_points": "P", "tool_hand": "H",
                         "fit": "Ctrl+0", "undo": "Ctrl+Z", "redo": "Ctrl+Shift+Z"}
    from PySide6.QtWidgets import QLabel
    label = QLabel("panel")
    window.set_edit_panel(label)
    assert window.edit_dock.widget() is label and window.edit_panel is label


def test_window_state_and_recent_files_are_remembered(qtbot, tmp_path):
    settings = AppSettings.in_memory()
    first = MainWindow(settings, probe_device=False)
    qtbot.addWidget(first)
    first.resize(700, 500)  # inside the offscreen screen (800x600), or restoreGeometry clamps it
    first.show()
    first.open_path(write_png(tmp_path / "a.png", sample_rgba()))
    first.layers_dock.close()
    first.canvas.set_brush(size=77)
    assert first.close()
    second = MainWindow(settings, probe_device=False)
    qtbot.addWidget(second)
    second.restore_window_state()
    second.show()
    assert second.size().width() == 700 and not second.layers_dock.isVisible()
    assert second.canvas.brush_size == 77
    recent = [a.text() for a in second.recent_menu.actions()]
    assert recent[0].endswith("a.png") and "Clear List" in recent


def test_screenshot_command_writes_png(tmp_path):
    src = write_png(tmp_path / "pic.png", sample_rgba(300, 200))
    out = tmp_path / "shot.png"
    env = {**__import__("os").environ, "QT_QPA_PLATFORM": "offscreen", "MALLEABLE_CONFIG_DIR": str(tmp_path / "cfg")}
    proc = subprocess.run([sys.executable, "-m", "editor_app.main", "--screenshot", str(out), "--size", "900x600", src],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    with Image.open(out) as img:
        assert img.size == (900, 600)
        px = np.asarray(img.convert("RGB"))
    assert px.std() > 10  # not a blank image
    assert px.reshape(-1, 3).mean(0).max() < 150  # a dark theme
    bad = subprocess.run([sys.executable, "-m", "editor_app.main", "--screenshot", str(tmp_path / "x.png"),
                          str(tmp_path / "missing.png")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "missing.png" in bad.stderr and not (tmp_path / "x.png").exists()
