"""Before the window opens on Linux: are the system libraries Qt's xcb platform plugin needs there?

On a clean Debian or Ubuntu, PySide6's wheel runs but its xcb plugin cannot load (libxcb-cursor0,
libxcb-icccm4, libxcb-keysyms1 … are not installed by default), and Qt aborts with "reinstalling
the application may fix this problem", which names neither the libraries nor the fix. So
`malleable` looks for them first, by loading each by its soname (the dynamic loader's own search:
ldconfig's cache, LD_LIBRARY_PATH, and a bundle's own folder), and when some are missing prints one
line naming them and the command that installs them, and exits 2.

It checks only when Qt would use xcb: QT_QPA_PLATFORM is "xcb", or unset outside a Wayland session
(offscreen, wayland, eglfs and the rest need none of these). No Qt is imported here.

The list is the NEEDED entries of PySide6's libqxcb.so and libQt6XcbQpa.so beyond Qt's own and the
C/C++ runtime (tests/test_platform_check.py reads them from the installed wheel); the packaging's
.deb declares the same Debian packages."""
from __future__ import annotations

import ctypes
import importlib.util
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SystemLibrary:
    soname: str
    debian: str   # apt (Debian, Ubuntu); "a | b" where releases name it differently (the .deb's Depends)
    fedora: str   # dnf (Fedora, RHEL)
    arch: str     # pacman (Arch)

    @property
    def apt_name(self) -> str:
        return self.debian.split("|")[-1].strip()  # the name older and newer releases both resolve


XCB_LIBRARIES = (
    SystemLibrary("libxcb-cursor.so.0", "libxcb-cursor0", "xcb-util-cursor", "xcb-util-cursor"),
    SystemLibrary("libxcb-icccm.so.4", "libxcb-icccm4", "xcb-util-wm", "xcb-util-wm"),
    SystemLibrary("libxcb-keysyms.so.1", "libxcb-keysyms1", "xcb-util-keysyms", "xcb-util-keysyms"),
    SystemLibrary("libxcb-image.so.0", "libxcb-image0", "xcb-util-image", "xcb-util-image"),
    SystemLibrary("libxcb-render-util.so.0", "libxcb-render-util0", "xcb-util-renderutil", "xcb-util-renderutil"),
    SystemLibrary("libxcb-util.so.1", "libxcb-util1", "xcb-util", "xcb-util"),
    SystemLibrary("libxcb-randr.so.0", "libxcb-randr0", "libxcb", "libxcb"),
    SystemLibrary("libxcb-render.so.0", "libxcb-render0", "libxcb", "libxcb"),
    SystemLibrary("libxcb-shape.so.0", "libxcb-shape0", "libxcb", "libxcb"),
    SystemLibrary("libxcb-shm.so.0", "libxcb-shm0", "libxcb", "libxcb"),
    SystemLibrary("libxcb-sync.so.1", "libxcb-sync1", "libxcb", "libxcb"),
    SystemLibrary("libxcb-xfixes.so.0", "libxcb-xfixes0", "libxcb", "libxcb"),
    SystemLibrary("libxcb-xkb.so.1", "libxcb-xkb1", "libxcb", "libxcb"),
    SystemLibrary("libxcb.so.1", "libxcb1", "libxcb", "libxcb"),
    SystemLibrary("libX11-xcb.so.1", "libx11-xcb1", "libX11-xcb", "libx11"),
    SystemLibrary("libX11.so.6", "libx11-6", "libX11", "libx11"),
    SystemLibrary("libxkbcommon.so.0", "libxkbcommon0", "libxkbcommon", "libxkbcommon"),
    SystemLibrary("libxkbcommon-x11.so.0", "libxkbcommon-x11-0", "libxkbcommon-x11", "libxkbcommon-x11"),
    SystemLibrary("libGL.so.1", "libgl1", "libglvnd-glx", "libglvnd"),
    SystemLibrary("libglib-2.0.so.0", "libglib2.0-0t64 | libglib2.0-0", "glib2", "glib2"),
    SystemLibrary("libgthread-2.0.so.0", "libglib2.0-0t64 | libglib2.0-0", "glib2", "glib2"),
)

INSTALLERS = (  # (command on PATH, how to install, which name)
    ("apt-get", "sudo apt install", "apt_name"),
    ("dnf", "sudo dnf install", "fedora"),
    ("pacman", "sudo pacman -S", "arch"),
)


def qt_uses_xcb(env=None) -> bool:
    env = os.environ if env is None else env
    if not sys.platform.startswith("linux"):
        return False
    chosen = env.get("QT_QPA_PLATFORM", "").strip().lower()
    if chosen:
        return chosen.split(":")[0].split(";")[0] == "xcb"
    return not (env.get("WAYLAND_DISPLAY") or env.get("XDG_SESSION_TYPE", "").lower() == "wayland")


def _bundle_dirs() -> list[Path]:
    """Folders a bundle or the Qt wheel may carry its own copies in (the loader would not search them)."""
    dirs = []
    if getattr(sys, "_MEIPASS", None):
        dirs.append(Path(sys._MEIPASS))
    spec = importlib.util.find_spec("PySide6")  # locates the package without importing Qt
    if spec is not None and spec.origin:
        dirs.append(Path(spec.origin).parent / "Qt" / "lib")
    return dirs


def _loads(soname: str) -> bool:
    try:
        ctypes.CDLL(soname)
        return True
    except OSError:
        return any((d / soname).is_file() for d in _bundle_dirs())


def missing_libraries(loads=None) -> list[SystemLibrary]:
    loads = loads or _loads
    return [lib for lib in XCB_LIBRARIES if not loads(lib.soname)]


def install_command(missing, which=shutil.which) -> str:
    for tool, command, attr in INSTALLERS:
        if which(tool):
            names = list(dict.fromkeys(getattr(lib, attr) for lib in missing))
            return f"{command} {' '.join(names)}"
    return "install the packages that provide " + ", ".join(lib.soname for lib in missing)


def explain(missing, which=shutil.which) -> str:
    names = ", ".join(lib.soname for lib in missing)
    return (f"malleable: Qt cannot open a window: its xcb platform plugin needs system libraries that are "
            f"missing ({names}). Install them with: {install_command(missing, which)}")


def check(env=None, loads=None, which=shutil.which) -> int:
    """0 when the window can open (or Qt will not use xcb); else print one line and return 2."""
    if not qt_uses_xcb(env):
        return 0
    missing = missing_libraries(loads)
    if not missing:
        return 0
    print(explain(missing, which), file=sys.stderr)
    return 2
