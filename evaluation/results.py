"""The results file: its documented keys, the summary over samples, and writing it safely.

    {"benchmark": {"kind", "layout", "path", "samples"}, "method", "model", "sampler", "params", "defaults",
     "complete", "unavailable": {measure: why}, "summary": {...}, "samples": [row, ...]}

"sampler" is the edits' sampler ("ddim" when absent: files written before it was kept).
A row is {"id", "group", "status": "ok" | "failed", ...}: a failed row carries "error" (one line
naming the sample); an ok row carries the measures of its benchmark kind (DRAG_MEASURES or
TEXT_MEASURES, null where a measure is unavailable or undefined), "seconds" and "passes". A value
that is not finite (the PSNR of identical pixels) is written as null and named in the row's
"flags" ({"psnr_outside_mask": "inf"}): the file is always valid JSON. The file is rewritten
atomically after every sample, so an interrupted run leaves every finished row readable."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Optional

import numpy as np

from core.errors import InvalidInput

FORMAT_VERSION = 1
HEADER_KEYS = ("format", "benchmark", "method", "model", "params", "defaults", "complete", "unavailable",
               "summary", "samples")
ROW_KEYS = ("id", "group", "status")
OK_ROW_KEYS = ("seconds", "passes", "flags", "image")

DRAG_MEASURES = ("mean_distance", "mean_distance_512", "initial_distance", "image_fidelity",
                 "psnr_outside_mask", "ssim_outside_mask",
                 "mean_distance_truth", "object_found", "silhouette_iou", "psnr_truth")
TEXT_MEASURES = ("structure_distance", "background_psnr", "background_lpips", "background_mse",
                 "background_ssim", "clip_score", "clip_score_edited",
                 "centroid_shift", "object_found", "silhouette_iou", "attribute_success", "others_kept",
                 "psnr_truth")
MEASURES = {"drag": DRAG_MEASURES, "text": TEXT_MEASURES}
SUMMARY_KEYS = ("samples", "ok", "failed", "seconds", "counts", "infinite", "by_group")


def finite_or_flag(row: dict) -> dict:
    """Replace non-finite numbers (at the top level and inside lists/dicts) by None, naming them in
    row["flags"]."""
    flags = dict(row.get("flags") or {})

    def clean(key: str, v: Any) -> Any:
        if isinstance(v, (float, np.floating)):
            v = float(v)
            if not math.isfinite(v):
                flags[key] = "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
                return None
            return v
        if isinstance(v, (bool, np.bool_)):
            return bool(v)
        if isinstance(v, (int, np.integer)):
            return int(v)
        if isinstance(v, dict):
            return {k: clean(f"{key}.{k}", x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(f"{key}[{i}]", x) for i, x in enumerate(v)]
        return v

    out = {k: clean(k, v) for k, v in row.items() if k != "flags"}
    if "status" in out and out["status"] == "ok":
        out["flags"] = flags
    return out


def summarise(kind: str, rows: list[dict]) -> dict:
    """Means of every measure over the ok rows that have it (booleans as rates), the number of rows
    each mean is over, how many were infinite, and the same means per group."""
    ok = [r for r in rows if r.get("status") == "ok"]

    def means(subset: list[dict]) -> tuple[dict, dict, dict]:
        out, counts, inf = {}, {}, {}
        for key in MEASURES[kind]:
            vals = [float(r[key]) for r in subset if r.get(key) is not None]
            out[key] = float(np.mean(vals)) if vals else None
            counts[key] = len(vals)
            n_inf = sum(1 for r in subset if (r.get("flags") or {}).get(key) == "inf")
            if n_inf:
                inf[key] = n_inf
        return out, counts, inf

    values, counts, infinite = means(ok)
    groups = sorted({r.get("group", "") for r in ok})
    by_group = {g: means([r for r in ok if r.get("group", "") == g])[0] for g in groups} if any(groups) else {}
    secs = [r["seconds"] for r in ok if r.get("seconds") is not None]
    return {"samples": len(rows), "ok": len(ok), "failed": len(rows) - len(ok),
            "seconds": float(np.mean(secs)) if secs else None, **values,
            "counts": counts, "infinite": infinite, "by_group": by_group}


def write_atomic(path: Path, doc: dict) -> None:
    path = Path(path)
    text = json.dumps(doc, indent=1, allow_nan=False)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as e:
        raise InvalidInput(f"Cannot write {path}: {e.strerror or e}") from None
    finally:
        if tmp.exists():
            tmp.unlink()


def read_results(path: Path) -> dict:
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise InvalidInput(f"{path} is not a readable results file ({e}); delete it or choose another --out.") \
            from None
    problems = validate(doc)
    if problems:
        raise InvalidInput(f"{path} is not a malleable-eval results file: {problems[0]}.")
    return doc


def validate(doc: Any) -> list[str]:
    """What is wrong with a results document against the keys documented above ([] = nothing)."""
    if not isinstance(doc, dict):
        return ["not a JSON object"]
    problems = [f"missing key {k!r}" for k in HEADER_KEYS if k not in doc]
    if problems:
        return problems
    kind = (doc.get("benchmark") or {}).get("kind")
    if kind not in MEASURES:
        return [f"benchmark kind {kind!r} is neither drag nor text"]
    problems += [f"summary lacks {k!r}" for k in SUMMARY_KEYS + MEASURES[kind] if k not in doc["summary"]]
    for row in doc["samples"]:
        rid = row.get("id", "?")
        problems += [f"sample {rid} lacks {k!r}" for k in ROW_KEYS if k not in row]
        if row.get("status") == "ok":
            problems += [f"sample {rid} lacks {k!r}" for k in OK_ROW_KEYS + MEASURES[kind] if k not in row]
        elif row.get("status") == "failed":
            if not isinstance(row.get("error"), str) or "\n" in row["error"]:
                problems.append(f"sample {rid} failed without a one-line error")
        else:
            problems.append(f"sample {rid} has status {row.get('status')!r}")
    return problems


def header(kind: str, layout: str, root: Path, n: int, method: str, model: str, params: dict,
           defaults: dict, sampler: str = "ddim") -> dict:
    return {"format": FORMAT_VERSION, "benchmark": {"kind": kind, "layout": layout, "path": str(root), "samples": n},
            "method": method, "model": model, "sampler": sampler, "params": params, "defaults": defaults,
            "complete": False,
            "unavailable": {}, "summary": summarise(kind, []), "samples": []}


def same_run(old: dict, new: dict) -> Optional[str]:
    """Why `old` (a results file on disk) cannot be resumed by the run `new` describes, or None."""
    for key, label in (("method", "method"), ("model", "model"), ("params", "method options")):
        if old.get(key) != new.get(key):
            return f"it was written with {label} {old.get(key)!r}, this run uses {new.get(key)!r}"
    if old.get("sampler", "ddim") != new.get("sampler", "ddim"):  # files written before the sampler was kept: DDIM
        return f"it was written with the {old.get('sampler', 'ddim')} sampler, this run uses {new.get('sampler')}"
    if old.get("benchmark", {}).get("kind") != new["benchmark"]["kind"]:
        return f"it holds a {old['benchmark'].get('kind')} benchmark"
    if Path(old["benchmark"].get("path", "")).resolve() != Path(new["benchmark"]["path"]).resolve():
        return f"it was written for {old['benchmark'].get('path')}"
    return None
