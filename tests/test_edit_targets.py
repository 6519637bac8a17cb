"""What an edit works on and where its result goes (issue 25, items 7 and 8): results land above their
source and the results already on it, the source stays the edit target, "Edit the visible picture"
edits the composite, point pairs belong to their layer, the live preview is drawn at the picture's
resolution inside the mask only, and a failed model switch keeps the previous model.

A fake engine on the real LocalRunner: its result is the negative of its input, so where a result
landed and what it was made from can be read off the pixels."""
import json
import zipfile

import numpy as np
import pytest
from PySide6.QtGui import QImage

from core import ModelSpec
from editor_app.ora import META_ENTRY
from tests.editor_helpers import open_window, sample_rgba, write_png
from tests.fake_engine import FakeEngine
from widgets.qimage import rgb_to_qimage


@pytest.fixture
def win(qtbot, tmp_path, errors, monkeypatch):
    w = open_window(qtbot, monkeypatch, engine=FakeEngine(broken_sources={"broken/model"}))
    assert w.open_path(write_png(tmp_path / "photo.png", opaque(0)))
    yield w
    w.edit_session.controller.runner.shutdown(wait=True, timeout=30)


def run_edit(qtbot, win, method="pnp", values=None):
    with qtbot.waitSignal(win.edit_session.controller.result_ready, timeout=30000) as blocker:
        assert win.edit_session.run(method, values or {"prompt": "a dog", "steps": 3}) is not None
    return blocker.args[1]


def opaque(seed):
    a = sample_rgba(64, 48, seed=seed)
    a[..., 3] = 255
    return a


def test_a_masked_edit_lands_above_an_earlier_result_of_the_same_layer_and_shows(qtbot, win):
    doc = win.document
    base = doc.active_layer
    run_edit(qtbot, win)  # an opaque earlier result over the whole picture
    assert [l.name for l in doc.layers] == ["photo", "Restyle 1"] and doc.active_layer is base
    mask = np.zeros((48, 64), np.uint8)
    mask[10:30, 20:40] = 255
    doc.set_edit_mask(mask)
    run_edit(qtbot, win)
    assert [l.name for l in doc.layers] == ["photo", "Restyle 1", "Restyle 2"]  # the bug: under "Restyle 1"
    shown = doc.composite_rgba()
    negative_of_base = 255 - base.pixels[..., :3]
    assert np.array_equal(shown[20, 30, :3], negative_of_base[20, 30])  # inside the mask: the new edit
    assert np.array_equal(shown[40, 5, :3], negative_of_base[40, 5])    # outside: "Restyle 1", also of base


def test_the_source_stays_the_edit_target(qtbot, win):
    doc, engine = win.document, win.engine
    base = doc.active_layer
    run_edit(qtbot, win)
    run_edit(qtbot, win)
    first, second = engine.requests
    assert np.array_equal(second.image.rgb, base.pixels[..., :3])  # the bug: it edited "Restyle 1"
    assert np.array_equal(first.image.rgb, second.image.rgb)
    assert doc.active_layer is base and [l.name for l in doc.layers] == ["photo", "Restyle 1", "Restyle 2"]


def test_results_of_another_layer_stay_where_they_belong(qtbot, win):
    doc = win.document
    top = doc.add_layer(opaque(3), "sticker")
    doc.set_active_layer(doc.layers[0])
    run_edit(qtbot, win)
    assert [l.name for l in doc.layers] == ["photo", "Restyle 1", "sticker"]
    doc.set_active_layer(top)
    run_edit(qtbot, win)
    assert [l.name for l in doc.layers] == ["photo", "Restyle 1", "sticker", "Restyle 2"]


def test_edit_the_visible_picture(qtbot, win):
    doc, engine = win.document, win.engine
    sticker = opaque(4)
    sticker[:, :32, 3] = 0  # covers the right half
    doc.add_layer(sticker, "sticker")
    doc.set_active_layer(doc.layers[0])
    seen = doc.composite_rgba()
    win.edit_panel.visible_check.setChecked(True)  # the Edit panel's "Edit the visible picture"
    assert win.edit_session.edit_visible
    run_edit(qtbot, win)
    request = engine.requests[-1]
    assert np.array_equal(request.image.rgb, seen[..., :3])
    assert [l.name for l in doc.layers] == ["photo", "sticker", "Restyle 1"]  # on top of what was seen
    assert doc.active_layer.name == "Restyle 1"  # the newest picture is what the next edit sees
    win.edit_panel.visible_check.setChecked(False)
    run_edit(qtbot, win)
    assert np.array_equal(engine.requests[-1].image.rgb, doc.layers[2].pixels[..., :3])


# ---- point pairs per layer ---------------------------------------------------------------------

def test_points_belong_to_their_layer(qtbot, win):
    doc, canvas = win.document, win.canvas
    base = doc.active_layer
    doc.add_point_pair(10, 10, 20, 20)
    other = doc.add_layer(opaque(5), "other")
    assert doc.active_layer is other and doc.point_pairs() == [] and canvas.point_items() == []
    doc.add_point_pair(1, 2, 3, 4)
    doc.set_active_layer(base)
    assert doc.point_pairs() == [(10, 10, 20, 20)] and len(canvas.point_items()) == 1
    form = win.edit_panel.forms["drag"]
    assert form.values()["points"] == ((10, 10, 20, 20),)  # the panel follows the active layer
    win.actions_by_key["points_clear"].trigger()  # Edit ▸ Clear All Points: this layer's only
    assert doc.point_pairs() == [] and doc.point_pairs(other) == [(1, 2, 3, 4)]
    doc.set_active_layer(other)
    doc.undo_stack.undo()  # undoing a change to another layer's points shows that layer
    assert doc.active_layer is base and doc.point_pairs() == [(10, 10, 20, 20)]


def test_a_result_layer_starts_with_its_source_points(qtbot, win):
    doc = win.document
    doc.add_point_pair(10, 10, 20, 20)
    run_edit(qtbot, win)
    assert doc.point_pairs(doc.layers[1]) == [(10, 10, 20, 20)]


def test_points_per_layer_survive_save_and_open(qtbot, win, tmp_path):
    doc = win.document
    doc.add_point_pair(10, 10, 20, 20)
    doc.add_layer(opaque(6), "other")
    doc.add_point_pair(1, 2, 3, 4)
    path = tmp_path / "p.ora"
    assert win.save_to(path)
    doc.close()
    assert win.open_path(path)
    assert doc.active_layer.name == "other" and doc.point_pairs() == [(1, 2, 3, 4)]
    assert doc.point_pairs(doc.layers[0]) == [(10, 10, 20, 20)]


def test_a_project_from_before_points_per_layer_gives_its_points_to_the_active_layer(qtbot, win, tmp_path):
    doc = win.document
    doc.add_point_pair(5, 6, 7, 8)
    doc.add_layer(opaque(7), "other")
    doc.set_active_layer(doc.layers[0])
    path, old = tmp_path / "new.ora", tmp_path / "old.ora"
    assert win.save_to(path)
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(old, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == META_ENTRY:  # what an older Malleable wrote: the document's pairs only
                meta = json.loads(data)
                assert meta["points"] == [[5, 6, 7, 8]]  # still written, for older versions
                for layer in meta["layers"]:
                    layer.pop("points")
                data = json.dumps(meta).encode()
            dst.writestr(item, data)
    doc.close()
    assert win.open_path(old)
    assert doc.active_layer.name == "photo" and doc.point_pairs() == [(5, 6, 7, 8)]
    assert doc.point_pairs(doc.layers[1]) == []


# ---- the live preview --------------------------------------------------------------------------

def test_the_preview_is_upsampled_and_shown_inside_the_mask_only(qtbot, win):
    canvas = win.canvas
    tiny = np.zeros((6, 8, 3), np.uint8)
    tiny[..., 0] = np.linspace(0, 255, 8, dtype=np.uint8)[None, :]  # a ramp, 8 px wide
    mask = np.zeros((48, 64), np.float32)
    mask[:, 32:] = 1.0
    canvas.set_preview(rgb_to_qimage(tiny), mask)
    overlay = canvas.preview_item.overlay().convertToFormat(QImage.Format.Format_RGBA8888)
    assert (overlay.width(), overlay.height()) == (64, 48)  # the picture's resolution, not 8×6
    px = np.frombuffer(overlay.constBits(), np.uint8).reshape(48, 64, 4)
    assert px[:, :31, 3].max() == 0 and px[:, 33:, 3].min() == 255  # inside the mask only
    row = px[20, 33:, 0].astype(int)
    assert len(set(row.tolist())) > 20 and np.all(np.diff(row) >= 0)  # smooth, not 8 blocks
    canvas.set_preview(rgb_to_qimage(tiny))  # no mask: the whole picture changes
    overlay = canvas.preview_item.overlay().convertToFormat(QImage.Format.Format_RGBA8888)
    assert np.frombuffer(overlay.constBits(), np.uint8).reshape(48, 64, 4)[..., 3].min() == 255


def test_a_large_picture_gets_a_bounded_preview(qapp):
    from widgets.preview_overlay import MAX_SIDE, overlay_size

    assert overlay_size(6000, 4000) == (MAX_SIDE, round(4000 * MAX_SIDE / 6000))
    assert overlay_size(600, 400) == (600, 400)


# ---- models ------------------------------------------------------------------------------------

def test_a_failed_model_switch_keeps_the_previous_model_for_later_edits(qtbot, win, errors):
    ctl = win.edit_session.controller
    with qtbot.waitSignal(ctl.model_loaded, timeout=30000):
        ctl.load_model(ModelSpec("good/model"))
    with qtbot.waitSignal(ctl.model_failed, timeout=30000) as blocker:
        ctl.load_model(ModelSpec("broken/model"))
    assert blocker.args[0] == "model unavailable"
    assert ctl.model_spec == ModelSpec("good/model")  # the bug: "broken/model", so every edit failed
    run_edit(qtbot, win)
    assert win.engine.requests[-1].model == ModelSpec("good/model")
    assert len(errors) == 1 and "broken/model" in errors[0][1]
