"""`malleable-edit`: the command-line front end. It builds the same EditRequest as the GUI and
calls the same engine.

    malleable-edit METHOD INPUT -o OUTPUT [options]
    malleable-edit batch METHOD INPUT_DIR -o OUTPUT_DIR [options]
    malleable-edit methods [--json]
    malleable-edit download REPO_ID [--revision REV] [--dry-run]

Exit codes: 0 ok, 1 a batch in which some images failed (see OUTPUT_DIR/manifest.jsonl), 2 invalid
input or usage, 3 model unavailable, 4 out of memory, 130 interrupted (Ctrl+C), 143 terminated
(SIGTERM). On any failure: one line on stderr and no output file."""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Optional

from . import cli_process
from .cli_process import EXIT_INTERRUPTED, INTERRUPTED_LINE, err

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_MODEL, EXIT_OOM = 0, 1, 2, 3, 4


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting, so errors stay one line."""

    def error(self, message):
        raise UsageError(message)


def _model_options(p: argparse.ArgumentParser) -> None:
    """Which model (and LoRAs, sampler), on which device: shared by single edits and batches."""
    p.add_argument("--model", default="demo",
                   help="'demo' (built in), a Hugging Face id such as stable-diffusion-v1-5/stable-diffusion-v1-5, "
                        "a diffusers folder or a .safetensors checkpoint. Default: demo.")
    p.add_argument("--family", default="auto", choices=["auto", "sd1", "sd2", "sdxl"],
                   help="Model family (default: detected from the folder or checkpoint).")
    p.add_argument("--prediction", default="auto", choices=["auto", "epsilon", "v_prediction"],
                   help="What the UNet predicts, for a single-file checkpoint whose scheduler is unknown "
                        "(default: the family's: SD 2.x files are read as 2.1, v-prediction; give epsilon for "
                        "the 512 px SD 2 base).")
    p.add_argument("--vae", default="",
                   help="A replacement VAE: a folder or Hugging Face id (e.g. an fp16-safe SDXL VAE).")
    p.add_argument("--lora", action="append", default=[], metavar="PATH[:SCALE]",
                   help="Apply your own LoRA (.safetensors, Kohya/civitai or diffusers format) at SCALE (default "
                        "1). Repeat for several.")
    p.add_argument("--sampler", default="ddim", choices=["ddim", "lcm", "tcd"],
                   help="ddim (default), or lcm/tcd with a few-step model (an LCM-LoRA, LCM or TCD checkpoint) and "
                        "--steps 4..8; for reconstruct, pnp and quick-drag.")
    p.add_argument("--low-vram", action="store_true",
                   help="Fit a smaller GPU: text encoders on the CPU between uses, UNet activations recomputed in "
                        "backward passes, VAE in tiles; slower.")
    p.add_argument("--revision", default="", help="Pin a Hugging Face download to a branch, tag or commit.")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps. Default: auto.")
    p.add_argument("--precision", default="auto", help="auto, fp32, fp16 or bf16. Default: auto.")
    p.add_argument("--allow-pickle", action="store_true",
                   help="Allow loading pickle checkpoints (.ckpt/.bin), which can run code. Only for trusted files.")


def model_spec(args):
    """The ModelSpec the model options ask for."""
    from core import ModelSpec

    return ModelSpec(args.model, args.device, args.precision, args.allow_pickle, args.family, args.prediction,
                     args.vae, tuple(args.lora), args.low_vram, args.revision)


def _common_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", required=True, help="Where to write the edited image (.png, .jpg, .webp).")
    _model_options(p)
    p.add_argument("--mask", help="Mask image of the input's size: white = editable.")
    p.add_argument("--previews", metavar="DIR", help="Write the streamed previews as numbered PNGs into DIR.")
    p.add_argument("--json", action="store_true", help="Print one JSON object describing the run on stdout.")
    p.add_argument("--quiet", action="store_true", help="No progress bar.")
    p.add_argument("--overwrite", action="store_true", help="Allow OUTPUT to be the INPUT file.")


def build_parser(method) -> argparse.ArgumentParser:
    from core.params import add_arguments

    p = _Parser(prog=f"malleable-edit {method.name}", description=method.description)
    p.add_argument("input", help="The image to edit.")
    _common_options(p)
    add_arguments(p, method.params)
    return p


def list_methods(as_json: bool) -> int:
    from core.registry import all_methods

    methods = all_methods()
    if as_json:
        print(json.dumps([dict(name=m.name, label=m.label, description=m.description, stages=list(m.stages),
                               needs=list(m.needs), parameters=m.params.describe()) for m in methods], indent=2))
        return EXIT_OK
    for m in methods:
        print(f"{m.name:18s} {m.label}: {m.description}")
        for d in m.params.describe():
            print(f"    {d['flag']:24s} {d['type']:7s} default {d['default']!r}  {d['help']}")
    return EXIT_OK


class ProgressPrinter:
    """A one-line progress bar on stderr and, optionally, numbered preview PNGs."""

    def __init__(self, quiet: bool, preview_dir: Optional[Path]):
        self.quiet = quiet
        self.preview_dir = preview_dir
        self.count = 0
        self.tty = err().isatty()

    def bytes(self, done: int, total: int) -> None:
        """Download progress (bytes) on the same line."""
        if self.quiet or total <= 0:
            return
        stream = err()
        stream.write(f"\r  download {done / 2**30:6.2f} / {total / 2**30:.2f} GB")
        if done >= total:
            stream.write("\n")
        stream.flush()

    def __call__(self, ev) -> None:
        if ev.preview is not None and self.preview_dir is not None:
            from PIL import Image

            from core.files import atomic_write

            self.count += 1
            image = Image.fromarray(ev.preview)
            atomic_write(self.preview_dir / f"{self.count:04d}_{ev.stage}_{ev.step:03d}.png",
                         lambda fh: image.save(fh, format="PNG"))
        if self.quiet or ev.total <= 0:
            return
        width = 30
        filled = int(width * ev.step / ev.total)
        line = f"{ev.stage:>10s} [{'#' * filled}{'.' * (width - filled)}] {ev.step}/{ev.total}"
        stream = err()
        if self.tty:
            stream.write("\r" + line + ("\n" if ev.step == ev.total else ""))
        elif ev.step == ev.total:
            stream.write(line + "\n")
        stream.flush()


def _fail(message: str, code: int) -> int:
    stream = err()
    stream.write(f"malleable-edit: {message}\n")
    stream.flush()
    return code


def run_through_runner(request, on_progress):
    """Run one request on a LocalRunner (the same path as the GUI and batch runs) and return its
    EditResult; a failure is raised as the engine's own error type, Ctrl+C as KeyboardInterrupt
    once the engine has stopped at its next step."""
    from core.engine import default_engine
    from core.errors import Cancelled, MalleableError
    from core.runner import Failed, Finished, JobCancelled, LocalRunner, ProgressEvent

    runner = LocalRunner(default_engine())
    try:
        end = runner.run(request, lambda ev: on_progress(ev.progress) if isinstance(ev, ProgressEvent) else None)
    finally:
        runner.shutdown(wait=True)
    if isinstance(end, Finished):
        return end.result
    if isinstance(end, JobCancelled):
        raise Cancelled(end.message)
    assert isinstance(end, Failed)
    if isinstance(end.error, MalleableError):
        raise end.error
    raise MalleableError(end.message)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_paths(method, args) -> Optional[Path]:
    """Everything about the paths that can be known before any work: no input is the output, the
    output's format and folder are usable, the previews folder is one. Returns the previews folder."""
    from core.errors import InvalidInput
    from core.files import check_writable_folder
    from core.images import check_output_path
    from core.params import flag_name

    out = Path(args.output)
    inputs = [("INPUT", Path(args.input))]
    if args.mask:
        inputs.append(("the --mask file", Path(args.mask)))
    for f in method.params.fields():
        value = getattr(args, f.name, None)
        if f.metadata["kind"] == "path" and isinstance(value, str) and value.strip():
            inputs.append((f"the {flag_name(f)} file", Path(value.strip()).expanduser()))
    for label, path in inputs:
        if _same_file(out, path):
            if label == "INPUT":
                if args.overwrite:
                    continue
                raise UsageError("OUTPUT is the INPUT file: choose another output or pass --overwrite.")
            raise UsageError(f"OUTPUT is {label}: choose another output (an input is never overwritten).")
    check_output_path(out)
    if out.is_dir():
        raise InvalidInput(f"OUTPUT {out} is a folder: give a file name such as {out / 'edited.png'}.")
    problem = check_writable_folder(Path(os.path.realpath(out)).parent, "output folder")
    if problem:
        raise InvalidInput(problem + ".")

    if not args.previews:
        return None
    previews = Path(args.previews)
    if previews.exists() and not previews.is_dir():
        raise InvalidInput(f"--previews {previews} is a file: give a folder to write the previews into.")
    try:
        previews.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InvalidInput(f"--previews: cannot create the folder {previews}: {e.strerror or e}.") from None
    problem = check_writable_folder(previews, "previews folder")
    if problem:
        raise InvalidInput(problem + ".")
    return previews


def run_edit(argv: list[str]) -> int:
    from core import EditRequest
    from core.images import load_image, save_atomic
    from core.params import from_namespace
    from core.registry import get_method

    method = get_method(argv[0])
    args = build_parser(method).parse_args(argv[1:])
    src, out = Path(args.input), Path(args.output)
    preview_dir = check_paths(method, args)
    params = from_namespace(method.params, args)
    image = load_image(src)  # fail on a bad input before spending time on the model
    request = EditRequest(method.name, image, params, mask=args.mask, model=model_spec(args), sampler=args.sampler)
    result = run_through_runner(request, ProgressPrinter(args.quiet, preview_dir))
    save_atomic(result.image, out)
    if args.json:
        summary = dict(method=method.name, model=result.model_id, family=result.family,
                       input=str(src), output=str(out),
                       width=result.width, height=result.height, seed=params.seed,
                       seconds=round(result.seconds, 3),
                       stages={k: round(v, 3) for k, v in result.stages.items()},
                       params=result.params, passes=result.passes)
        # Method results (drag's "handles", …) sit beside the fixed fields, never over them.
        print(json.dumps({**result.info, **summary}, default=str))
    return EXIT_OK


def download(argv: list[str]) -> int:
    """`malleable-edit download REPO_ID`: fetch a model into the Hugging Face cache (after a dry run
    that shows its size and checks the disk), or with --dry-run only show what it would fetch."""
    from core.models import download_from_hub, plan_download

    p = _Parser(prog="malleable-edit download", description=download.__doc__)
    p.add_argument("repo_id", help="A Hugging Face repo id, e.g. stable-diffusion-v1-5/stable-diffusion-v1-5.")
    p.add_argument("--revision", default=None, help="Branch, tag or commit to pin.")
    p.add_argument("--dry-run", action="store_true", help="Only show the size and the free disk space.")
    args = p.parse_args(argv)
    plan = plan_download(args.repo_id, args.revision)
    print(plan.describe())
    if args.dry_run:
        return EXIT_OK if plan.fits else EXIT_MODEL
    folder = download_from_hub(args.repo_id, ProgressPrinter(False, None).bytes, revision=args.revision)
    print(folder)
    return EXIT_OK


def _dispatch(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return EXIT_OK if argv else EXIT_USAGE
    if argv[0] == "methods":
        return list_methods("--json" in argv[1:])
    if argv[0] == "download":
        return download(argv[1:])
    if argv[0] == "batch":
        from .cli_batch import run_batch

        return run_batch(argv[1:])
    return run_edit(argv)


def main(argv: Optional[list[str]] = None) -> int:
    """Run one command and return its exit code; every failure is one line on stderr. Nothing here
    imports torch before the try, so Ctrl+C while the libraries load is answered too."""
    argv = list(sys.argv[1:] if argv is None else argv)
    with warnings.catch_warnings():
        if not cli_process.debug():
            warnings.simplefilter("ignore")  # library warnings are not part of a one-line answer
        try:
            return _dispatch(argv)
        except UsageError as e:
            return _fail(f"{e} (see malleable-edit {argv[0]} --help)", EXIT_USAGE)
        except KeyboardInterrupt as e:
            code = getattr(e, "exit_code", EXIT_INTERRUPTED)
            return _fail(INTERRUPTED_LINE if code == EXIT_INTERRUPTED else "terminated; no file was written.", code)
        except MemoryError:
            return _fail("out of memory: use a smaller image or fewer steps.", EXIT_OOM)
        except Exception as e:
            errors = sys.modules.get("core.errors")
            if errors is not None and isinstance(e, errors.MalleableError):
                return _fail(str(e).strip().replace("\n", " "), e.exit_code)
            if cli_process.debug():
                raise
            text = str(e).strip().splitlines()[0] if str(e).strip() else ""
            return _fail(f"unexpected error ({type(e).__name__}{': ' + text if text else ''}); "
                         "no file was written. MALLEABLE_DEBUG=1 shows the details.", EXIT_FAILED)


def entry() -> None:
    # First, before anything heavy is imported: signals, warnings, the C libraries' stderr.
    cli_process.install_signal_handlers()
    cli_process.quiet_libraries()
    cli_process.capture_native_stderr()
    code = main()
    cli_process.ignore_signals()  # the answer is given; shutting down is not interruptible news
    sys.exit(code)


if __name__ == "__main__":
    entry()
