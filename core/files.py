"""Writing files so that a crash, a kill or a full disk never leaves half of one: every file the
product writes (edited images, projects, exports, manifests) goes through `atomic_write`."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Write through a temporary file in the same folder, then rename over the target: the target
    is either the old file or the new one, never a mix. The temporary file is removed on any
    failure, KeyboardInterrupt included."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
