"""What the `malleable-edit` process does around an edit so that every ending is one line.

- SIGINT and SIGTERM are turned into `Interrupted` (a KeyboardInterrupt) from the first moment,
  before torch is imported, so Ctrl+C while the libraries load is answered like Ctrl+C during the
  edit; the edit is cancelled at its next step, temporary files are removed. A second signal
  exits at once (still removing temporary files).
- Output that is not ours never reaches the terminal: Python warnings are ignored, the libraries'
  logging is turned down, and file descriptor 2 (where C libraries such as libtiff and torch's C++
  core print) goes to the null device while our own messages use a private copy of the real
  stderr. MALLEABLE_DEBUG=1 turns all of this off (and shows tracebacks)."""
from __future__ import annotations

import os
import signal
import sys
import warnings
from typing import Optional, TextIO

EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143  # 128 + SIGINT, 128 + SIGTERM, as shells report them
INTERRUPTED_LINE = "interrupted; no file was written."

_stream: Optional[TextIO] = None  # our stderr when the real one is captured
_signals_seen = 0


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM, raised where the main thread is; `exit_code` says which."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return EXIT_TERMINATED if self.signum == getattr(signal, "SIGTERM", None) else EXIT_INTERRUPTED


def debug() -> bool:
    return os.environ.get("MALLEABLE_DEBUG", "").strip() not in ("", "0")


def err() -> TextIO:
    """Where our own lines (progress, the failure) go."""
    return _stream if _stream is not None else sys.stderr


def _on_signal(signum, frame) -> None:
    global _signals_seen
    _signals_seen += 1
    if _signals_seen > 1:
        # The user insists (or the edit is stuck in a library call): leave now, tidily.
        from core.files import remove_pending_temp_files

        remove_pending_temp_files()
        try:
            err().write(f"malleable-edit: {INTERRUPTED_LINE}\n")
            err().flush()
        finally:
            os._exit(Interrupted(signum).exit_code)
    raise Interrupted(signum)


def install_signal_handlers() -> None:
    for name in ("SIGINT", "SIGTERM"):
        sig = getattr(signal, name, None)
        if sig is not None:
            signal.signal(sig, _on_signal)


def ignore_signals() -> None:
    for name in ("SIGINT", "SIGTERM"):
        sig = getattr(signal, name, None)
        if sig is not None:
            signal.signal(sig, signal.SIG_IGN)


def quiet_libraries() -> None:
    """Before the libraries are imported: their warnings and log lines are not ours to print."""
    if debug():
        return
    warnings.simplefilter("ignore")
    for var in ("DIFFUSERS_VERBOSITY", "TRANSFORMERS_VERBOSITY"):
        os.environ.setdefault(var, "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


def capture_native_stderr() -> None:
    """Point fd 2 at the null device; keep a private stream to the real stderr for our lines."""
    global _stream
    if debug() or _stream is not None:
        return
    try:
        sys.stderr.flush()
        real = os.dup(2)
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)
        os.close(null)
    except (OSError, ValueError, AttributeError):
        return  # no usable fd 2 (a GUI launcher, an embedded interpreter): nothing to capture
    _stream = os.fdopen(real, "w", buffering=1, encoding=getattr(sys.stderr, "encoding", None) or "utf-8",
                        errors="backslashreplace")
