"""What Malleable remembers between runs: window layout, recent files, brush, last folder, the model
(with its LoRAs, family and low-VRAM choice) and whether edits take the visible picture.

MALLEABLE_CONFIG_DIR points the settings at another folder (tests, portable installs)."""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings

MAX_RECENT = 10
DEFAULT_AUTOSAVE_MIN = 5.0
log = logging.getLogger(__name__)


class AppSettings:
    def __init__(self, qsettings: QSettings | None = None):
        self._s = qsettings if qsettings is not None else self._default_store()

    @staticmethod
    def _default_store() -> QSettings:
        folder = os.environ.get("MALLEABLE_CONFIG_DIR")
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
            return QSettings(str(Path(folder) / "malleable.ini"), QSettings.Format.IniFormat)
        return QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, "Malleable", "Malleable")

    @classmethod
    def in_memory(cls) -> "AppSettings":
        """Remembers nothing on disk: for screenshots and tests that must not touch the user's settings."""
        return cls(_MemorySettings())

    # window
    def window_geometry(self) -> QByteArray | None:
        return self._bytes("window/geometry")

    def window_state(self) -> QByteArray | None:
        return self._bytes("window/state")

    def save_window(self, geometry: QByteArray, state: QByteArray) -> None:
        self._s.setValue("window/geometry", geometry)
        self._s.setValue("window/state", state)
        self._s.sync()

    def _bytes(self, key):
        v = self._s.value(key)
        return v if isinstance(v, QByteArray) and not v.isEmpty() else None

    # recent files
    def recent_files(self) -> list[str]:
        v = self._s.value("files/recent", [])
        if isinstance(v, str):  # QSettings returns a lone string for a one-item list
            v = [v]
        return [str(p) for p in (v or []) if p]

    def add_recent_file(self, path) -> list[str]:
        p = str(Path(path).resolve())
        files = [p] + [f for f in self.recent_files() if f != p]
        self._s.setValue("files/recent", files[:MAX_RECENT])
        self._s.setValue("files/last_dir", str(Path(p).parent))
        self._s.sync()
        return files[:MAX_RECENT]

    def clear_recent_files(self) -> None:
        self._s.setValue("files/recent", [])

    def last_dir(self) -> str:
        return str(self._s.value("files/last_dir", str(Path.home())))

    # autosave
    def autosave_minutes(self) -> float:
        """Minutes between autosaves of a modified document (0 = off). Default 5."""
        try:
            value = float(self._s.value("autosave/minutes", DEFAULT_AUTOSAVE_MIN))
        except (TypeError, ValueError):
            return DEFAULT_AUTOSAVE_MIN
        return max(0.0, value)

    def set_autosave_minutes(self, minutes: float) -> None:
        self._s.setValue("autosave/minutes", float(minutes))

    def recovery_folder(self) -> str | None:
        """Where autosaves go when not the default (MALLEABLE_RECOVERY_DIR, then the user's data folder)."""
        v = self._s.value("autosave/folder", "")
        return str(v) if v else None

    # brush
    def brush(self) -> tuple[float, float]:
        try:
            return float(self._s.value("brush/size", 40)), float(self._s.value("brush/hardness", 0.7))
        except (TypeError, ValueError):
            return 40.0, 0.7

    def save_brush(self, size: float, hardness: float) -> None:
        self._s.setValue("brush/size", size)
        self._s.setValue("brush/hardness", hardness)


    # the model: the last one that loaded, so the next start loads it again
    def model_spec(self):
        """The remembered ModelSpec, or the demo's when none (or an unreadable one) is stored."""
        from core.models import ModelSpec

        raw = self._s.value("model/spec", "")
        if not raw:
            return ModelSpec()
        try:
            return ModelSpec(**json.loads(raw))
        except Exception:  # a stale or hand-edited entry must not stop the editor from starting
            log.warning("ignoring the remembered model: %r", raw)
            return ModelSpec()

    def save_model_spec(self, spec) -> None:
        self._s.setValue("model/spec", json.dumps(dataclasses.asdict(spec)))
        self._s.sync()

    # edits
    def edit_visible(self) -> bool:
        return str(self._s.value("edit/visible_picture", "false")).lower() == "true"

    def save_edit_visible(self, on: bool) -> None:
        self._s.setValue("edit/visible_picture", "true" if on else "false")


class _MemorySettings:
    """The part of QSettings' interface AppSettings uses, kept in a dict."""

    def __init__(self):
        self._d = {}

    def value(self, key, default=None):
        return self._d.get(key, default)

    def setValue(self, key, value):
        self._d[key] = value

    def sync(self):
        pass
