"""`OUTPUT_DIR/manifest.jsonl`: one JSON row per image per run, appended as each image ends.

Each row is one `write()` of a whole line on a file opened for appending, then fsync: a killed run
keeps every row it finished, and rows are never rewritten (a file rewritten per row would cost the
square of the batch's size). A run killed inside that one write can at worst leave a torn last
line; `read_rows` skips it and the next run starts on a fresh line. Every row carries its run's id,
so re-runs append beside earlier ones and each run's rows can be told apart."""
from __future__ import annotations

import datetime
import json
import os
from pathlib import Path
from typing import Iterator

STATUSES = ("ok", "failed", "skipped")


def new_run_id() -> str:
    """Sortable and unique per process: 20261202T031500Z-12345."""
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{now}-{os.getpid()}"


class Manifest:
    def __init__(self, path: Path, run: str | None = None):
        self.path = Path(path)
        self.run = run or new_run_id()

    def append(self, row: dict) -> dict:
        row = {"run": self.run, **row}
        data = (json.dumps(row, default=str, ensure_ascii=False) + "\n").encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            if _ends_torn(fd):
                data = b"\n" + data  # a row torn by a killed run stays on its own (skipped) line
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        return row

    def rows(self, run: str | None = None) -> list[dict]:
        """This manifest's rows of one run (default: this one)."""
        wanted = self.run if run is None else run
        return [r for r in read_rows(self.path) if r.get("run") == wanted]


def _ends_torn(fd: int) -> bool:
    size = os.fstat(fd).st_size
    return size > 0 and os.pread(fd, 1, size - 1) != b"\n"


def read_rows(path: Path) -> Iterator[dict]:
    """Every complete row; a torn line left by a killed run is skipped."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            yield row
