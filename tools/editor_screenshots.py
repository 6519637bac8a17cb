"""Render the editor with each selection, mask, compare and export tool in use, to PNGs for looking
at by hand: `python -m tools.editor_screenshots OUT_DIR` (offscreen; nothing is saved elsewhere)."""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np


def scene(w=640, h=420) -> np.ndarray:
    """A made-up landscape: sky, sun, hills, a house; colours a wand and a lasso have to tell apart."""
    yy, xx = np.mgrid[0:h, 0:w]
    out = np.zeros((h, w, 4), np.uint8)
    out[..., 3] = 255
    sky = np.ones((h, w), bool)
    out[sky, 0] = (90 + yy[sky] * 0.2).astype(np.uint8)
    out[sky, 1] = (150 + yy[sky] * 0.15).astype(np.uint8)
    out[sky, 2] = 235
    hill = yy > h * 0.55 + 30 * np.sin(xx / 70.0)
    out[hill, :3] = (70, 140, 60)
    sun = (xx - 470) ** 2 + (yy - 95) ** 2 < 48 ** 2
    out[sun, :3] = (250, 205, 60)
    house = (xx > 140) & (xx < 260) & (yy > 210) & (yy < 300)
    out[house, :3] = (200, 120, 90)
    roof = (yy <= 210) & (yy > 150) & (np.abs(xx - 200) < (yy - 150) * 1.1)
    out[roof, :3] = (120, 50, 40)
    return out


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out_dir = Path(argv[0] if argv else "screenshots")
    out_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    from PIL import Image
    from PySide6.QtCore import QPointF, Qt
    from PySide6.QtWidgets import QApplication

    from editor_app.main import make_application
    from editor_app.main_window import MainWindow
    from editor_app.settings import AppSettings
    from widgets.canvas import Tool
    from widgets.export_dialog import ExportDialog, ExportOptions
    from tests.editor_helpers import mouse

    app = make_application()
    win = MainWindow(AppSettings.in_memory(), probe_device=False, interactive=False)
    win.resize(1280, 800)
    win.show()
    tmp = Path(tempfile.mkdtemp())
    Image.fromarray(scene()).save(tmp / "landscape.png")
    win.open_path(tmp / "landscape.png")
    for _ in range(3):
        app.processEvents()
    win.canvas.fit_to_window()
    c, d = win.canvas, win.document

    def settle():
        for _ in range(3):
            app.processEvents()
        c.ants.rebuild()
        app.processEvents()

    def shot(name):
        settle()
        path = out_dir / f"{name}.png"
        win.grab().save(str(path))
        print(path)

    def at(x, y):
        return c.map_from_image(QPointF(x, y))

    def drag(points, release=True, modifiers=Qt.KeyboardModifier.NoModifier):
        mouse(c, "press", at(*points[0]), modifiers=modifiers)
        for p in points[1:]:
            mouse(c, "move", at(*p), modifiers=modifiers)
        if release:
            mouse(c, "release", at(*points[-1]), modifiers=modifiers)

    # Rectangle: one selected, a second being added with Shift
    win.actions_by_key["cycle_marquee"].trigger()
    drag([(130, 140), (280, 310)])
    drag([(300, 250), (420, 330), (440, 360)], release=False, modifiers=Qt.KeyboardModifier.ShiftModifier)
    shot("select-rect")
    mouse(c, "release", at(440, 360), modifiers=Qt.KeyboardModifier.ShiftModifier)
    # Ellipse around the sun
    win.actions_by_key["cycle_marquee"].trigger()
    drag([(410, 35), (530, 155)])
    shot("select-ellipse")
    # Lasso, being drawn around a hill
    win.actions_by_key["cycle_lasso"].trigger()
    t = np.linspace(0, 2 * np.pi, 60)
    drag([(320 + 120 * np.cos(a), 320 + 60 * np.sin(a) + 10 * np.sin(5 * a)) for a in t[:48]], release=False)
    shot("lasso")
    c.selection_tool.cancel()
    # Polygon: five corners placed, the rubber band to the mouse
    win.actions_by_key["cycle_lasso"].trigger()  # L again: from the lasso to the polygon
    for x, y in ((140, 210), (200, 150), (260, 210), (260, 300), (140, 300)):
        mouse(c, "press", at(x, y))
        mouse(c, "release", at(x, y))
    mouse(c, "move", at(150, 230), button=Qt.MouseButton.NoButton)
    shot("polygon")
    c.selection_tool.finish()
    # Magic wand on the sky, not contiguous off
    win.actions_by_key["tool_wand"].trigger()
    win.wand_tolerance.setValue(40)
    mouse(c, "press", at(50, 30))
    mouse(c, "release", at(50, 30))
    shot("wand")
    # Select menu
    win.select_menu.popup(win.mapToGlobal(win.rect().center()))
    settle()
    win.select_menu.grab().save(str(out_dir / "select-menu.png"))
    print(out_dir / "select-menu.png")
    win.select_menu.hide()

    # A result layer with a mask, refined with the layer-mask brush
    result = scene()
    result[..., :3] = 255 - result[..., :3]
    applied = np.zeros((d.height, d.width), np.uint8)
    applied[100:330, 100:330] = 255
    base = d.layers[0]
    d.add_result_layer(result, "Restyle 1", {"method": "pnp", "params": {"prompt": "a negative", "steps": 20,
                                                                        "seed": 3}, "model": "demo", "seconds": 4.2},
                       above=base, mask=applied)
    d.clear_edit_mask()
    win.actions_by_key["layer_mask_edit"].trigger()
    c.set_tool(Tool.ERASER)
    c.set_brush(size=40, hardness=0.8)
    drag([(120, 120), (200, 200), (300, 140)])
    shot("layer-mask")
    win.actions_by_key["layer_mask_edit"].trigger()
    menu = win.layer_panel.context_menu()
    menu.popup(win.mapToGlobal(win.rect().center()))
    settle()
    menu.grab().save(str(out_dir / "layer-context-menu.png"))
    print(out_dir / "layer-context-menu.png")
    menu.hide()
    # The result's tooltip, as the Layers panel shows it
    from PySide6.QtWidgets import QToolTip
    item = win.layer_panel.list.item(0)
    QToolTip.showText(win.mapToGlobal(win.rect().center()), item.toolTip(), win)
    settle()
    tips = [w for w in QApplication.topLevelWidgets() if w.isVisible() and w.metaObject().className() == "QTipLabel"]
    if tips:
        tips[0].grab().save(str(out_dir / "result-tooltip.png"))
        print(out_dir / "result-tooltip.png")
    QToolTip.hideText()

    # Before/after
    d.set_active_layer(base)
    win.compare.hold(True)
    shot("compare-hold")
    win.compare.hold(False)
    win.actions_by_key["compare_split"].trigger()
    win.compare.bar.slider.setValue(450)
    shot("compare-split")
    win.compare.set_split(False)

    # Export dialog
    dlg = ExportDialog(ExportOptions(path=str(tmp / "landscape-edited.jpg"), quality=90),
                       [(l.id, l.name) for l in reversed(d.layers)], has_selection=True, parent=win)
    dlg.show()
    settle()
    dlg.grab().save(str(out_dir / "export-dialog.png"))
    print(out_dir / "export-dialog.png")
    dlg.close()

    d.undo_stack.setClean()
    win.close()
    QApplication.processEvents()
    return 0


if __name__ == "__main__":
    sys.exit(main())
