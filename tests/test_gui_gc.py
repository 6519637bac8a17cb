"""Cycles are collected on the GUI thread only (editor_app/gui_gc.py)."""
from __future__ import annotations

import gc
import threading

from editor_app.gui_gc import GuiThreadCollector, collect_if_due


class Cycle:
    def __init__(self):
        self.me = self


def _collections_by_thread():
    seen: list[int] = []

    def callback(phase, info):
        if phase == "start":
            seen.append(threading.get_ident())
    return seen, callback


def test_a_worker_thread_never_collects_and_the_gui_thread_does(qtbot, qapp):
    # The suite runs with automatic collection off (conftest): turn it on, as in a fresh
    # interpreter, so that only the collector can be what turns it off again.
    gc.enable()
    collector = GuiThreadCollector(qapp)
    seen, callback = _collections_by_thread()
    gc.callbacks.append(callback)
    try:
        assert GuiThreadCollector.install(qapp) is GuiThreadCollector.install(qapp)  # one per application
        assert not gc.isenabled()

        def allocate():
            for _ in range(50_000):  # far past every threshold
                Cycle()
        worker = threading.Thread(target=allocate)
        worker.start()
        worker.join()
        assert worker.ident not in seen
        qtbot.waitUntil(lambda: threading.get_ident() in seen, timeout=3000)
    finally:
        gc.callbacks.remove(callback)
        collector.stop()
        assert gc.isenabled()  # stop gives back what it found
        gc.disable()           # the suite's own setting
        collector.deleteLater()


def test_collect_if_due_follows_the_thresholds():
    gc.collect()
    assert collect_if_due((10**9, 10, 10)) == 0          # generation 0 below its threshold
    garbage = [Cycle() for _ in range(100)]
    del garbage
    assert collect_if_due((1, 10**9, 10**9)) >= 100      # due: generation 0 finds the cycles
