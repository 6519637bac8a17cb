"""`malleable-eval`: measure how well the editing methods do on benchmark folders.

    malleable-eval make-shapesbench OUT [--count N] [--size PX] [--seed S]
    malleable-eval drag DIR --method drag [--model M] [--out results.json] [--limit N] [--report report.md]
                        [method options]
    malleable-eval text DIR --method pnp|pix2pix-zero|style-diffusion|diffuseit [...]
    malleable-eval report RESULTS.json [-o report.md]
    malleable-eval suite OUT [--count N] [--size PX] [--seed S] [--before OLD_OUT]
    malleable-eval table OUT [--before OLD_OUT] [--readme README.md [--block NAME]]
    malleable-eval pool OUT SUITE SUITE [SUITE ...]     (suites of other benchmark seeds read as one)

`--method identity` returns the input unchanged (the baseline); `--method text-to-image` the model
drawing the sample's (target) prompt from noise (the control); `--method truth` returns
ShapesBench's ground truth (the best a method could do). A run with --out resumes: run the same
command again and finished samples are skipped. Method options are the method's parameters
(`malleable-edit methods` lists them) and apply to every sample.

Exit codes: 0 ok, 2 invalid input or usage, 3 model unavailable, 4 out of memory, 130 interrupted."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional

EXIT_OK, EXIT_USAGE, EXIT_INTERRUPTED = 0, 2, 130


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting, so errors stay one line."""

    def error(self, message):
        raise UsageError(message)


def _model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="demo", help="'demo', a Hugging Face id, a diffusers folder or a .safetensors "
                                                   "file. Default: demo.")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps. Default: auto.")
    p.add_argument("--precision", default="auto", help="auto, fp32, fp16 or bf16. Default: auto.")
    p.add_argument("--allow-pickle", action="store_true", help="Allow pickle checkpoints (they can run code).")
    p.add_argument("--quiet", action="store_true", help="No progress bar.")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice; 1 on a shared "
                                               "machine avoids contention).")
    p.add_argument("--shard", help="K/N: run only every N-th sample from the K-th, so N processes share a run; "
                                   "the same command without --shard then merges their rows.")


def _shard(text: Optional[str]) -> Optional[tuple[int, int]]:
    if not text:
        return None
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise UsageError(f"--shard {text!r} is not K/N (e.g. 1/3)") from None
    if not 1 <= k <= n:
        raise UsageError(f"--shard {text}: K must be between 1 and N")
    return k, n


def _set_threads(args) -> None:
    if args.threads is not None:
        if args.threads < 1:
            raise UsageError("--threads must be at least 1")
        import torch

        torch.set_num_threads(args.threads)


def run_parser(kind: str, method_params=None) -> argparse.ArgumentParser:
    p = _Parser(prog=f"malleable-eval {kind}", description=f"Evaluate a method on a "
                f"{'DragBench' if kind == 'drag' else 'PIE-Bench'}-layout folder.")
    p.add_argument("dir", help="The benchmark folder" + (" (categories of sample folders)." if kind == "drag" else
                                                         " (mapping_file.json and annotation_images/)."))
    p.add_argument("--method", required=True, help="The method to evaluate, identity (the baseline), text-to-image (the control: "
                   "the model drawing the prompt from noise) or truth.")
    p.add_argument("--out", help="Results JSON; an existing one of the same run is resumed.")
    p.add_argument("--images", help="Folder for the result images (default: beside --out, RESULTS_images/).")
    p.add_argument("--limit", type=int, help="Only the first N samples.")
    p.add_argument("--report", help="Also write a Markdown report here, and its contact sheet PNG beside it.")
    p.add_argument("--dino", help="DINO ViT for the structure distance: a folder or hub id (default: the model's "
                                  "own, else facebook/dino-vitb8 from the local cache).")
    p.add_argument("--clip", help="CLIP for the CLIP score: a folder or hub id (default: the model's own, else "
                                  "openai/clip-vit-base-patch16 from the local cache).")
    p.add_argument("--dift-model", help="The model whose UNet gives the DIFT features (default: --model; DIFT's "
                                        "paper uses stabilityai/stable-diffusion-2-1).")
    p.add_argument("--sampler", default="ddim", choices=["ddim", "lcm", "tcd"],
                   help="ddim (default), or lcm/tcd with --steps 4..8 for the methods that allow a few-step "
                        "sampler (reconstruct, pnp, quick-drag).")
    _model_options(p)
    if method_params is not None:
        from core.params import add_arguments

        add_arguments(p, method_params)
    return p


def overrides_from(ns, cls) -> dict:
    """The method options given on the command line, checked and in their JSON form."""
    from core.params import _jsonable, check_value, coerce

    out = {}
    for f in cls.fields():
        value = getattr(ns, f.name, None)
        if value is None:
            continue
        v = coerce(f, value)
        check_value(f, v)
        out[f.name] = _jsonable(v)
    return out


class ProgressBar:
    """A tqdm bar over the samples of one run, on stderr."""

    def __init__(self, label: str, quiet: bool):
        self.label, self.quiet, self.bar = label, quiet, None

    def __call__(self, i: int, total: int, sample_id: str, row: dict, skipped: bool) -> None:
        if self.quiet:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=self.label, file=sys.stderr, unit="sample", dynamic_ncols=True)
        self.bar.set_postfix_str(f"{sample_id}: {'skipped (done)' if skipped else row['status']}", refresh=False)
        self.bar.update(1)
        if i + 1 == total:
            self.bar.close()

    def write(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            sys.stderr.write(line + "\n")


def run_benchmark(kind: str, argv: list[str]) -> int:
    from core.models import ModelSpec
    from core.registry import get_method

    from .report import write_report
    from .runner import PSEUDO_METHODS, RunConfig, run

    first, _ = run_parser(kind).parse_known_args(argv)
    params_cls = None if first.method in PSEUDO_METHODS else get_method(first.method).params
    args = run_parser(kind, params_cls).parse_args(argv)
    _set_threads(args)
    overrides = overrides_from(args, params_cls) if params_cls else {}
    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be at least 1")
    out = Path(args.out) if args.out else None
    if out is not None and not out.parent.is_dir():
        raise UsageError(f"the folder of --out does not exist: {out.parent}")
    cfg = RunConfig(kind, Path(args.dir), args.method, overrides,
                    ModelSpec(args.model, args.device, args.precision, args.allow_pickle), out,
                    Path(args.images) if args.images else None, args.limit, args.dino, args.clip, args.dift_model,
                    _shard(args.shard), args.sampler)
    bar = ProgressBar(f"{kind} {args.method}", args.quiet)
    doc = run(cfg, bar, log=bar.write)
    if args.report:
        write_report(doc, out, Path(args.report))
    if out is None:
        print(json.dumps(doc, indent=1, allow_nan=False))
    else:
        print(json.dumps({"out": str(out), "summary": doc["summary"], "unavailable": doc["unavailable"]},
                         allow_nan=False))
    return EXIT_OK


def make_shapesbench_cmd(argv: list[str]) -> int:
    from .shapesbench import make_shapesbench

    p = _Parser(prog="malleable-eval make-shapesbench",
                description="Write a synthetic benchmark with ground truth, in DragBench and PIE-Bench layouts.")
    p.add_argument("out", help="A new folder.")
    p.add_argument("--count", type=int, default=24, help="Drag samples, and as many text samples. Default: 24.")
    p.add_argument("--size", type=int, default=64, help="Long side of the pictures in px. Default: 64 (the demo "
                                                        "model's working size).")
    p.add_argument("--seed", type=int, default=0, help="Default: 0.")
    args = p.parse_args(argv)
    print(json.dumps(make_shapesbench(Path(args.out), args.count, args.size, args.seed)))
    return EXIT_OK


def report_cmd(argv: list[str]) -> int:
    from .report import write_report
    from .results import read_results

    p = _Parser(prog="malleable-eval report", description="Markdown table and contact sheet of a results file.")
    p.add_argument("results")
    p.add_argument("-o", "--output", help="Default: RESULTS with .md.")
    args = p.parse_args(argv)
    path = Path(args.results)
    md, sheet = write_report(read_results(path), path, Path(args.output) if args.output else path.with_suffix(".md"))
    print(json.dumps({"report": str(md), "contact_sheet": str(sheet) if sheet else None}))
    return EXIT_OK


def suite_cmd(argv: list[str]) -> int:
    from core.models import ModelSpec

    from .suite import SUITE_METHODS, run_suite

    p = _Parser(prog="malleable-eval suite", description="Make a ShapesBench, run every method at its defaults "
                "beside identity, the text-to-image control, the reconstruction (text edits) and the ground truth, print "
                "the table.")
    p.add_argument("out", help="The suite folder (made if absent; an unfinished suite resumes).")
    p.add_argument("--count", type=int, default=24)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--before", help="An earlier suite folder: cells read before → after.")
    p.add_argument("--methods", help="Only these (comma-separated, e.g. drag,pnp,identity): to run parts of a suite "
                                     "in parallel; a final run without it finds them done and prints the table.")
    _model_options(p)
    args = p.parse_args(argv)
    _set_threads(args)
    quiet = args.quiet
    methods = None
    if args.methods:
        wanted = [m.strip() for m in args.methods.split(",") if m.strip()]
        unknown = [m for m in wanted if not any(m in names for names in SUITE_METHODS.values())]
        if unknown:
            raise UsageError(f"--methods {', '.join(unknown)}: the suite runs "
                             f"{', '.join(dict.fromkeys(m for names in SUITE_METHODS.values() for m in names))}")
        methods = {k: tuple(m for m in names if m in wanted) for k, names in SUITE_METHODS.items()}
        methods = {k: v for k, v in methods.items() if v}
    table = run_suite(Path(args.out), args.count, args.size, args.seed,
                      ModelSpec(args.model, args.device, args.precision, args.allow_pickle), methods=methods,
                      shard=_shard(args.shard),
                      before=Path(args.before) if args.before else None,
                      progress=lambda kind, method: ProgressBar(f"{kind} {method}", quiet))
    print(table)
    return EXIT_OK


def table_cmd(argv: list[str]) -> int:
    from .suite import suite_table, update_readme

    p = _Parser(prog="malleable-eval table", description="Print the tables of a suite folder.")
    p.add_argument("out")
    p.add_argument("--before", help="An earlier suite folder: cells read before → after.")
    p.add_argument("--readme", help="Also write the table into this file, between its shapesbench-table markers.")
    p.add_argument("--block", help="With --readme: the named table block to rewrite (default: the unnamed one).")
    args = p.parse_args(argv)
    table = suite_table(Path(args.out), Path(args.before) if args.before else None)
    if args.readme:
        update_readme(Path(args.readme), table, args.block)
    print(table)
    return EXIT_OK


def pool_cmd(argv: list[str]) -> int:
    from .pool import pool_suites

    p = _Parser(prog="malleable-eval pool", description="Pool suite folders (ShapesBenches of other seeds, the same "
                "methods) into one, so that `malleable-eval table OUT` reads the targets over all their samples.")
    p.add_argument("out", help="The pooled folder (its results/ is written).")
    p.add_argument("suites", nargs="+", help="Two or more finished suite folders.")
    args = p.parse_args(argv)
    pooled = pool_suites(Path(args.out), [Path(s) for s in args.suites])
    print(json.dumps({"out": args.out, "pooled": pooled}))
    return EXIT_OK


COMMANDS = {"make-shapesbench": make_shapesbench_cmd, "report": report_cmd, "suite": suite_cmd, "table": table_cmd,
            "pool": pool_cmd,
            "drag": lambda argv: run_benchmark("drag", argv), "text": lambda argv: run_benchmark("text", argv)}


def _fail(message: str, code: int) -> int:
    sys.stderr.write(f"malleable-eval: {' '.join(str(message).split())}\n")
    return code


def main(argv: Optional[list[str]] = None) -> int:
    from core.errors import MalleableError

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return EXIT_OK if argv else EXIT_USAGE
    command = COMMANDS.get(argv[0])
    if command is None:
        return _fail(f"unknown command {argv[0]!r}: use one of {', '.join(COMMANDS)} (see malleable-eval --help)",
                     EXIT_USAGE)
    try:
        return command(argv[1:])
    except UsageError as e:
        return _fail(f"{e} (see malleable-eval {argv[0]} --help)", EXIT_USAGE)
    except MalleableError as e:
        return _fail(e, e.exit_code)
    except KeyboardInterrupt:
        return _fail("interrupted; finished samples are saved in the results file: run the same command again to "
                     "resume.", EXIT_INTERRUPTED)


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
