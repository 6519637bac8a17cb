"""Reports people can look at: a Markdown table of a run (summary and one line per sample) and a
contact sheet PNG beside it, one row per sample: input (with the drag's arrows) | result | ground
truth (ShapesBench) | difference (|result - input|, brightened)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image, ImageDraw

from .results import MEASURES

CELL = 128         # px of the longer side of each picture on the sheet
LABEL_W = 150
MAX_SHEET_ROWS = 60
DIFF_GAIN = 3.0

# the measures a report shows in its per-sample table, by benchmark kind
ROW_COLUMNS = {
    "drag": ("mean_distance", "initial_distance", "mean_distance_truth", "silhouette_iou", "psnr_outside_mask",
             "image_fidelity"),
    "text": ("structure_distance", "background_psnr", "background_ssim", "clip_score", "centroid_shift",
             "silhouette_iou", "attribute_success"),
}


def fmt(v, digits: int = 3) -> str:
    """A table cell without exponents: 2 decimals below 10, 1 below 100, none above (`digits` is
    kept for callers)."""
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        a = abs(v)
        decimals = 0 if a >= 100 else 1 if a >= 10 else 2
        return f"{v:.{decimals}f}"
    return str(v)


def markdown(doc: dict, sheet: Optional[str] = None) -> str:
    kind = doc["benchmark"]["kind"]
    s = doc["summary"]
    lines = [f"# {doc['method']} on {doc['benchmark']['layout']} ({doc['benchmark']['path']})", "",
             f"Model `{doc['model']}`; options {doc['params'] or 'none (defaults)'}; "
             f"{s['ok']} of {s['samples']} samples measured, {s['failed']} failed"
             + ("" if doc["complete"] else " (the run has not finished)") + ".", "",
             "| measure | mean | samples |", "|---|---|---|"]
    for key in MEASURES[kind]:
        inf = s["infinite"].get(key)
        note = f" ({inf} infinite, left out)" if inf else ""
        lines.append(f"| {key} | {fmt(s[key])} | {s['counts'][key]}{note} |")
    if s.get("seconds") is not None:
        lines.append(f"| seconds per sample | {fmt(s['seconds'])} | {s['ok']} |")
    for key, why in sorted(doc["unavailable"].items()):
        lines.append(f"\n`{key}` is unavailable: {why}.")
    cols = ROW_COLUMNS[kind]
    lines += ["", "| sample | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for r in doc["samples"]:
        if r["status"] != "ok":
            lines.append(f"| {r['id']} | failed: {r['error']} |" + " |" * (len(cols) - 1))
            continue
        lines.append(f"| {r['id']} | " + " | ".join(
            "inf" if (r.get("flags") or {}).get(c) == "inf" else fmt(r.get(c)) for c in cols) + " |")
    if sheet:
        lines += ["", f"![input, result, ground truth, difference]({sheet})"]
    return "\n".join(lines) + "\n"


def _fit(rgb: np.ndarray) -> Image.Image:
    h, w = rgb.shape[:2]
    k = CELL / max(w, h)
    return Image.fromarray(rgb).resize((max(1, round(w * k)), max(1, round(h * k))), Image.NEAREST)


def _arrows(img: Image.Image, points, scale: float) -> Image.Image:
    img = img.copy()
    d = ImageDraw.Draw(img)
    for hx, hy, tx, ty in points:
        a, b = ((hx + 0.5) * scale, (hy + 0.5) * scale), ((tx + 0.5) * scale, (ty + 0.5) * scale)
        d.line([a, b], fill=(255, 255, 255), width=2)
        d.ellipse([a[0] - 3, a[1] - 3, a[0] + 3, a[1] + 3], fill=(255, 0, 0))
        d.ellipse([b[0] - 3, b[1] - 3, b[0] + 3, b[1] + 3], fill=(0, 0, 255))
    return img


def contact_sheet(doc: dict, results_dir: Path, out: Path) -> Optional[Path]:
    """Writes the sheet for the ok rows whose result image is on disk; None when there is none."""
    from .formats import list_drag_samples, list_text_samples

    kind = doc["benchmark"]["kind"]
    root = Path(doc["benchmark"]["path"])
    try:
        refs = {r.id: r for r in (list_drag_samples(root) if kind == "drag" else list_text_samples(root))}
    except Exception:
        return None  # the benchmark moved: the Markdown table still stands
    rows = []
    for r in doc["samples"]:
        if r["status"] != "ok" or not r.get("image") or r["id"] not in refs or len(rows) >= MAX_SHEET_ROWS:
            continue
        path = Path(r["image"]) if Path(r["image"]).is_absolute() else results_dir / r["image"]
        if not path.is_file():
            continue
        try:
            rows.append((r, refs[r["id"]].load(), np.asarray(Image.open(path).convert("RGB"))))
        except Exception:
            continue
    if not rows:
        return None
    row_h = CELL + 6
    sheet = Image.new("RGB", (LABEL_W + 4 * (CELL + 6), row_h * len(rows) + 20), (40, 40, 40))
    d = ImageDraw.Draw(sheet)
    for i, title in enumerate(("input", "result", "ground truth", "difference")):
        d.text((LABEL_W + i * (CELL + 6) + 4, 4), title, fill=(230, 230, 230))
    cols = ROW_COLUMNS[kind][:3]
    for n, (row, sample, result) in enumerate(rows):
        y = 20 + n * row_h
        label = [row["id"]] + [f"{c}: {fmt(row.get(c))}" for c in cols]
        d.multiline_text((4, y + 4), "\n".join(label), fill=(230, 230, 230), spacing=2)
        src = _fit(sample.image)
        if kind == "drag":
            src = _arrows(src, sample.points, src.size[0] / sample.image.shape[1])
        diff = np.abs(result.astype(np.float32) - sample.image.astype(np.float32)) * DIFF_GAIN
        cells = [src, _fit(result), _fit(sample.truth.target) if sample.truth is not None else None,
                 _fit(diff.clip(0, 255).astype(np.uint8)) if result.shape == sample.image.shape else None]
        for i, cell in enumerate(cells):
            if cell is not None:
                sheet.paste(cell, (LABEL_W + i * (CELL + 6), y))
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out


def write_report(doc: dict, results_path: Optional[Path], out_md: Path) -> tuple[Path, Optional[Path]]:
    """report.md and report.png (the contact sheet) beside it."""
    out_md = Path(out_md)
    results_dir = results_path.parent if results_path is not None else out_md.parent
    sheet = contact_sheet(doc, results_dir, out_md.with_suffix(".png"))
    out_md.write_text(markdown(doc, sheet.name if sheet else None))
    return out_md, sheet

