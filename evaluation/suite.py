"""The README's quality table in one command: make a ShapesBench, run every method at its defaults
on it beside the identity baseline, the text-to-image control, the reconstruction (text edits: the
input inverted and regenerated with its caption, no edit) and the ground truth, and print the
table with its targets marked.

    malleable-eval suite OUT [--count 24] [--size 64] [--seed 0] [--before OLD_OUT]

OUT/shapesbench/ holds the benchmark (made once), OUT/results/<kind>-<method>.json (+ .md, .png)
each run (resumable: run the same command again after an interruption), OUT/table.md the table.
With --before, every cell reads "before → after" against an earlier suite folder (the same
benchmark, older code): how method work is judged."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable, Optional

from core.errors import InvalidInput
from core.models import ModelSpec

from .method_inputs import RECONSTRUCT
from .report import fmt, write_report
from .results import read_results, summarise
from .runner import IDENTITY, TEXT_TO_IMAGE, TRUTH, RunConfig, finished_rows, list_samples, run
from .shapesbench import MANIFEST, make_shapesbench
from .targets import targets_section

SUITE_METHODS = {
    "drag": (IDENTITY, TEXT_TO_IMAGE, "drag", "quick-drag", TRUTH),
    "text": (IDENTITY, TEXT_TO_IMAGE, RECONSTRUCT, "pnp", "pix2pix-zero", "style-diffusion", "diffuseit", TRUTH),
}
LABELS = {IDENTITY: "identity (input unchanged)", TEXT_TO_IMAGE: "text-to-image (the prompt from noise)",
          RECONSTRUCT: "reconstruction (inverted and regenerated, no edit)", TRUTH: "ground truth (the answer)"}

# (summary key, column title, scale, digits)
DRAG_COLUMNS = (
    ("mean_distance", "MD px", 1, 3), ("mean_distance_512", "MD at 512 px", 1, 3),
    ("mean_distance_truth", "MD truth px", 1, 3), ("object_found", "object found", 1, 2),
    ("silhouette_iou", "IoU with truth", 1, 2), ("psnr_truth", "PSNR to truth dB", 1, 3),
    ("psnr_outside_mask", "PSNR outside mask dB", 1, 3), ("ssim_outside_mask", "SSIM outside mask", 1, 3),
    ("image_fidelity", "IF (1-LPIPS)", 1, 3), ("seconds", "s / sample", 1, 2),
)
TEXT_COLUMNS = (
    ("structure_distance", "structure ×10³", 1e3, 3), ("background_psnr", "bg PSNR dB", 1, 3),
    ("background_ssim", "bg SSIM", 1, 3), ("background_mse", "bg MSE ×10⁴", 1e4, 3),
    ("background_lpips", "bg LPIPS", 1, 3), ("clip_score", "CLIP", 1, 3), ("clip_score_edited", "CLIP edited", 1, 3),
    ("attribute_success", "attribute done", 1, 2), ("others_kept", "rest kept", 1, 2),
    ("centroid_shift", "shift px", 1, 2), ("silhouette_iou", "IoU with truth", 1, 2),
    ("psnr_truth", "PSNR to truth dB", 1, 3), ("seconds", "s / sample", 1, 2),
)
TEXT_GROUPS = {"6": "colour", "1": "shape", "7": "fill"}


def results_path(out: Path, kind: str, method: str) -> Path:
    return Path(out) / "results" / f"{kind}-{method}.json"


def ensure_benchmark(bench: Path, count: int, size: int, seed: int) -> None:
    manifest = bench / MANIFEST
    if manifest.is_file():
        made = json.loads(manifest.read_text())
        asked = {"count": count, "size": size, "seed": seed}
        if any(made.get(k) != v for k, v in asked.items()):
            raise InvalidInput(f"{bench} was made with count {made.get('count')}, size {made.get('size')}, seed "
                               f"{made.get('seed')}: run with those, or give the suite a new folder.")
        return
    if bench.exists() and any(bench.iterdir()):
        raise InvalidInput(f"{bench} holds no {MANIFEST}: it is not a finished ShapesBench; delete it.")
    # made aside and renamed into place, so suites started side by side never see half a benchmark
    tmp = bench.with_name(f".{bench.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    make_shapesbench(tmp, count, size, seed)
    try:
        if bench.exists():
            bench.rmdir()
        os.rename(tmp, bench)
    except OSError:  # another suite got there first
        shutil.rmtree(tmp, ignore_errors=True)
        ensure_benchmark(bench, count, size, seed)


def run_suite(out: Path, count: int = 24, size: int = 64, seed: int = 0, model: Optional[ModelSpec] = None,
              methods: Optional[dict] = None, before: Optional[Path] = None,
              progress: Optional[Callable] = None, log: Optional[Callable] = None,
              shard: Optional[tuple[int, int]] = None) -> str:
    out = Path(out)
    bench = out / "shapesbench"
    ensure_benchmark(bench, count, size, seed)
    model = model or ModelSpec("demo", device="cpu")
    from core.engine import Engine

    engine = Engine()  # one resident model for every run
    for kind, names in (methods or SUITE_METHODS).items():
        for method in names:
            path = results_path(out, kind, method)
            path.parent.mkdir(parents=True, exist_ok=True)
            cfg = RunConfig(kind, bench / kind, method, {}, model, path, shard=shard)
            doc = run(cfg, progress(kind, method) if progress else None, engine=engine, log=log)
            if shard is None:
                write_report(doc, path, path.with_suffix(".md"))
    table = suite_table(out, before)
    (out / "table.md").write_text(table)
    return table


def _load(out: Path, kind: str, method: str) -> Optional[dict]:
    """A run's results with the rows of its shard files merged in (so a table can be printed while
    shards still run); None when nothing has been written."""
    p = results_path(out, kind, method)
    shards = sorted(p.parent.glob(f"{p.stem}.shard*of*{p.suffix}"))
    if not p.is_file() and not shards:
        return None
    doc = read_results(p if p.is_file() else shards[0])
    rows, unavailable = finished_rows(p, doc)
    total = len(list_samples(kind, Path(doc["benchmark"]["path"]))) if shards else doc["benchmark"]["samples"]
    order = {r["id"]: i for i, r in enumerate(doc["samples"])}
    merged = sorted({**{r["id"]: r for r in doc["samples"]}, **rows}.values(),
                    key=lambda r: (order.get(r["id"], len(order)), r["id"]))
    doc = {**doc, "samples": merged, "unavailable": {**doc["unavailable"], **unavailable},
           "summary": summarise(kind, merged), "benchmark": {**doc["benchmark"], "samples": total}}
    return doc


def _cell(doc: Optional[dict], key: str, scale: float, digits: int, group: Optional[str] = None) -> str:
    if doc is None:
        return "–"
    s = doc["summary"] if group is None else doc["summary"]["by_group"].get(group, {})
    v = s.get(key)
    if v is None:
        return "∞" if group is None and doc["summary"]["infinite"].get(key) == doc["summary"]["ok"] > 0 else "–"
    return fmt(v * scale, digits)


def _samples(doc: Optional[dict]) -> str:
    """"24" when every sample was measured; else "ok/total", with the failures."""
    if doc is None:
        return "–"
    s, total = doc["summary"], doc["benchmark"]["samples"]
    text = str(s["ok"]) if s["ok"] == total else f"{s['ok']}/{total}"
    return text + (f" ({s['failed']} failed)" if s["failed"] else "")


def _table(docs: dict, old: Optional[dict], methods, columns, group: Optional[str] = None) -> list[str]:
    """One Markdown table: a row per method with results; "before → after" cells when `old` is given."""
    shown = [c for c in columns if any(d is not None and _cell(d, c[0], c[2], c[3], group) != "–"
                                       for d in list(docs.values()) + list((old or {}).values()))]
    lines = ["| method | samples | " + " | ".join(c[1] for c in shown) + " |", "|---|---|" + "---|" * len(shown)]
    for m in methods:
        if docs[m] is None and (old or {}).get(m) is None:
            continue
        cells = [_samples(docs[m])]
        for key, _, scale, digits in shown:
            now = _cell(docs[m], key, scale, digits, group)
            cells.append(f"{_cell(old[m], key, scale, digits, group)} → {now}" if old is not None else now)
        lines.append(f"| {LABELS.get(m, m)} | " + " | ".join(cells) + " |")
    return lines


def suite_table(out: Path, before: Optional[Path] = None, methods: Optional[dict] = None) -> str:
    """The Markdown tables of a suite folder (with "before → after" cells when `before` is given)."""
    methods = methods or SUITE_METHODS
    out = Path(out)
    # Every results file read once: {kind: {method: results or None}}, now and before.
    now = {kind: {m: _load(out, kind, m) for m in names} for kind, names in methods.items()}
    old = {kind: {m: _load(before, kind, m) for m in names} for kind, names in methods.items()} if before else None
    counts = {}
    for kind in methods:
        doc = next((d for d in now[kind].values() if d), None)
        if doc:
            counts[kind] = doc["summary"]["samples"]
    head = ", ".join(f"{n} {k}" for k, n in counts.items())
    parts = [f"ShapesBench ({head} samples; `{out}`), methods at their defaults"
             + (f"; before → after against `{before}`" if before else "") + "."]
    # A kind with no results in either folder gets no section (not an empty table's header).
    present = {kind for kind in methods
               if any(now[kind].values()) or (old is not None and any(old[kind].values()))}

    def old_of(kind):
        return old[kind] if old is not None else None

    if "drag" in present:
        parts += ["", "**Drag** (DragBench layout):", ""] + _table(now["drag"], old_of("drag"), methods["drag"],
                                                                 DRAG_COLUMNS)
    if "text" in present:
        parts += ["", "**Text-guided edits** (PIE-Bench layout):", ""] + _table(now["text"], old_of("text"),
                                                                              methods["text"], TEXT_COLUMNS)
        parts += ["", "Attribute done, by the kind of edit:", ""]
        docs, before_docs = now["text"], old_of("text")
        lines = ["| method | " + " | ".join(TEXT_GROUPS.values()) + " |", "|---|" + "---|" * len(TEXT_GROUPS)]
        for m in methods["text"]:
            if docs[m] is None:
                continue
            cells = []
            for g in TEXT_GROUPS:
                cell = _cell(docs[m], "attribute_success", 1, 2, g)
                cells.append(f"{_cell(before_docs[m], 'attribute_success', 1, 2, g)} → {cell}"
                             if before_docs is not None else cell)
            lines.append(f"| {LABELS.get(m, m)} | " + " | ".join(cells) + " |")
        parts += lines
    parts += targets_section(now, methods, old)
    return "\n".join(parts) + "\n"


README_BEGIN = "<!-- shapesbench-table: malleable-eval table OUT --readme README.md rewrites this block -->"
README_END = "<!-- /shapesbench-table -->"


def readme_markers(block: Optional[str] = None) -> tuple[str, str]:
    """The lines a README table block sits between: the default block's, or a named one's (a README
    may hold several tables, e.g. one suite and the pool of its seeds)."""
    if not block:
        return README_BEGIN, README_END
    return (f"<!-- shapesbench-table {block}: malleable-eval table OUT --readme README.md --block {block} "
            "rewrites this block -->", f"<!-- /shapesbench-table {block} -->")


def update_readme(readme: Path, table: str, block: Optional[str] = None) -> None:
    """Replace the block between the markers of `block` (readme_markers) in `readme` by `table`."""
    begin, end = readme_markers(block)
    text = Path(readme).read_text()
    if begin not in text or end not in text:
        raise InvalidInput(f"{readme} has no table block: put the lines {begin!r} and {end!r} where "
                           "the table goes.")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    Path(readme).write_text(f"{head}{begin}\n{table.rstrip()}\n{end}{tail}")
