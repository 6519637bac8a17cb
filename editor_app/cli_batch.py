"""`malleable-edit batch METHOD INPUT_DIR -o OUTPUT_DIR [options]`: the same edit on every picture of
a folder, on this machine or on a Ray cluster (`--ray`). A thin front end: the plan, the runs and
the manifest are core.batch's; this module parses, draws the progress bar and prints the summary.

Exit codes: 0 every image ok (or skipped: done before), 1 some images failed (their rows in
OUTPUT_DIR/manifest.jsonl say why), 2 bad usage before anything ran, 3 model unavailable,
130 interrupted (the rows of finished images are kept)."""
from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Optional

from .cli import EXIT_USAGE, UsageError, _model_options, _Parser, model_spec

RAY_INSTALL = 'pip install "malleable[cluster]"'
USAGE = """malleable-edit batch METHOD INPUT_DIR -o OUTPUT_DIR [options]

Edits every picture of INPUT_DIR with the same settings (per-image values from a sidecar
NAME.json beside NAME.jpg, or --jobs JOBS.jsonl), the model loaded once; --ray [ADDRESS] runs it on
a Ray cluster. `malleable-edit batch METHOD --help` lists the options; METHOD is one of
`malleable-edit methods`.

Exit codes: 0 every image ok or skipped (done before), 1 some images failed (their rows in
OUTPUT_DIR/manifest.jsonl say why), 2 bad usage before anything ran, 3 model unavailable,
130 interrupted (the rows of finished images are kept)."""


def build_parser(method) -> _Parser:
    from core.params import add_arguments

    p = _Parser(prog=f"malleable-edit batch {method.name}",
                description=f"{method.description} Every picture of INPUT_DIR, the same settings; per-image "
                            "values from a sidecar NAME.json beside NAME.jpg, or from --jobs.")
    p.add_argument("input_dir", metavar="INPUT_DIR", help="The folder of pictures to edit.")
    p.add_argument("-o", "--output", required=True, metavar="OUTPUT_DIR",
                   help="Where the results go, under their input's relative path and name, with "
                        "manifest.jsonl (one row per image).")
    _model_options(p)
    p.add_argument("--mask", help="One mask for every image (white = editable); a sidecar's \"mask\" replaces it.")
    p.add_argument("--recursive", action="store_true", help="Also the pictures in INPUT_DIR's subfolders.")
    p.add_argument("--glob", default="", help="Only pictures whose relative path or name matches, e.g. '*.jpg'.")
    p.add_argument("--jobs", metavar="JOBS.jsonl",
                   help='One job per line instead of the folder: {"image": "a.jpg", "prompt": "...", ...} '
                        '(paths relative to INPUT_DIR; an optional "output" names the result).')
    p.add_argument("--format", default="png", help="Output format: png (default), jpg, webp, tif or bmp.")
    p.add_argument("--redo", action="store_true", help="Edit again images whose output exists (default: skip them).")
    p.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="Run on a Ray cluster: ADDRESS such as ray://head:10001 or auto; none starts one on this "
                        f"machine. Needs {RAY_INSTALL}.")
    p.add_argument("--workers", type=int, default=None,
                   help="With --ray: model copies working at once (default: one per GPU of the cluster, 1 without "
                        "GPUs). Each holds the model in memory.")
    p.add_argument("--json", action="store_true", help="Print one JSON summary on stdout.")
    p.add_argument("--quiet", action="store_true", help="No progress bar.")
    add_arguments(p, method.params)
    return p


def _usage_checks(args) -> None:
    if args.jobs and (args.glob or args.recursive):
        raise UsageError("--jobs names the images itself: leave out --glob and --recursive.")
    if args.workers is not None:
        if args.ray is None:
            raise UsageError("--workers is for --ray: a batch on this machine uses one model copy.")
        if args.workers < 1:
            raise UsageError("--workers must be at least 1.")
    if args.ray is not None and (importlib.util.find_spec("ray") is None
                                 or importlib.util.find_spec("ray.data") is None):
        raise UsageError(f"--ray needs Ray, which is not installed: {RAY_INSTALL}")
    if args.jobs and not Path(args.jobs).is_file():
        raise UsageError(f"The jobs file {args.jobs} does not exist.")


class BatchProgress:
    """One line on stderr: done/total, a bar, counts, images per minute and the time left. On a
    terminal the line is redrawn; in a log, one line per image. A failed image's reason is always
    printed on a line of its own."""

    def __init__(self, total: int, quiet: bool, stream=None):
        self.total = total
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.started = time.monotonic()
        self.done = 0
        self.counts = {"ok": 0, "failed": 0, "skipped": 0}

    def line(self, row: Optional[dict] = None) -> str:
        processed = self.counts["ok"] + self.counts["failed"]
        minutes = (time.monotonic() - self.started) / 60
        rate = processed / minutes if minutes > 0 and processed else 0.0
        left = self.total - self.done
        eta = _duration(60 * left / rate) if rate > 0 else "?"
        width = 24
        filled = int(width * self.done / self.total) if self.total else width
        text = (f"[{self.done:>{len(str(self.total))}}/{self.total}] [{'#' * filled}{'.' * (width - filled)}] "
                f"ok {self.counts['ok']} failed {self.counts['failed']} skipped {self.counts['skipped']}  "
                f"{rate:.1f} img/min  ETA {eta}")
        if row is not None and not self.tty:
            text += f"  {row['image']} {row['status']}" + (f" {row['seconds']:.1f} s" if row["seconds"] else "")
        return text

    def __call__(self, row: dict) -> None:
        self.done += 1
        self.counts[row["status"]] = self.counts.get(row["status"], 0) + 1
        if row["status"] == "failed":
            self._write(f"failed: {row['image']}: {row['error']}", own_line=True)
        if not self.quiet:
            self._write(self.line(row), own_line=not self.tty)

    def close(self) -> None:
        if self.tty and not self.quiet and self.done:
            self.stream.write("\n")
            self.stream.flush()

    def _write(self, text: str, own_line: bool) -> None:
        if self.tty:
            self.stream.write("\r\033[K" + text + ("\n" if own_line else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def run_batch(argv: list[str]) -> int:
    from core.batch import BatchSpec, LocalBatch, plan, run_batch as run
    from core.registry import get_method

    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else EXIT_USAGE
    method = get_method(argv[0])
    args = build_parser(method).parse_args(argv[1:])
    _usage_checks(args)
    values = {f.name: getattr(args, f.name) for f in method.params.fields() if getattr(args, f.name) is not None}
    spec = BatchSpec(method.name, args.input_dir, args.output, values, model_spec(args), mask=args.mask or "",
                     output_suffix=args.format, redo=args.redo, sampler=args.sampler)
    items = plan(spec, recursive=args.recursive, glob=args.glob, jobs=Path(args.jobs) if args.jobs else None)

    if args.ray is not None:
        from core.ray_runner import RayRunner

        backend = RayRunner(None if args.ray == "local" else args.ray, workers=args.workers)
    else:
        backend = LocalBatch()
    progress = BatchProgress(len(items), args.quiet)
    try:
        summary = run(spec, items, backend, on_row=progress)
    finally:
        progress.close()
        if hasattr(backend, "shutdown"):
            backend.shutdown()
    if args.json:
        print(json.dumps(dict(method=method.name, model=spec.model.source, input_dir=spec.input_dir,
                              output_dir=spec.output_dir, runner="ray" if args.ray is not None else "local",
                              **summary.to_dict(),
                              failures=[dict(image=r["image"], error_kind=r["error_kind"], error=r["error"])
                                        for r in summary.rows if r["status"] == "failed"])))
    elif not args.quiet:
        sys.stderr.write(f"{summary.ok} ok, {summary.failed} failed, {summary.skipped} skipped in "
                         f"{_duration(summary.seconds)}; rows in {summary.manifest}\n")
    return summary.exit_code
