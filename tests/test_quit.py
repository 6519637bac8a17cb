"""Quitting is clean (issue 25, item 6): after an edit of each method (tiny settings, the demo model)
and File ▸ Model… opened and cancelled, Ctrl+Q ends the process with exit 0, no Qt warning about an
object deleted twice (it came just before the segfaults, in 6 of 8 runs), no timer still running
and no thread left. The probe runs editor_app.main.main, the `malleable` command itself. Each run is a process of its own (tests/quit_probe.py)."""
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from core.registry import all_methods

ROOT = Path(__file__).resolve().parents[1]
QT_TROUBLE = ("QObject", "QThread", "QTimer", "deleted", "Segmentation", "Aborted", "Traceback")


KINDS = [m.name for m in all_methods()] + ["at-once"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every probe, two at a time (each runs torch on one thread): the machine's cores, not its
    patience, set how long this takes."""
    def probe(kind):
        env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "HF_HUB_OFFLINE": "1",
               "MALLEABLE_CONFIG_DIR": str(tmp_path_factory.mktemp(f"config-{kind}")),
               # its own recovery folder: another session's leftovers would be offered in a modal dialog
               "MALLEABLE_RECOVERY_DIR": str(tmp_path_factory.mktemp(f"recovery-{kind}"))}
        return subprocess.run([sys.executable, "-m", "tests.quit_probe", kind], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=600)

    with ThreadPoolExecutor(max_workers=max(1, min(2, os.cpu_count() or 1))) as pool:
        return dict(zip(KINDS, pool.map(probe, KINDS)))


@pytest.mark.parametrize("kind", KINDS)
def test_quit_after_an_edit_is_clean(kind, runs):
    """at-once: Ctrl+Q while the model still loads (the load used to fail at the interpreter's exit
    with a traceback: its thread pool refused work)."""
    proc = runs[kind]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines() == ["edit: done", "timers: 0", "threads: "], proc.stdout + proc.stderr[-2000:]
    trouble = [line for line in proc.stderr.splitlines() if any(t in line for t in QT_TROUBLE)]
    assert not trouble, "\n".join(trouble)
