"""core.files.atomic_write: permissions, symlinks, umask, the NAME~ backup and temporary files left
by a killed save."""
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from core.files import (atomic_write, backup_path, check_writable_folder, remove_stale_temp_files,
                        stale_temp_files)

posix_only = pytest.mark.skipif(sys.platform.startswith("win"), reason="POSIX permissions")
ROOT = Path(__file__).resolve().parents[1]


def write_bytes(data):
    return lambda fh: fh.write(data)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture()
def umask():
    def set_(value):
        os.umask(value)
    before = os.umask(0o022)
    os.umask(before)
    yield set_
    os.umask(before)


@posix_only
@pytest.mark.parametrize("mask,expected", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_new_files_get_the_users_umask(tmp_path, umask, mask, expected):
    umask(mask)
    atomic_write(tmp_path / "new.png", write_bytes(b"x"))
    assert mode(tmp_path / "new.png") == expected


@posix_only
@pytest.mark.parametrize("kept", [0o664, 0o600, 0o640, 0o444])
def test_saving_keeps_the_existing_permissions(tmp_path, umask, kept):
    umask(0o077)  # would give 0600 to a new file: the old file's mode must win
    path = tmp_path / "p.ora"
    path.write_bytes(b"old")
    os.chmod(path, kept)
    atomic_write(path, write_bytes(b"new"))
    assert path.read_bytes() == b"new" and mode(path) == kept


@posix_only
def test_symlink_is_written_through_to_its_target(tmp_path):
    real = tmp_path / "store" / "real.ora"
    real.parent.mkdir()
    real.write_bytes(b"old")
    link = tmp_path / "link.ora"
    link.symlink_to(real)
    atomic_write(link, write_bytes(b"new"))
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.ora", "store"]


def test_backup_keeps_the_previous_version(tmp_path):
    path = tmp_path / "p.ora"
    atomic_write(path, write_bytes(b"one"), backup=True)
    assert not backup_path(path).exists()  # nothing to keep yet
    atomic_write(path, write_bytes(b"two"), backup=True)
    assert backup_path(path).name == "p.ora~" and backup_path(path).read_bytes() == b"one"
    atomic_write(path, write_bytes(b"three"), backup=True)
    assert path.read_bytes() == b"three" and backup_path(path).read_bytes() == b"two"
    atomic_write(path, write_bytes(b"four"))  # no backup asked: the old one stays as it was
    assert backup_path(path).read_bytes() == b"two"


def test_failed_write_leaves_old_file_and_no_temp(tmp_path):
    path = tmp_path / "p.ora"
    path.write_bytes(b"old")

    def boom(fh):
        fh.write(b"half")
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, boom, backup=True)
    assert path.read_bytes() == b"old" and sorted(os.listdir(tmp_path)) == ["p.ora"]


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@posix_only
def test_temp_file_of_a_killed_save_is_removed_by_the_next_save(tmp_path):
    path = tmp_path / "p.ora"
    path.write_bytes(b"good")
    # A real save, killed (SIGKILL: no cleanup can run) while it writes.
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        from core.files import atomic_write
        def write(fh):
            fh.write(b"partial")
            fh.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        atomic_write({str(path)!r}, write)
    """)
    proc = subprocess.run([sys.executable, "-c", script], timeout=60)
    assert proc.returncode == -9
    left = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(left) == 1 and left[0].name.startswith(".p.ora.")
    assert path.read_bytes() == b"good"  # the kill never touched the project
    assert stale_temp_files(path) == left

    mine = tmp_path / f".p.ora.{os.getpid()}.abcdef01.tmp"  # a save in progress in a live process
    mine.write_bytes(b"busy")
    old_style = tmp_path / ".p.ora.k3j2h1g0.tmp"  # an older version's mkstemp name, two days old
    old_style.write_bytes(b"x")
    os.utime(old_style, (0, 0))
    other = tmp_path / f".q.ora.{dead_pid()}.abcdef01.tmp"  # another file's: not this save's business
    other.write_bytes(b"x")
    atomic_write(path, write_bytes(b"better"))
    assert path.read_bytes() == b"better"
    assert not left[0].exists() and not old_style.exists()
    assert mine.exists() and other.exists()
    assert remove_stale_temp_files(tmp_path / "q.ora") == [other]


def test_writable_folder_check(tmp_path):
    assert check_writable_folder(tmp_path, "output folder") is None
    assert list(tmp_path.iterdir()) == []  # the probe is gone
    (tmp_path / "f").write_text("x")
    assert "not a folder" in check_writable_folder(tmp_path / "f", "output folder")
    assert "does not exist" in check_writable_folder(tmp_path / "nope", "output folder")
    if Path("/proc/self").is_dir():  # even root cannot create files here
        assert "Cannot write" in check_writable_folder("/proc/self", "output folder")
