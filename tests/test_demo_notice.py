"""The demo model on a photo (issue 25, item 5): the Edit panel says before Run that the demo only
knows simple shapes and offers the model dialog; on a ShapesWorld-like picture, or with another
model, it says nothing. The statistic behind it is read on a rendered scene and a photo-like one."""
import random

import numpy as np
import pytest
from PIL import Image, ImageFilter

from core import ModelSpec
from editor_app.demo_notice import FLAT_MIN, NOTICE, scene_stats
from resources import resource_path
from tests.editor_helpers import open_window, write_png
from tests.fake_engine import FakeEngine
from tools.shapesworld import sample_scene


def photo_like(w=320, h=240, seed=0) -> np.ndarray:
    """What a camera gives, in the ways the statistic reads: smooth light and colour across the
    frame, texture at middle scales, and sensor noise on every pixel."""
    rng = np.random.default_rng(seed)

    def field(gh, gw, amplitude):
        grid = rng.random((gh, gw, 3)) * 255
        up = Image.fromarray(grid.astype(np.uint8)).resize((w, h), Image.BICUBIC)
        return (np.asarray(up, np.float32) - 128) * amplitude / 128

    img = 128 + field(4, 5, 90) + field(30, 40, 25) + rng.normal(0, 5, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("px", [64, 256, 512])
def test_rendered_scenes_read_as_shapesworld(px):
    rng = random.Random(px)
    for _ in range(12):
        stats = scene_stats(np.asarray(sample_scene(rng, px).image))
        assert stats.shapes_like, stats


def test_a_photo_like_picture_does_not():
    for seed in range(4):
        stats = scene_stats(photo_like(seed=seed))
        assert not stats.shapes_like and stats.flat_share < 0.3 and stats.colours > 100, stats
    # The colours matter too: a photo blurred smooth (out of focus, a sky) is flat but has hundreds.
    smooth = scene_stats(np.asarray(Image.fromarray(photo_like(seed=9)).filter(ImageFilter.GaussianBlur(6))))
    assert smooth.flat_share > FLAT_MIN and not smooth.shapes_like, smooth


@pytest.fixture
def win(qtbot, errors, monkeypatch):
    w = open_window(qtbot, monkeypatch, engine=FakeEngine())
    yield w
    w.edit_session.controller.runner.shutdown(wait=True, timeout=30)


def notice_shown(qtbot, win, shown: bool):
    qtbot.waitUntil(lambda: win.edit_panel.notice.isVisible() == shown, timeout=5000)
    return win.edit_panel.notice.label.text()


def test_the_panel_warns_before_run_on_a_photo_with_the_demo(qtbot, win, tmp_path, monkeypatch):
    assert win.open_path(str(resource_path("samples", "shapes.png")))
    notice_shown(qtbot, win, False)
    assert win.open_path(write_png(tmp_path / "photo.png", photo_like()))
    assert notice_shown(qtbot, win, True) == NOTICE
    assert "only knows simple shapes" in NOTICE and "File ▸ Model…" in NOTICE
    asked = []
    monkeypatch.setattr(win, "ask_model", lambda: asked.append(1))
    win.edit_panel.notice_action.disconnect()
    win.edit_panel.notice_action.connect(win.ask_model)
    win.edit_panel.notice.button.click()  # "Choose a Model…"
    assert asked == [1]


def test_the_warning_follows_the_layer_and_the_model(qtbot, win, tmp_path):
    doc = win.document
    assert win.open_path(write_png(tmp_path / "photo.png", photo_like()))
    notice_shown(qtbot, win, True)
    scene = np.asarray(sample_scene(random.Random(3), 320).image.convert("RGBA").resize((320, 240)))
    doc.add_layer(scene, "shapes")  # the active layer is what an edit takes
    notice_shown(qtbot, win, False)
    doc.set_active_layer(doc.layers[0])
    notice_shown(qtbot, win, True)
    ctl = win.edit_session.controller
    with qtbot.waitSignal(ctl.model_loaded, timeout=30000):
        ctl.load_model(ModelSpec("some/sd-model"))
    notice_shown(qtbot, win, False)  # not the demo: nothing to say
