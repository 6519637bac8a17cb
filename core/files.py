"""Writing files so that a crash, a kill or a full disk never leaves half of one: every file the
product writes (edited images, projects, exports, autosaves) goes through `atomic_write`.

What a save keeps: the existing file's permissions (and group, where allowed); a symlink stays a
symlink, and its target is what gets replaced; a new file gets the user's umask (the temporary file
is created with 0666 and the kernel applies the umask, as for any new file); optionally the
previous version as `NAME~`. The temporary file is `.NAME.PID.XXXXXXXX.tmp` beside the target, so
one left by a killed save is recognised (its process is gone) and removed by the next save."""
from __future__ import annotations

import os
import secrets
import shutil
import stat
import sys
import time
from pathlib import Path
from contextlib import contextmanager
from typing import BinaryIO, Callable, Iterator

BACKUP_SUFFIX = "~"
# A temporary file whose name carries no process id (older versions' mkstemp names) is stale once
# it is this old; one whose process is gone is stale at once.
STALE_AFTER_S = 24 * 3600

# Temporary files being written now, so a forced exit (a second Ctrl+C) can still remove them.
_pending: set[str] = set()


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None], backup: bool = False) -> None:
    """Write through a temporary file in the target's folder, then rename over the target: the
    target is either the old file or the new one, never a mix. The temporary file is removed on any
    failure, KeyboardInterrupt and SIGTERM (raised as an exception by the CLI) included.
    backup=True first keeps the previous version as `NAME~`."""
    target = _final_target(Path(path))
    remove_stale_temp_files(target)
    try:
        old = os.stat(target)
    except FileNotFoundError:
        old = None
    tmp, fd = _create_temp(target)
    with _removed_on_failure(tmp):
        with os.fdopen(fd, "wb") as fh:
            if old is not None:
                _copy_permissions(fh.fileno(), old)
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        if backup and old is not None and stat.S_ISREG(old.st_mode):
            _keep_backup(target)
        os.replace(tmp, target)
    _sync_folder(target.parent)


@contextmanager
def _removed_on_failure(tmp: str) -> Iterator[None]:
    """A temporary file is deleted if anything (KeyboardInterrupt included) interrupts its use."""
    _pending.add(tmp)
    try:
        yield
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    finally:
        _pending.discard(tmp)


def backup_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(path.name + BACKUP_SUFFIX)


def _final_target(path: Path) -> Path:
    """A symlink is written through: its target is replaced and the link stays as it was."""
    if path.is_symlink():
        return Path(os.path.realpath(path))
    return path


def _create_temp(target: Path) -> tuple[str, int]:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = str(target.parent / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, flags, 0o666)  # the umask applies, as for any new file
        except FileExistsError:
            continue
        return tmp, fd


def _copy_permissions(fd: int, old: os.stat_result) -> None:
    """The new version gets the old one's mode bits and, where the system lets us, its group."""
    if hasattr(os, "fchmod"):
        os.fchmod(fd, stat.S_IMODE(old.st_mode))
    if hasattr(os, "fchown"):
        try:
            os.fchown(fd, -1, old.st_gid)
        except OSError:
            pass  # not a member of that group: the folder's default group it is


def _keep_backup(target: Path) -> None:
    """`NAME~` becomes the version about to be replaced: a hard link (instant, same permissions)
    where the file system has them, a copy otherwise."""
    dest = backup_path(target)
    tmp = f"{dest.parent / ('.' + dest.name)}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    with _removed_on_failure(tmp):
        try:
            os.link(target, tmp)
        except OSError:
            shutil.copy2(target, tmp)
        os.replace(tmp, dest)


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX); where folders cannot be opened this is a no-op."""
    if sys.platform.startswith("win"):
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ---- temporary files left by a killed save ------------------------------------------------------

def unreadable(exc: OSError, kind: str) -> str:
    """The end of a sentence about a file that cannot be opened: "does not exist.", "is a folder,
    not a picture.", "cannot be read: permission denied."."""
    if isinstance(exc, FileNotFoundError):
        return "does not exist."
    if isinstance(exc, IsADirectoryError):
        return f"is a folder, not a {kind}."
    if isinstance(exc, PermissionError):
        return "cannot be read: permission denied."
    return f"cannot be read: {exc.strerror or exc}."


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if sys.platform.startswith("win"):
        return True  # no safe probe there (os.kill(pid, 0) would signal it): fall back to age
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def stale_temp_files(target: str | os.PathLike) -> list[Path]:
    """Temporary files of earlier saves of `target` whose process is gone (or, where that cannot be
    told, that are older than STALE_AFTER_S)."""
    target = Path(target)
    prefix = f".{target.name}."
    out = []
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return []
    now = time.time()
    for entry in entries:
        name = entry.name
        if not (name.startswith(prefix) and name.endswith(".tmp")) or entry.path in _pending:
            continue
        middle = name[len(prefix):-len(".tmp")].split(".")
        try:
            age = now - entry.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        pid = int(middle[0]) if len(middle) == 2 and middle[0].isdigit() else None
        if (pid is not None and not _pid_alive(pid)) or age > STALE_AFTER_S:
            out.append(Path(entry.path))
    return out


def remove_stale_temp_files(target: str | os.PathLike) -> list[Path]:
    removed = []
    for p in stale_temp_files(target):
        try:
            p.unlink()
            removed.append(p)
        except OSError:
            pass
    return removed


def remove_pending_temp_files() -> None:
    """For a forced exit that skips the normal cleanup (os._exit after a second signal)."""
    for tmp in list(_pending):
        try:
            os.unlink(tmp)
        except OSError:
            pass


def check_writable_folder(folder: str | os.PathLike, what: str) -> str | None:
    """None when a file can be created in `folder`, else a sentence saying why not. Tried for real
    (a probe file created and removed): permission bits lie on network shares, for root, and for
    read-only mounts."""
    folder = Path(folder)
    if not folder.exists():
        return f"The {what} does not exist: {folder}"
    if not folder.is_dir():
        return f"The {what} is not a folder: {folder}"
    probe = folder / f".malleable-write-test.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as e:
        return f"Cannot write into the {what} {folder}: {e.strerror or e}"
    os.close(fd)
    try:
        os.unlink(probe)
    except OSError:
        pass
    return None
