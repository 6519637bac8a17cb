"""The editor while work is in flight (pytest-qt, a fake engine on the real LocalRunner): results go
back to the picture they came from and never into another; closing the window while an edit or a
model load runs finishes cleanly; requests hold everything when they are built."""
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from core import ModelSpec
from editor_app.document_io import ORPHAN_TEXT
from editor_app.main_window import MainWindow
from editor_app.settings import AppSettings
from tests.editor_helpers import sample_rgba, write_png
from tests.fake_engine import FakeEngine
from widgets import dialogs

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def asked(monkeypatch):
    """What the window asked about results of pictures no longer open; answer with asked.answer."""
    class Record(list):
        answer = False

    record = Record()

    def ask(parent, text, name):
        record.append((text, name))
        return record.answer

    monkeypatch.setattr(dialogs, "ask_open_result", ask)
    monkeypatch.setattr(dialogs, "ask_save_changes", lambda parent, name: dialogs.DISCARD)
    return record


def make_window(qtbot, engine, tmp_path, size=(64, 48)):
    w = MainWindow(AppSettings.in_memory(), probe_device=False, engine=engine)
    qtbot.addWidget(w)
    w.show()
    assert w.open_path(write_png(tmp_path / "first.png", sample_rgba(*size)))
    return w


@pytest.fixture
def gated(qtbot, tmp_path, errors, asked):
    """A window whose edits wait until the test opens engine.edit_gate."""
    engine = FakeEngine()
    engine.edit_gate.clear()
    w = make_window(qtbot, engine, tmp_path)
    yield w, engine
    engine.edit_gate.set()
    engine.load_gate.set()
    w.edit_session.controller.runner.shutdown(wait=True, timeout=30)


def start_edit(win, engine):
    win.actions_by_key["diagnostic_reconstruct"].trigger()  # Tools ▸ Diagnostics ▸ Reconstruct
    assert engine.edit_started.wait(30)


def finish_edit(qtbot, win, engine):
    with qtbot.waitSignal(win.edit_session.controller.result_ready, timeout=30000) as blocker:
        engine.edit_gate.set()
    return blocker.args[1]


def assert_untouched(doc, name, size):
    assert [l.name for l in doc.layers] == [name] and doc.size() == size
    assert doc.undo_stack.count() == 0 and not doc.is_modified


# ---- results are routed by origin ----------------------------------------------------------------

def test_result_for_a_replaced_picture_of_the_same_size_is_not_added_to_the_new_one(qtbot, gated, tmp_path,
                                                                                    asked, errors):
    win, engine = gated
    doc = win.document
    start_edit(win, engine)
    first_identity = doc.identity
    assert win.open_path(write_png(tmp_path / "second.png", sample_rgba(64, 48, seed=7)))
    assert doc.identity != first_identity
    result = finish_edit(qtbot, win, engine)
    assert result.origin["document"] == first_identity
    assert_untouched(doc, "second", (64, 48))  # the bug: it used to land here as a layer
    assert asked == [(ORPHAN_TEXT, "Reconstruct 1")] and errors == []
    assert win.canvas.preview_item.image() is None


def test_result_for_a_replaced_picture_of_another_size_can_open_as_a_new_picture(qtbot, gated, tmp_path,
                                                                                asked, errors):
    win, engine = gated
    doc = win.document
    start_edit(win, engine)
    assert win.open_path(write_png(tmp_path / "big.png", sample_rgba(90, 70, seed=8)))
    asked.answer = True  # "Open as New Picture"
    result = finish_edit(qtbot, win, engine)
    assert errors == [] and len(asked) == 1  # the bug: ValueError out of the slot, an empty undo entry
    assert [l.name for l in doc.layers] == ["Reconstruct 1"] and doc.size() == (64, 48)
    assert np.array_equal(doc.layers[0].pixels, np.asarray(result.image.convert("RGBA")))
    assert doc.undo_stack.count() == 0 and doc.file_path is None


def test_result_after_file_close_is_offered_never_applied(qtbot, gated, asked, errors):
    win, engine = gated
    doc = win.document
    start_edit(win, engine)
    win.actions_by_key["close"].trigger()
    assert doc.is_empty
    finish_edit(qtbot, win, engine)
    assert doc.is_empty and doc.undo_stack.count() == 0 and not doc.is_modified
    assert asked == [(ORPHAN_TEXT, "Reconstruct 1")] and errors == []


def test_result_for_the_open_picture_lands_above_its_source(qtbot, gated):
    win, engine = gated
    doc = win.document
    start_edit(win, engine)
    doc.add_layer(sample_rgba(seed=3), "on top")  # the document may change meanwhile
    finish_edit(qtbot, win, engine)
    assert [l.name for l in doc.layers] == ["first", "Reconstruct 1", "on top"]
    doc.undo_stack.undo()
    assert [l.name for l in doc.layers] == ["first", "on top"]


def test_a_result_that_cannot_be_added_is_a_message_not_an_empty_undo_entry(qtbot, tmp_path, errors, asked):
    engine = FakeEngine(result_size=(30, 20))  # a broken engine: the result has the wrong size
    win = make_window(qtbot, engine, tmp_path)
    finish = win.edit_session.controller.result_ready
    with qtbot.waitSignal(finish, timeout=30000):
        win.actions_by_key["diagnostic_reconstruct"].trigger()
    assert len(errors) == 1 and "could not be added" in errors[0][1] and "30×20" in errors[0][1]
    assert_untouched(win.document, "first", (64, 48))


# ---- closing with work in flight -------------------------------------------------------------------

def test_closing_during_an_edit_cancels_shows_finishing_and_closes_when_it_stopped(qtbot, tmp_path, errors, asked):
    engine = FakeEngine()
    engine.edit_gate.clear()  # the edit only ends by being cancelled
    win = make_window(qtbot, engine, tmp_path)
    runner = win.edit_session.controller.runner
    start_edit(win, engine)
    ticks = []
    assert not win.close()  # the window waits for the runner
    assert win.isVisible() and "Finishing" in win.statusBar().currentMessage()
    assert not win.centralWidget().isEnabled()  # nothing new can start meanwhile
    from PySide6.QtCore import QTimer
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(5)
    qtbot.waitUntil(lambda: not runner.busy, timeout=30000)  # cancelled at the engine's next step
    assert "Finishing" in win.statusBar().currentMessage()  # until the window has gone
    qtbot.waitUntil(lambda: not win.isVisible(), timeout=30000)
    timer.stop()
    assert ticks, "the GUI kept running while the window waited"
    assert runner.shutdown(wait=True, timeout=30)
    assert engine.runs == 0 and errors == []  # cancelled at its next step, nothing added


def test_closing_during_a_model_load_leaves_it_to_finish_in_the_background(qtbot, tmp_path, errors, asked):
    engine = FakeEngine()
    engine.load_gate.clear()  # a load from disk: it cannot be interrupted
    win = make_window(qtbot, engine, tmp_path)
    runner = win.edit_session.controller.runner
    win.edit_session.controller.load_model(ModelSpec("big-model"))
    assert engine.load_started.wait(30)
    win.close()
    qtbot.waitUntil(lambda: not win.isVisible(), timeout=5000)  # not held up by the load
    assert runner.alive and not engine.load_finished.is_set()
    assert not runner._thread.daemon  # so the process waits for the load instead of killing it half-way
    engine.load_gate.set()
    assert runner.shutdown(wait=True, timeout=30) and engine.load_finished.is_set()
    assert errors == []


def test_the_process_exits_cleanly_when_a_load_outlives_the_window(tmp_path):
    """The real thing, in a process of its own: a window closed while a model load blocks for two
    seconds goes at once, the process exits 0 when the load ends (it used to abort: "QThread:
    Destroyed while thread is still running", exit 134)."""
    script = textwrap.dedent("""
        import sys, threading
        from PySide6.QtCore import QTimer
        from PySide6.QtWidgets import QApplication
        from core import ModelSpec
        from editor_app.main_window import MainWindow
        from editor_app.settings import AppSettings
        from tests.fake_engine import FakeEngine

        app = QApplication([])
        engine = FakeEngine()
        engine.load_gate.clear()
        original = engine.load_model
        def load(spec, progress=None):
            threading.Timer(2.0, engine.load_gate.set).start()
            model = original(spec, progress)
            print("load finished", flush=True)
            return model
        engine.load_model = load
        win = MainWindow(AppSettings.in_memory(), probe_device=False, engine=engine)
        win.show()
        win.edit_session.controller.load_model(ModelSpec("big-model"))
        def close_once_loading():  # close while the load runs (not while it still waits in the queue)
            if engine.load_started.is_set():
                win.close()
            else:
                QTimer.singleShot(20, close_once_loading)
        QTimer.singleShot(0, close_once_loading)
        code = app.exec()
        print("window closed", "load finished" if engine.load_finished.is_set() else "load running", flush=True)
        sys.exit(code)
    """)
    env = {**__import__("os").environ, "QT_QPA_PLATFORM": "offscreen", "MALLEABLE_CONFIG_DIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["window closed load running", "load finished"]
    assert "QThread" not in proc.stderr


# ---- models and requests -------------------------------------------------------------------------

def test_download_progress_shows_and_cancels(qtbot, tmp_path, errors, asked):
    engine = FakeEngine(downloading=True)
    engine.load_gate.clear()
    win = make_window(qtbot, engine, tmp_path)
    ctl = win.edit_session.controller
    ctl.load_model(ModelSpec("some/hub-model"))
    qtbot.waitUntil(lambda: win.download_bar.isVisible(), timeout=30000)
    assert win.download_bar.value() == 50 and win.download_bar.maximum() == 200
    with qtbot.waitSignal(ctl.model_failed, timeout=30000) as blocker:
        win.download_cancel.click()
    assert blocker.args[0] == "cancelled" and not win.download_bar.isVisible()
    assert ctl.model_spec == ModelSpec() and errors == []  # edits go on with the model still there


def test_requests_hold_the_model_spec_and_layer_pixels_when_built(qtbot, tmp_path, errors, asked):
    engine = FakeEngine()
    win = make_window(qtbot, engine, tmp_path)
    session, doc = win.edit_session, win.document
    style = sample_rgba(seed=4)
    doc.add_layer(style, "Style")
    doc.set_active_layer(doc.layers[0])
    first = session.build_request("diffuseit", {"style_image": "Layer: Style"})
    with qtbot.waitSignal(session.controller.model_loaded, timeout=30000):
        session.controller.load_model(ModelSpec("other", device="cpu"))
    second = session.build_request("reconstruct", {})
    assert first.model == ModelSpec() and second.model == ModelSpec("other", device="cpu")
    got = first.inputs["style_image"]  # pixels, not a temporary file
    assert np.array_equal(got.rgb, style[..., :3]) and np.array_equal(got.alpha, style[..., 3])
    assert first.origin == {"document": doc.identity, "layer": doc.layers[0].id}


def test_gpu_memory_in_the_status_bar_comes_from_runner_events(qtbot, tmp_path, errors, asked):
    from core.runner import DeviceStatus, Job

    win = make_window(qtbot, FakeEngine(), tmp_path)
    ctl = win.edit_session.controller
    win.status.model_loaded("sd15 on cuda (fp16)")
    ctl.device_status.emit(DeviceStatus(Job(1, "edit"), "cuda:0", allocated=3 * 2 ** 30, reserved=4 * 2 ** 30,
                                        total=80 * 2 ** 30))
    ctl.device_status.emit(DeviceStatus(Job(2, "edit"), "cuda:0", allocated=5 * 2 ** 30, reserved=6 * 2 ** 30,
                                        total=80 * 2 ** 30))
    assert win.device_label.text() == "Model: sd15 on cuda (fp16)  · 5.0 GB"
    assert "reserved 6.0 GB of 80 GB" in win.device_label.toolTip()
    ctl.device_status.emit(DeviceStatus(Job(3, "edit"), "cpu"))  # nothing to show on a CPU
    assert win.device_label.text().endswith("5.0 GB")
