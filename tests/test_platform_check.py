"""First start on a clean Linux (issue 25, item 10): when Qt's xcb plugin would not load, `malleable`
says which system libraries are missing and how to install them, in one line, exit 2; the .deb and
the README name the same packages."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from editor_app import main as main_module
from editor_app import platform_check
from editor_app.platform_check import XCB_LIBRARIES, check, qt_uses_xcb

ROOT = Path(__file__).resolve().parents[1]
CLEAN_DEBIAN = {"libxcb-cursor.so.0", "libxcb-icccm.so.4", "libxcb-keysyms.so.1"}  # what the finding hit


def loads_all_but(missing):
    return lambda soname: soname not in missing


@pytest.mark.parametrize("env, uses", [({}, True), ({"QT_QPA_PLATFORM": "xcb"}, True),
                                       ({"QT_QPA_PLATFORM": "offscreen"}, False),
                                       ({"QT_QPA_PLATFORM": "wayland"}, False),
                                       ({"WAYLAND_DISPLAY": "wayland-0"}, False),
                                       ({"WAYLAND_DISPLAY": "wayland-0", "QT_QPA_PLATFORM": "xcb"}, True)])
def test_it_checks_only_when_qt_would_use_xcb(env, uses, monkeypatch):
    monkeypatch.setattr(platform_check.sys, "platform", "linux")
    assert qt_uses_xcb(env) is uses


@pytest.mark.parametrize("tool, command", [("apt-get", "sudo apt install libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1"),
                                           ("dnf", "sudo dnf install xcb-util-cursor xcb-util-wm xcb-util-keysyms"),
                                           ("pacman", "sudo pacman -S xcb-util-cursor xcb-util-wm xcb-util-keysyms")])
def test_missing_libraries_are_named_with_the_command_that_installs_them(tool, command, capsys, monkeypatch):
    monkeypatch.setattr(platform_check.sys, "platform", "linux")
    code = check({}, loads=loads_all_but(CLEAN_DEBIAN), which=lambda t: t == tool)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert command in err[0] and all(s in err[0] for s in CLEAN_DEBIAN)


def test_nothing_is_said_when_everything_is_there(capsys, monkeypatch):
    monkeypatch.setattr(platform_check.sys, "platform", "linux")
    assert check({}, loads=lambda soname: True) == 0
    assert check({"QT_QPA_PLATFORM": "offscreen"}, loads=lambda soname: False) == 0
    assert capsys.readouterr().err == ""


def test_the_command_exits_2_before_qt_is_started(monkeypatch, capsys):
    monkeypatch.setattr(platform_check.sys, "platform", "linux")
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.delenv("XDG_SESSION_TYPE", raising=False)
    monkeypatch.setattr(platform_check, "_loads", loads_all_but(CLEAN_DEBIAN))
    monkeypatch.setattr(main_module, "make_application", lambda: pytest.fail("Qt was started"))
    assert main_module.main([]) == 2
    assert "libxcb-cursor.so.0" in capsys.readouterr().err


def _needed(lib: Path) -> list[str]:
    out = subprocess.run(["readelf", "-d", str(lib)], capture_output=True, text=True, check=True).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)


@pytest.mark.skipif(shutil.which("readelf") is None, reason="needs readelf (binutils)")
def test_the_list_is_what_the_xcb_plugin_links_against():
    import PySide6

    qt = Path(PySide6.__file__).parent / "Qt"
    needed = set(_needed(qt / "plugins" / "platforms" / "libqxcb.so")) | set(_needed(qt / "lib" / "libQt6XcbQpa.so.6"))
    runtime = {"libc.so.6", "libm.so.6", "libstdc++.so.6", "libgcc_s.so.1"}
    system = {n for n in needed if not n.startswith("libQt6") and n not in runtime}
    assert system == {lib.soname for lib in XCB_LIBRARIES}


def test_the_deb_and_the_readme_name_them():
    control = (ROOT / "packaging" / "linux" / "deb" / "control.in").read_text()
    depends = next(line for line in control.splitlines() if line.startswith("Depends:"))
    declared = {d.strip() for d in depends.split(":", 1)[1].split(",")}
    assert {lib.debian for lib in XCB_LIBRARIES} <= declared
    readme = (ROOT / "README.md").read_text()
    apt_line = next(line for line in readme.splitlines() if line.startswith("sudo apt install"))
    assert {lib.apt_name for lib in XCB_LIBRARIES} <= set(apt_line.split()[3:])
