"""Several suite folders read as one: the same methods on ShapesBenches of other seeds pooled.

    malleable-eval pool OUT SUITE SUITE [SUITE ...]

Issue 24's targets are read over benchmark seeds 0-2: one ShapesBench has 24 samples per kind (6-9
per prompt style), so a verdict turns on a sample or two, and scenes the methods were developed on
weigh as much as the rest. OUT/results/<kind>-<method>.json gets every row of each folder's run of
that method, its id prefixed with the folder's name ("seed1/100000000001", ids repeat between
seeds), its picture path pointing at the original. `malleable-eval table OUT` then prints the usual
tables over all of them. Only runs that every folder has, finished, are pooled."""
from __future__ import annotations

from pathlib import Path

from core.errors import InvalidInput

from .results import read_results, summarise, write_atomic
from .runner import stored_path


def _runs(folder: Path) -> dict[str, Path]:
    """{"text-pnp.json": path} for every results file of a suite folder (shard files left out)."""
    results = folder / "results"
    if not results.is_dir():
        raise InvalidInput(f"{folder} is not a suite folder (no results/ in it): give folders made by "
                           "`malleable-eval suite`.")
    return {p.name: p for p in sorted(results.glob("*.json")) if ".shard" not in p.name}


def _relocated(image, source: Path, out_file: Path):
    """A row's picture path (relative to `source`'s folder) as `out_file` records it."""
    if not image:
        return image
    return stored_path(Path(image) if Path(image).is_absolute() else source.parent / image, out_file)


def pool_suites(out: Path, folders: list[Path]) -> list[str]:
    """Writes OUT/results/ pooled from `folders`; returns the names of the runs pooled."""
    out, folders = Path(out), [Path(f) for f in folders]
    if len(folders) < 2:
        raise InvalidInput("pool needs at least two suite folders.")
    names = [f.name for f in folders]
    if len(set(names)) != len(names):
        raise InvalidInput(f"the folders' names repeat ({', '.join(names)}): they tag the pooled samples; rename one.")
    if any(out.resolve() == f.resolve() for f in folders):
        raise InvalidInput(f"{out} is one of the folders pooled: give the pool a folder of its own.")
    runs = [_runs(f) for f in folders]
    shared = [n for n in runs[0] if all(n in r for r in runs[1:])]
    if not shared:
        raise InvalidInput("the folders have no run in common to pool.")
    docs = {n: [read_results(r[n]) for r in runs] for n in shared}
    for n, ds in docs.items():
        unfinished = [str(r[n]) for r, d in zip(runs, ds) if not d["complete"]]
        if unfinished:
            raise InvalidInput(f"{unfinished[0]} has not finished: run its suite to the end first.")
    out_results = out / "results"
    out_results.mkdir(parents=True, exist_ok=True)
    for n, ds in docs.items():
        kind = ds[0]["benchmark"]["kind"]
        rows = [{**row, "id": f"{tag}/{row['id']}", "image": _relocated(row.get("image"), r[n], out_results / n)}
                for tag, r, d in zip(names, runs, ds) for row in d["samples"]]
        first = ds[0]
        doc = {**first, "samples": rows, "summary": summarise(kind, rows), "complete": True,
               "unavailable": {k: v for d in ds for k, v in d["unavailable"].items()},
               "benchmark": {**first["benchmark"], "samples": sum(d["benchmark"]["samples"] for d in ds),
                             "pooled": [str(f) for f in folders]}}
        write_atomic(out_results / n, doc)
    return shared
