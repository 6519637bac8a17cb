"""Autosave and crash recovery: documents are written in the background, found after a session
that ended without a clean exit (a real kill -9 of the editor included), offered, and cleaned up
after a save, a discard or a clean exit. Opening runs off the GUI thread with progress and Cancel."""
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QProgressDialog, QPushButton

from editor_app import autosave
from editor_app.ora import LayerData, ProjectData, ReadCancelled, read_ora
from editor_app.settings import AppSettings
from tests.editor_helpers import sample_rgba, write_png
from widgets import dialogs

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def qt_first(qapp):
    """Writing a project composites its layers with QPainter; on the autosave thread that must not
    be the process's first touch of Qt (Qt would take that thread for its main thread), which in
    the editor it never is: the application exists before any window or autosave."""
    return qapp


def project(seed=0) -> ProjectData:
    return ProjectData(32, 24, [LayerData("base", sample_rgba(32, 24, seed))])


# ---------------------------------------------------------------------------------------- Qt-free
def test_a_live_session_is_never_offered_an_abandoned_one_is(recovery_folder):
    live = autosave.AutosaveSession()
    assert live.folder.parent == recovery_folder  # MALLEABLE_RECOVERY_DIR, set for every test
    live.save("doc-a", project(), "a.png", source_path="/pictures/a.png").result()
    assert autosave.find_recoverable() == []  # its lock is held: another editor is running

    live.abandon()  # what a crash leaves: the files, no lock
    (found,) = autosave.find_recoverable()
    assert (found.title, found.source_path, found.file_path) == ("a.png", "/pictures/a.png", None)
    assert np.array_equal(read_ora(found.project).layers[0].pixels, project().layers[0].pixels)
    autosave.discard(found)
    assert autosave.find_recoverable() == [] and not live.folder.exists()


def test_clean_close_removes_the_session_and_empty_crashed_sessions_are_swept(recovery_folder):
    s = autosave.AutosaveSession()
    s.save("doc-a", project(), "a").result()
    s.close()
    assert list(recovery_folder.iterdir()) == []
    empty = autosave.AutosaveSession()  # crashed before anything was modified
    empty.abandon()
    assert autosave.find_recoverable() == [] and not empty.folder.exists()


def test_forget_during_a_write_leaves_nothing(monkeypatch):
    s = autosave.AutosaveSession()
    gate = threading.Event()
    real = autosave.write_ora

    def slow(path, data, backup=False):
        gate.wait(10)
        real(path, data, backup)
    monkeypatch.setattr(autosave, "write_ora", slow)
    fut = s.save("doc-a", project(), "a")
    assert s.save("doc-a", project(1), "a") is None  # one write per document at a time
    s.forget("doc-a")  # saved by the user meanwhile: does not wait for the write
    gate.set()
    fut.result()
    assert not s.has("doc-a") and not list(s.folder.glob("doc-a*"))
    s.close()


def test_adopting_moves_a_recovered_document_into_this_session():
    old = autosave.AutosaveSession()
    old.save("doc-a", project(), "a").result()
    old.abandon()
    (found,) = autosave.find_recoverable()
    new = autosave.AutosaveSession()
    key = new.adopt(found)
    assert new.has(key) and not old.folder.exists()
    assert autosave.find_recoverable() == []
    new.close()


def test_recovery_folder_default_is_the_users_data_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("MALLEABLE_RECOVERY_DIR")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    if sys.platform.startswith("linux"):
        assert autosave.recovery_folder() == tmp_path / "data" / "Malleable" / "recovery"
    assert autosave.recovery_folder("/somewhere") == Path("/somewhere")


# ---------------------------------------------------------------------------------------- the window
@pytest.fixture
def make_window(qapp):
    from editor_app.main_window import MainWindow

    made = []

    def make(settings=None):
        w = MainWindow(settings or AppSettings.in_memory(), probe_device=False)
        made.append(w)
        return w
    yield make
    for w in made:
        w.document.undo_stack.setClean()
        if w.autosave is not None and w.autosave.session is not None:
            w.autosave.close_clean()
        w.deleteLater()


class Offers(list):
    """What the recovery dialog was shown; `answer` is what the person presses."""
    answer = dialogs.OPEN


@pytest.fixture
def offered(monkeypatch):
    """The recovery dialog, answered by the test."""
    shown = Offers()

    def ask(parent, description):
        shown.append(description)
        return shown.answer
    monkeypatch.setattr(dialogs, "ask_recover", ask)
    return shown


def modify(window, tmp_path, name="photo.png"):
    path = Path(write_png(tmp_path / name, sample_rgba(48, 32, seed=3)))
    assert window.open_path(path)
    window.document.add_point_pair(3, 4, 20, 10)
    window.document.fill_edit_mask()
    return path


def test_autosave_interval_comes_from_settings(make_window):
    w = make_window()
    assert w.autosave.timer.isActive() and w.autosave.timer.interval() == 5 * 60_000
    settings = AppSettings.in_memory()
    settings.set_autosave_minutes(0)
    assert not make_window(settings).autosave.timer.isActive()


def test_saving_drops_the_autosave_and_unchanged_documents_are_not_rewritten(make_window, tmp_path):
    w = make_window()
    modify(w, tmp_path)
    w.autosave.autosave_now().result()
    assert w.autosave.session.has(w.autosave.key)
    assert w.autosave.autosave_now() is None  # nothing changed since
    w.save_to(tmp_path / "p.ora")
    assert list(w.autosave.folder.glob("*.ora")) == []


def test_simulated_crash_then_the_document_is_offered_on_next_start(make_window, tmp_path, qtbot, offered,
                                                                    monkeypatch):
    first = make_window()
    picture = modify(first, tmp_path)
    first.autosave.autosave_now().result()
    expected = first.document.composite_rgba()
    first.autosave.session.abandon()  # the session ends without a clean exit

    second = make_window()
    qtbot.waitUntil(lambda: bool(offered), timeout=5000)
    assert "photo.png" in offered[0]
    d = second.document
    assert np.array_equal(d.composite_rgba(), expected) and d.point_pairs() == [(3.0, 4.0, 20.0, 10.0)]
    assert d.edit_mask_array().all()
    assert d.is_modified and d.file_path is None and d.source_path == picture  # Save asks where, as before
    # Still protected in the new session; a clean exit (the user discards the changes) settles it.
    assert second.autosave.session.has(second.autosave.key)
    monkeypatch.setattr(dialogs, "ask_save_changes", lambda parent, name: dialogs.DISCARD)
    second.close()
    assert autosave.find_recoverable() == []


def test_discarded_recovery_is_gone_and_later_keeps_it(make_window, tmp_path, qtbot, offered):
    first = make_window()
    modify(first, tmp_path)
    first.autosave.autosave_now().result()
    first.autosave.session.abandon()
    offered.answer = dialogs.LATER
    make_window()
    qtbot.waitUntil(lambda: bool(offered), timeout=5000)
    assert len(autosave.find_recoverable()) == 1
    offered.answer = dialogs.DISCARD
    third = make_window()
    qtbot.waitUntil(lambda: len(offered) == 2, timeout=5000)
    assert autosave.find_recoverable() == [] and third.document.is_empty


CRASHING_EDITOR = textwrap.dedent('''
    import sys, time
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    from editor_app.main import make_application
    from editor_app.main_window import MainWindow
    from editor_app.settings import AppSettings
    app = make_application()
    settings = AppSettings()                  # MALLEABLE_CONFIG_DIR: the test's folder
    settings.set_autosave_minutes(1 / 60)     # every second
    w = MainWindow(settings, probe_device=False, load_model=False)
    w.show()
    assert w.open_path(sys.argv[2])
    w.document.add_point_pair(5, 6, 25, 12)
    while not list(w.autosave.folder.glob("*.json"))[1:]:  # session.json and the document's
        app.processEvents()
        time.sleep(0.05)
    print("autosaved", flush=True)
    while True:                               # killed here, as a crash would
        app.processEvents()
        time.sleep(0.05)
''')


@pytest.mark.skipif(sys.platform.startswith("win"), reason="SIGKILL")
def test_killed_editor_is_recovered_on_next_start(make_window, tmp_path, qtbot, offered, recovery_folder):
    picture = write_png(tmp_path / "cat.png", sample_rgba(40, 30, seed=9))
    env = {**os.environ, "MALLEABLE_CONFIG_DIR": str(tmp_path / "config"), "QT_QPA_PLATFORM": "offscreen"}
    proc = subprocess.Popen([sys.executable, "-c", CRASHING_EDITOR, str(ROOT), picture], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "autosaved", proc.stderr.read() if proc.poll() is not None else line
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(60)
    assert proc.returncode == -signal.SIGKILL

    window = make_window()
    qtbot.waitUntil(lambda: bool(offered), timeout=10000)
    assert "cat.png" in offered[0]
    d = window.document
    assert d.point_pairs() == [(5.0, 6.0, 25.0, 12.0)] and d.is_modified
    assert np.array_equal(d.layers[0].pixels, sample_rgba(40, 30, seed=9))


# ---------------------------------------------------------------------------------------- opening off the GUI thread
def test_reading_runs_off_the_gui_thread_with_progress_and_cancel(qapp, qtbot):
    from editor_app.file_loader import run_with_progress

    gui = threading.get_ident()
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(20)
    seen = {}

    def read(progress, cancel):
        seen["thread"] = threading.get_ident()
        for i in range(500):
            progress(i, 500, f"layer {i}")
            if cancel():
                raise ReadCancelled()
            time.sleep(0.01)
        return "done"

    def press_cancel():
        for w in QApplication.topLevelWidgets():
            if isinstance(w, QProgressDialog) and w.isVisible():
                seen["dialog"] = w.labelText()
                w.grab().save(str(ROOT / "out" / "progress_dialog.png")) if (ROOT / "out").is_dir() else None
                w.findChild(QPushButton).click()  # the person presses Cancel
                return
        QTimer.singleShot(50, press_cancel)
    QTimer.singleShot(600, press_cancel)  # after the dialog's delay
    t0 = time.perf_counter()
    with pytest.raises(ReadCancelled):
        run_with_progress(None, "Opening “big.ora”…", read)
    timer.stop()
    assert seen["thread"] != gui
    assert "big.ora" in seen["dialog"] and "layer" in seen["dialog"]
    assert len(ticks) >= 10  # the GUI thread kept running its timers meanwhile
    assert time.perf_counter() - t0 < 4.5  # cancelled well before the 5 s the read would take


def test_cancelled_open_leaves_the_document_as_it_was(make_window, tmp_path, monkeypatch):
    from editor_app import document_io

    w = make_window()
    modify(w, tmp_path)
    before = w.document.composite_rgba()

    def cancelled(parent, path, show_dialog=True):
        raise ReadCancelled()
    monkeypatch.setattr(document_io, "read_document_file", cancelled)
    w.document.undo_stack.setClean()
    assert not w.open_path(tmp_path / "other.ora")
    assert np.array_equal(w.document.composite_rgba(), before)


def test_saving_a_project_keeps_the_previous_version(make_window, tmp_path):
    w = make_window()
    modify(w, tmp_path)
    project = tmp_path / "p.ora"
    assert w.save_to(project)
    assert not (tmp_path / "p.ora~").exists()
    first = project.read_bytes()
    w.document.clear_point_pairs()
    assert w.save_to(project)
    assert (tmp_path / "p.ora~").read_bytes() == first and project.read_bytes() != first
    def pairs(path):  # point pairs are kept per layer
        return sum(len(layer.points) for layer in read_ora(path).layers)

    assert pairs(tmp_path / "p.ora~") == 1 and pairs(project) == 0
