"""Render the views issue 25's items 5-11 changed, to PNGs for looking at by hand:
`python -m tools.edit_screenshots OUT_DIR` (offscreen, a fake engine: no model runs).

The Edit panel on a photo with the demo model (its notice), with Fast (LCM) on a few-step model and
with a method's plain labels; the live preview inside a mask; a group of variations; the model
dialog; the Tools, Diagnostics and Layer menus; the method list; the model help."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0] if argv else "screenshots")
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from editor_app.main import make_application

    app = make_application()

    def pump(seconds: float = 0.0) -> None:
        """Let timers (the notice's, 150 ms) and repaints happen."""
        end = time.monotonic() + seconds
        while True:
            app.processEvents()
            if time.monotonic() >= end:
                return
            time.sleep(0.02)

    shoot(out, pump)
    return 0


def shoot(out: Path, pump) -> None:
    from PySide6.QtWidgets import QMessageBox

    from core import ModelSpec
    from core.loras import LoraSpec
    from editor_app.first_run import FIRST_RUN_MODEL_HELP
    from editor_app.main_window import MainWindow
    from editor_app.settings import AppSettings
    from tests.editor_helpers import write_png
    from tests.fake_engine import FakeEngine
    from tests.test_demo_notice import photo_like
    from widgets.model_dialog import ModelDialog
    from widgets.qimage import rgb_to_qimage

    win = MainWindow(AppSettings.in_memory(), probe_device=False, interactive=False,
                     engine=FakeEngine(few_step_sources={"lcm/model"}))
    win.resize(1280, 800)
    win.show()
    panel, doc, ctl = win.edit_panel, win.document, win.edit_session.controller

    # the demo model on a photo: the notice before Run
    win.open_path(write_png(out / "photo.png", photo_like(600, 400)))
    pump(0.3)
    win.canvas.fit_to_window()
    pump()
    win.grab().save(str(out / "01_window_demo_on_photo.png"))

    # a live preview (a latent-sized 16×11 picture) inside a round mask, mask tint off
    yy, xx = np.mgrid[:400, :600]
    mask = np.where((xx - 300) ** 2 + (yy - 200) ** 2 < 120 ** 2, 255, 0).astype(np.uint8)
    doc.set_edit_mask(mask)
    tiny = np.zeros((11, 16, 3), np.uint8)
    tiny[..., 2] = np.linspace(40, 255, 16)[None, :]
    tiny[..., 1] = np.linspace(0, 200, 11)[:, None]
    win.canvas.set_preview(rgb_to_qimage(tiny), mask.astype(np.float32) / 255)
    win.actions_by_key["show_mask"].setChecked(False)
    pump()
    win.canvas.grab().save(str(out / "02_canvas_preview_in_mask.png"))
    win.canvas.set_preview(None)
    win.actions_by_key["show_mask"].setChecked(True)
    doc.clear_edit_mask()

    # Fast (LCM) on a few-step model
    ctl.load_model(ModelSpec("lcm/model"))
    deadline = time.monotonic() + 30
    while (ctl.loaded is None or not ctl.loaded.few_step) and time.monotonic() < deadline:
        pump(0.05)
    panel.select_method("pnp")
    panel.fast_check.setChecked(True)
    pump(0.3)
    win.edit_dock.grab().save(str(out / "03_edit_panel_fast_lcm.png"))
    panel.fast_check.setChecked(False)

    # Run ×4: a group of variations
    panel.form.set_values({"prompt": "a watercolour", "steps": 3})
    panel.variations_button.click()
    deadline = time.monotonic() + 30
    while ctl.busy and time.monotonic() < deadline:
        pump(0.05)
    pump()
    win.grab().save(str(out / "04_window_variations.png"))

    # plain labels, the advanced ones too
    win.edit_dock.setFloating(True)
    win.edit_dock.resize(380, 900)
    for name, file in (("drag", "05_drag_form_labels.png"), ("pix2pix-zero", "06_pix2pix_form_labels.png"),
                       ("style-diffusion", "13_style_diffusion_form_labels.png"),
                       ("pnp", "14_pnp_form_labels.png"), ("diffuseit", "15_diffuseit_form_labels.png")):
        panel.select_method(name)
        if panel.form.advanced is not None:
            panel.form.advanced.expand(animate=False)
        pump(0.3)  # the collapsible lays its content out on the next events
        panel.grab().save(str(out / file))
    win.edit_dock.setFloating(False)

    # the model dialog
    dlg = ModelDialog(ModelSpec("/models/dreamshaper_8.safetensors", vae="stabilityai/sd-vae-ft-mse",
                                loras=(LoraSpec("/loras/ink-style.safetensors", 0.8),
                                       LoraSpec("/loras/lcm-lora-sdv1-5.safetensors", 1.0)), low_vram=True),
                      win, loaded="demo (Stable Diffusion 1.x) on cpu (fp32)")
    dlg.resize(760, 720)
    dlg.show()
    pump()
    dlg.grab().save(str(out / "07_model_dialog.png"))
    dlg.close()
    dlg.deleteLater()

    # menus and the method list
    menus = {a.text().replace("&", ""): a.menu() for a in win.menuBar().actions()}
    for title, file in (("Tools", "08_tools_menu.png"), ("Layer", "09_layer_menu.png")):
        menus[title].popup(win.mapToGlobal(win.rect().topLeft()))
        pump()
        menus[title].grab().save(str(out / file))
        menus[title].hide()
    win.diagnostics_menu.popup(win.mapToGlobal(win.rect().topLeft()))
    pump()
    win.diagnostics_menu.grab().save(str(out / "10_diagnostics_menu.png"))
    win.diagnostics_menu.hide()
    panel.method_combo.showPopup()
    pump()
    panel.method_combo.view().window().grab().save(str(out / "11_method_list.png"))
    panel.method_combo.hidePopup()

    # Help ▸ Getting Stable Diffusion
    box = QMessageBox(QMessageBox.Icon.Information, "Getting Stable Diffusion", FIRST_RUN_MODEL_HELP, parent=win)
    box.show()
    pump()
    box.grab().save(str(out / "12_model_help.png"))
    box.close()
    box.deleteLater()

    doc.undo_stack.setClean()
    win.close()
    ctl.runner.shutdown(wait=True, timeout=30)


if __name__ == "__main__":
    sys.exit(main())
