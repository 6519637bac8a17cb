"""File ▸ Model…: the loaded model's family, family/prediction/VAE under Advanced, LoRAs with scales,
low-VRAM mode; the choice is remembered once it loaded, result layers record it in the project, the
dialog is deleted after use, and the help text names menus and controls that exist."""
import re

import pytest
from PySide6.QtCore import QCoreApplication, QEvent
from PySide6.QtWidgets import QAbstractButton, QDialog, QLabel

from core import ModelSpec
from core.loras import LoraSpec
from editor_app.first_run import FIRST_RUN_MODEL_HELP
from editor_app.main_window import MainWindow
from editor_app.settings import AppSettings
from tests.editor_helpers import sample_rgba, write_png
from tests.fake_engine import FakeEngine
from widgets import dialogs
from widgets.model_dialog import ModelDialog

RICH = ModelSpec("/models/dreamshaper.safetensors", device="cpu", precision="fp32", family="sd2",
                 prediction="epsilon", vae="madebyollin/sdxl-vae-fp16-fix",
                 loras=(LoraSpec("/loras/ink.safetensors", 0.8), LoraSpec("/loras/lcm-lora.safetensors", 1.0)),
                 low_vram=True)


def test_the_dialog_shows_and_returns_every_choice(qtbot):
    dlg = ModelDialog(ModelSpec(), loaded="demo (Stable Diffusion 1.x) on cpu (fp32)")
    qtbot.addWidget(dlg)
    assert "Stable Diffusion 1.x" in dlg.loaded_label.text()  # the family of what is in use
    assert dlg.spec() == ModelSpec() and not dlg.advanced.isExpanded()
    dlg.set_spec(RICH)
    assert dlg.spec() == RICH
    assert dlg.advanced.isExpanded()  # choices that are not the defaults are never hidden
    assert "epsilon" in dlg.family_notes.text()  # the SD 2.x caveat, for the family chosen


def test_the_lora_list_adds_rescales_and_removes(qtbot):
    dlg = ModelDialog(ModelSpec())
    qtbot.addWidget(dlg)
    dlg.loras.add_lora("/loras/a.safetensors")
    dlg.loras.add_lora("/loras/b.safetensors", 0.5)
    dlg.loras.table.cellWidget(0, 1).setValue(0.25)
    assert dlg.spec().loras == (LoraSpec("/loras/a.safetensors", 0.25), LoraSpec("/loras/b.safetensors", 0.5))
    assert not dlg.loras.remove_button.isEnabled()
    dlg.loras.table.selectRow(0)
    dlg.loras.remove_button.click()
    assert dlg.spec().loras == (LoraSpec("/loras/b.safetensors", 0.5),)
    assert dlg.loras.table.item(0, 0).text() == "b.safetensors"


@pytest.fixture
def answer_dialog(monkeypatch):
    """Stand in for the person at File ▸ Model…: set `answer.spec` (None: Cancel)."""
    class Answer:
        spec = None
        seen = []

    def exec_(dlg):
        Answer.seen.append(dlg.loaded_label.text())
        if Answer.spec is None:
            return QDialog.DialogCode.Rejected
        dlg.set_spec(Answer.spec)
        return QDialog.DialogCode.Accepted

    monkeypatch.setattr(ModelDialog, "exec", exec_)
    return Answer


def test_the_choice_is_remembered_once_it_loaded_and_results_record_it(qtbot, tmp_path, errors,
                                                                       answer_dialog, monkeypatch):
    monkeypatch.setattr(dialogs, "ask_save_changes", lambda parent, name: dialogs.DISCARD)
    settings = AppSettings.in_memory()
    engine = FakeEngine(broken_sources={"/no/such.safetensors"})
    win = MainWindow(settings, probe_device=False, engine=engine, load_model=True)
    qtbot.addWidget(win)
    ctl = win.edit_session.controller
    qtbot.waitUntil(lambda: ctl.loaded is not None, timeout=30000)
    answer_dialog.spec = RICH
    with qtbot.waitSignal(ctl.model_loaded, timeout=30000):
        win.actions_by_key["model"].trigger()
    assert "Stable Diffusion 1.x" in answer_dialog.seen[-1]  # the dialog named the model in use
    assert settings.model_spec() == RICH
    answer_dialog.spec = ModelSpec("/no/such.safetensors")
    with qtbot.waitSignal(ctl.model_failed, timeout=30000):
        win.actions_by_key["model"].trigger()
    assert settings.model_spec() == RICH and ctl.model_spec == RICH  # a choice that failed is not kept

    # a result records the LoRA set and scales, and the project keeps them
    assert win.open_path(write_png(tmp_path / "p.png", sample_rgba()))
    with qtbot.waitSignal(ctl.result_ready, timeout=30000):
        win.edit_session.run("pnp", {"prompt": "ink drawing", "steps": 3})
    path = tmp_path / "p.ora"
    assert win.save_to(path)
    win.document.close()
    assert win.open_path(path)
    spec = win.document.layers[1].metadata["model_spec"]
    assert [(l["path"], l["scale"]) for l in spec["loras"]] == [("/loras/ink.safetensors", 0.8),
                                                                ("/loras/lcm-lora.safetensors", 1.0)]
    assert ModelSpec(**spec) == RICH

    # the next start loads the remembered model
    second = MainWindow(settings, probe_device=False, engine=FakeEngine())
    qtbot.addWidget(second)
    assert second.settings_model_spec() == RICH
    for w in (win, second):
        w.edit_session.controller.runner.shutdown(wait=True, timeout=30)


def test_an_unreadable_remembered_model_falls_back_to_the_demo():
    settings = AppSettings.in_memory()
    settings._s.setValue("model/spec", '{"source": "x", "family": "sd9"}')
    assert settings.model_spec() == ModelSpec()


def test_the_dialog_is_deleted_after_use(qtbot, answer_dialog):
    win = MainWindow(AppSettings.in_memory(), probe_device=False, load_model=False)
    qtbot.addWidget(win)
    for answer in (None, ModelSpec()):  # Cancel, then Load
        answer_dialog.spec = answer
        win.actions_by_key["model"].trigger()
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
        assert win.findChildren(ModelDialog) == []  # the bug: it stayed, and crashed the quit
    win.edit_session.controller.runner.shutdown(wait=True, timeout=30)


def test_the_model_help_names_menus_and_controls_that_exist(qtbot):
    win = MainWindow(AppSettings.in_memory(), probe_device=False, load_model=False)
    qtbot.addWidget(win)
    menus = {a.text().replace("&", ""): a.menu() for a in win.menuBar().actions()}
    paths = re.findall(r"(\w+) ▸ ([^\s,;.)]+(?: [A-Z]\w*)*…?)", FIRST_RUN_MODEL_HELP)
    assert ("File", "Model…") in paths
    for menu, item in paths:
        assert menu in menus, menu
        assert item in [a.text().replace("&", "") for a in menus[menu].actions()], (menu, item)
    dlg = ModelDialog(ModelSpec())
    qtbot.addWidget(dlg)
    texts = [w.text().replace("&", "") for w in dlg.findChildren(QAbstractButton) + dlg.findChildren(QLabel)]
    named = re.findall(r"“([^”]+)”", FIRST_RUN_MODEL_HELP)
    assert "Load" in named and "Browse…" in named
    for name in named:
        assert any(t.startswith(name) for t in texts), name
    win.edit_session.controller.runner.shutdown(wait=True, timeout=30)
