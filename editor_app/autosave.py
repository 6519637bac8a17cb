"""Autosave and crash recovery, without Qt of its own (writing a project composites its layers
with QPainter on a QImage, which is safe on the autosave thread once the application exists).

Each running editor owns one session folder in the recovery folder:

    <recovery>/session-<id>/session.lock     held (an OS file lock) for as long as the editor runs
    <recovery>/session-<id>/session.json     pid, host, start time: for people reading the folder
    <recovery>/session-<id>/<doc>.ora        the latest autosave of a modified document
    <recovery>/session-<id>/<doc>.json       its title, its project or picture path, when it was saved

Autosaves are written atomically (core.files.atomic_write) on a background thread. A clean exit
removes the session folder. After a crash the lock is gone with the process, so the next launch
finds the folder, offers each document in it (open or discard) and removes what is settled.

The recovery folder is MALLEABLE_RECOVERY_DIR when set (tests, portable installs), else the user's
data folder: ~/.local/share/Malleable/recovery (XDG_DATA_HOME), ~/Library/Application
Support/Malleable/recovery, %LOCALAPPDATA%\\Malleable\\recovery."""
from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from core.files import atomic_write

from .ora import OraError, ProjectData, write_ora

ENV_FOLDER = "MALLEABLE_RECOVERY_DIR"
SESSION_PREFIX = "session-"
STARTING_S = 30


def recovery_folder(override: str | os.PathLike | None = None) -> Path:
    if override:
        return Path(override).expanduser()
    env = os.environ.get(ENV_FOLDER)
    if env:
        return Path(env).expanduser()
    if sys.platform.startswith("win"):
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "Malleable" / "recovery"


# ---- the session lock: held while the process lives, released by the OS when it dies -----------

class _Lock:
    def __init__(self, path: Path):
        self.path = path
        self._fh = None

    def acquire(self) -> bool:
        """Take the lock without waiting; False when another live process holds it."""
        fh = open(self.path, "a+b")
        try:
            if sys.platform.startswith("win"):
                import msvcrt

                fh.seek(0)
                msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            return False
        self._fh = fh
        return True

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()  # closing releases the lock on every system
            self._fh = None


@dataclass(frozen=True)
class Recovered:
    """One document a crashed session left behind."""

    session: Path
    key: str
    title: str
    file_path: Optional[str]      # the project it belongs to (Save writes there), if any
    source_path: Optional[str]    # the picture it was opened from, if not a project
    saved_at: float

    @property
    def project(self) -> Path:
        return self.session / f"{self.key}.ora"

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.saved_at))
        where = self.file_path or self.source_path
        return f"{self.title} (autosaved {when}{', ' + where if where else ''})"


def _doc_files(session: Path, key: str) -> tuple[Path, Path]:
    return session / f"{key}.ora", session / f"{key}.json"


def _read_info(path: Path) -> Optional[dict]:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def find_recoverable(folder: Path | None = None, exclude: Path | None = None) -> list[Recovered]:
    """Documents left by sessions that ended without a clean exit (their lock is free). Sessions
    that left nothing (or only damaged scraps) are removed on the way."""
    folder = recovery_folder(folder)
    found: list[Recovered] = []
    try:
        sessions = sorted(p for p in folder.iterdir() if p.is_dir() and p.name.startswith(SESSION_PREFIX))
    except OSError:
        return []
    for session in sessions:
        if exclude is not None and session == exclude:
            continue
        if not (session / "session.json").exists() and _age(session) < STARTING_S:
            continue  # an editor starting this instant: it takes its lock right after creating the folder
        lock = _Lock(session / "session.lock")
        if not lock.acquire():
            continue  # another editor is running: its documents are its own
        try:
            docs = []
            for info_path in session.glob("*.json"):
                if info_path.name == "session.json":
                    continue
                info = _read_info(info_path)
                key = info_path.stem
                if info is None or not (session / f"{key}.ora").is_file():
                    continue
                docs.append(Recovered(session, key, str(info.get("title") or "Untitled"),
                                      info.get("file_path"), info.get("source_path"),
                                      float(info.get("saved_at") or 0.0)))
        finally:
            lock.release()
        if docs:
            found.extend(sorted(docs, key=lambda r: r.saved_at))
        else:
            shutil.rmtree(session, ignore_errors=True)
    return found


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


def discard(recovered: Recovered) -> None:
    """The user does not want it: remove it, and its session folder once that is empty."""
    for p in _doc_files(recovered.session, recovered.key):
        try:
            p.unlink()
        except OSError:
            pass
    _remove_if_settled(recovered.session)


def _remove_if_settled(session: Path) -> None:
    left = [p for p in session.glob("*.ora")]
    if not left:
        shutil.rmtree(session, ignore_errors=True)


class AutosaveSession:
    """This editor's recovery session. `save` writes off the calling thread; everything else is
    quick and may be called from the GUI thread."""

    def __init__(self, folder: Path | None = None):
        self.root = recovery_folder(folder)
        self.folder = self.root / f"{SESSION_PREFIX}{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = _Lock(self.folder / "session.lock")
        if not self._lock.acquire():  # a fresh folder: cannot happen unless the file system refuses locks
            raise OSError(f"cannot lock {self.folder}")
        atomic_write(self.folder / "session.json", lambda fh: fh.write(json.dumps({
            "pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}).encode()))
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="malleable-autosave")
        self._busy: dict[str, Future] = {}
        self._forgotten: set[str] = set()  # keys are never reused, so a late write can tell it is moot
        self._guard = threading.Lock()
        self.last_error: Optional[str] = None
        self.closed = False

    @staticmethod
    def new_key() -> str:
        return f"doc-{uuid.uuid4().hex[:12]}"

    def save(self, key: str, project: ProjectData, title: str, file_path=None, source_path=None) -> Optional[Future]:
        """Write the document in the background; None (nothing started) while the previous save of
        the same document is still running. `project` must not change afterwards (a snapshot)."""
        with self._guard:
            if self.closed:
                return None
            running = self._busy.get(key)
            if running is not None and not running.done():
                return None
            info = {"title": title, "file_path": str(file_path) if file_path else None,
                    "source_path": str(source_path) if source_path else None}
            fut = self._pool.submit(self._write, key, project, info)
            self._busy[key] = fut
            return fut

    def _write(self, key: str, project: ProjectData, info: dict) -> bool:
        ora, meta = _doc_files(self.folder, key)
        try:
            write_ora(ora, project)
            info = {**info, "saved_at": time.time()}
            atomic_write(meta, lambda fh: fh.write(json.dumps(info, indent=1).encode()))
        except (OraError, OSError) as exc:
            self.last_error = str(exc)  # shown by the window; the next interval tries again
            return False
        finally:
            with self._guard:
                moot = key in self._forgotten
            if moot:  # the document was saved or closed while this was being written
                self._unlink(key)
        self.last_error = None
        return True

    def _unlink(self, key: str) -> None:
        for p in _doc_files(self.folder, key):
            try:
                p.unlink()
            except OSError:
                pass

    def has(self, key: str) -> bool:
        return _doc_files(self.folder, key)[0].is_file()

    def forget(self, key: str) -> None:
        """The document was saved or closed on purpose: its autosave is not needed any more. Does
        not wait for a write in progress (that write removes its own files when it ends). The
        caller uses a new key for whatever it autosaves next."""
        with self._guard:
            self._forgotten.add(key)
            self._busy.pop(key, None)
        self._unlink(key)

    def adopt(self, recovered: Recovered) -> str:
        """Move a recovered document into this session (it stays protected until it is saved or
        this session ends cleanly) and return its key here."""
        key = self.new_key()
        for src, dst in zip(_doc_files(recovered.session, recovered.key), _doc_files(self.folder, key)):
            os.replace(src, dst)
        _remove_if_settled(recovered.session)
        return key

    def wait(self) -> None:
        """Block until every autosave started so far is written (tests, a clean exit)."""
        with self._guard:
            running = list(self._busy.values())
        for fut in running:
            fut.result()

    def close(self) -> None:
        """A clean exit: finish writing, then remove the whole session folder."""
        with self._guard:
            self.closed = True
        self._pool.shutdown(wait=True)
        self._lock.release()
        shutil.rmtree(self.folder, ignore_errors=True)

    def abandon(self) -> None:
        """What a crash leaves (for tests and for exits that must not clean up): the files stay, the
        lock goes."""
        with self._guard:
            self.closed = True
        self._pool.shutdown(wait=True)
        self._lock.release()
