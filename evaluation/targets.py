"""The method-quality targets (issue 24), read off a suite's results: each method at its defaults on
ShapesBench, against the number it must reach, marked ✓ or ✗.

Drag and quick-drag: the median reach (1 − MD truth ÷ the drag's length, the handle–target distance
before the edit) at least 0.8, over drags of up to 35 % of the long side (all of ShapesBench's), and
PSNR outside the mask at least 30 dB (the mean; the worst sample and how many fall short are shown
beside it). The two controls are marked too, over all samples: the identity (the input unchanged)
keeps everything and does nothing, text-to-image (the model drawing the prompt from noise) does
what the prompt says and keeps nothing of the picture; a method's ✓ on keeping means more than
the first only beside its ✓ on the edit, and its ✓ on the edit more than the second only beside
its ✓ on keeping. Text edits have a third: the reconstruction (the input inverted and regenerated
with its own caption, no edit), which says how much of the picture the model's inversion keeps
before any method acts. PnP, pix2pix-zero and StyleDiffusion: the object's centroid within 3 px, its silhouette
IoU with the truth at least 0.8 where the edit keeps the shape (colour and fill edits), the asked
attribute done in at least 0.8 of the samples and the background at least 30 dB — over all samples
and per prompt style (full captions, short, generic), because a method that only holds on full
captions holds only where the model could redraw the picture from the caption. DiffuseIT: the
object IoU, shape kept, at least 0.8.

A target is a mean over the samples that have the measure (the table's convention): a background
identical to the input has an infinite PSNR, left out of the mean, so the mean errs low. A lost
object has no centroid, so the shift's mean would flatter a method that deletes the object: the
shift cell says how many of its samples lost it ("1.13 ✓, 1 lost"); their IoU counts as read (0).

The last table gives each method's verdicts over all samples with their 95 % intervals
(intervals.py) and whether the whole interval meets the target (✓), none of it does (✗) or it
straddles the line (~): with 24 samples, one sample moves a success rate by 0.04. Against a run
before (`--before`), the text edits' changes are read sample by sample: the mean change per sample,
its bootstrap interval, and how many samples turned to the attribute done and away from it."""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Callable, Optional

from .intervals import bootstrap, wilson
from .method_inputs import IDENTITY, RECONSTRUCT, TEXT_TO_IMAGE
from .report import fmt

SHARES = {"attribute_success"}  # yes/no per sample: the mean is a success rate
SHAPE_EDIT = "1"             # ShapesBench's editing type that changes the shape (PIE-Bench's "change object")
PROMPT_STYLES = ("full", "short", "generic")
TEXT_TARGET_METHODS = ("pnp", "pix2pix-zero", "style-diffusion")
# The controls: doing nothing keeps the layout and fails the edit (one row); drawing the prompt
# from noise does the edit and loses the picture (by prompt style: what the model can draw of each);
# the reconstruction (text edits) keeps what the engine's inversion keeps on this model and does no
# edit: where it misses a keeping target, the model's inversion does, before any method acts.
CONTROLS = (IDENTITY, TEXT_TO_IMAGE, RECONSTRUCT)


@dataclass(frozen=True)
class Target:
    key: str                                    # the row's measure
    title: str
    at_least: bool                              # ≥ threshold (else ≤)
    threshold: float
    digits: int = 2
    rows: Callable[[dict], bool] = lambda row: True   # which rows the target is read over

    def values(self, rows: list[dict]) -> list[float]:
        """The measure of every row it is read over that has one (infinite ones are left out)."""
        return [float(r[self.key]) for r in rows if self.rows(r) and r.get(self.key) is not None]

    def value(self, rows: list[dict]) -> Optional[float]:
        """The mean over the rows that have the measure; inf when every one of them was infinite."""
        vals = self.values(rows)
        if not vals and any((r.get("flags") or {}).get(self.key) == "inf" for r in rows if self.rows(r)):
            return math.inf
        return statistics.fmean(vals) if vals else None

    def interval(self, rows: list[dict]) -> Optional[tuple[float, float]]:
        """The 95 % interval of value(rows): Wilson's for a success rate, else a bootstrap of the mean."""
        vals = self.values(rows)
        if self.key in SHARES:
            return wilson(int(round(sum(vals))), len(vals))
        return bootstrap(vals)

    def met(self, v: float) -> bool:
        return v >= self.threshold if self.at_least else v <= self.threshold

    def header(self) -> str:
        return f"{self.title} ({'≥' if self.at_least else '≤'} {self.threshold:g})"


TEXT_TARGETS = (
    Target("centroid_shift", "shift px", False, 3.0),
    Target("silhouette_iou", "IoU, shape kept", True, 0.8, rows=lambda r: r.get("group") != SHAPE_EDIT),
    Target("attribute_success", "attribute done", True, 0.8),
    Target("background_psnr", "bg PSNR dB", True, 30.0, digits=3),
)
# The targets each text method is held to (the rest of the row is shown, unmarked).
TEXT_HELD = {**{m: {t.key for t in TEXT_TARGETS} for m in CONTROLS + TEXT_TARGET_METHODS},
             "diffuseit": {"silhouette_iou"}}


def _ok_rows(doc: dict) -> list[dict]:
    return [r for r in doc["samples"] if r.get("status") == "ok"]


def _mark(target: Target, v: Optional[float], held: bool) -> str:
    if v is None:
        return "–"
    return ("∞" if math.isinf(v) else _near(v, target)) + ((" ✓" if target.met(v) else " ✗") if held else "")


def _near(v: float, target: Target) -> str:
    """The value as the table writes it, one more decimal when that would read as the threshold itself
    (0.7962 is "0.796 ✗", not "0.80 ✗")."""
    text = fmt(v, target.digits)
    if text == fmt(float(target.threshold), target.digits) and v != target.threshold:
        decimals = len(text.split(".")[1]) + 1 if "." in text else 1
        return f"{v:.{decimals}f}"
    return text


def reach(row: dict) -> Optional[float]:
    """1 − the true distance left ÷ the drag's length; 0 when the object was lost."""
    d0, d = row.get("initial_distance"), row.get("mean_distance_truth")
    if not d0:
        return None
    return 0.0 if d is None else 1.0 - d / d0


# The drag's keeping target, read as the text targets are (an all-infinite PSNR is ∞, met).
OUTSIDE_PSNR = Target("psnr_outside_mask", "PSNR outside mask dB", True, 30.0, digits=3)
MIN_REACH = 0.8
MEDIAN_REACH = Target("reach", "median reach", True, MIN_REACH)  # read by drag_targets from reach()


def drag_targets(docs: dict, methods) -> list[str]:
    lines = [f"| method | samples | median reach (≥ {MIN_REACH:g}) | {OUTSIDE_PSNR.header()} | worst sample dB | "
             "samples below 30 dB | median UNet passes |", "|---|---|---|---|---|---|---|"]
    for m in methods:
        doc = docs.get(m)
        if doc is None:
            continue
        rows = _ok_rows(doc)
        reaches = [x for x in map(reach, rows) if x is not None]
        psnrs = [r["psnr_outside_mask"] for r in rows if r.get("psnr_outside_mask") is not None]
        passes = [r["passes"]["unet"] for r in rows if (r.get("passes") or {}).get("unet") is not None]
        med = statistics.median(reaches) if reaches else None
        mean_psnr = OUTSIDE_PSNR.value(rows)
        cells = [str(len(rows)),
                 "–" if med is None else f"{fmt(med, 2)} {'✓' if med >= MIN_REACH else '✗'}",
                 _mark(OUTSIDE_PSNR, mean_psnr, True),
                 fmt(min(psnrs), 3) if psnrs else ("∞" if mean_psnr == math.inf else "–"),
                 str(sum(1 for p in psnrs if p < OUTSIDE_PSNR.threshold)),
                 "–" if not passes else f"{statistics.median(passes):g}"]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return lines


def text_targets(docs: dict, methods) -> list[str]:
    lines = ["| method | prompts | samples | " + " | ".join(t.header() for t in TEXT_TARGETS) + " |",
             "|---|---|---|" + "---|" * len(TEXT_TARGETS)]
    for m in methods:
        doc = docs.get(m)
        if doc is None or m not in TEXT_HELD:
            continue
        rows = _ok_rows(doc)
        styles = [] if m == IDENTITY else [s for s in PROMPT_STYLES if any(r.get("prompt_style") == s for r in rows)]
        for style in ["all"] + styles:
            subset = rows if style == "all" else [r for r in rows if r.get("prompt_style") == style]
            cells = [_mark(t, t.value(subset), t.key in TEXT_HELD[m]) + _lost(t, subset) for t in TEXT_TARGETS]
            lines.append(f"| {m} | {style} | {len(subset)} | " + " | ".join(cells) + " |")
    return lines


def _verdict(lo: float, hi: float, threshold: float, at_least: bool) -> str:
    """✓ when the whole interval meets the target, ✗ when none of it does, ~ when it straddles it."""
    low_ok, high_ok = ((lo >= threshold, hi >= threshold) if at_least else (lo <= threshold, hi <= threshold))
    return "✓" if low_ok and high_ok else "✗" if not (low_ok or high_ok) else "~"


def _interval_cell(value: Optional[float], bounds: Optional[tuple[float, float]], target: Target) -> str:
    if value is None or bounds is None:
        return "∞" if value == math.inf else "–"
    lo, hi, d = *bounds, target.digits
    return f"{fmt(value, d)} ({fmt(lo, d)}–{fmt(hi, d)}) {_verdict(lo, hi, target.threshold, target.at_least)}"


def text_intervals(docs: dict, methods) -> list[str]:
    """Each held method's targets over all samples with their 95 % intervals (intervals.py)."""
    lines = ["| method | samples | " + " | ".join(t.header() for t in TEXT_TARGETS) + " |",
             "|---|---|" + "---|" * len(TEXT_TARGETS)]
    for m in methods:
        doc = docs.get(m)
        if doc is None or m not in TEXT_HELD or m in CONTROLS:
            continue
        rows = _ok_rows(doc)
        cells = [_interval_cell(t.value(rows), t.interval(rows), t) if t.key in TEXT_HELD[m] else ""
                 for t in TEXT_TARGETS]
        lines.append(f"| {m} | {len(rows)} | " + " | ".join(cells) + " |")
    return lines


def drag_intervals(docs: dict, methods) -> list[str]:
    lines = [f"| method | samples | median reach (≥ {MIN_REACH:g}) | {OUTSIDE_PSNR.header()} |", "|---|---|---|---|"]
    for m in methods:
        doc = docs.get(m)
        if doc is None or m in CONTROLS:
            continue
        rows = _ok_rows(doc)
        reaches = [x for x in map(reach, rows) if x is not None]
        med = statistics.median(reaches) if reaches else None
        cells = [_interval_cell(med, bootstrap(reaches, statistics.median), MEDIAN_REACH),
                 _interval_cell(OUTSIDE_PSNR.value(rows), OUTSIDE_PSNR.interval(rows), OUTSIDE_PSNR)]
        lines.append(f"| {m} | {len(rows)} | " + " | ".join(cells) + " |")
    return lines


INTERVALS_NOTE = ("How sure each verdict is, over all samples: the value, its 95 % interval (a success rate's Wilson "
                  "interval, else a bootstrap), and ✓ where the whole interval meets the target, ✗ where none of it "
                  "does, ~ where it straddles the line (on other pictures of the kind the verdict could read either "
                  "way):")


def _lost(target: Target, rows: list[dict]) -> str:
    """", N lost" beside the shift when N of the rows lost the object (see the module note)."""
    if target.key != "centroid_shift":
        return ""
    lost = sum(1 for r in rows if r.get("object_found") is False)
    return f", {lost} lost" if lost else ""


DRAG_HELD = CONTROLS + ("drag", "quick-drag")


def _paired(target: Target, now_rows: list[dict], old_rows: list[dict]) -> Optional[str]:
    """The change of `target` from old to now over the samples both runs measured, with the 95 %
    bootstrap interval of the mean per-sample change; for a success rate also how many samples
    turned to done (↑) and away from it (↓)."""
    old = {r["id"]: r for r in old_rows}
    pairs = [(float(o[target.key]), float(n[target.key])) for n in now_rows if (o := old.get(n["id"])) is not None
             and target.rows(n) and n.get(target.key) is not None and o.get(target.key) is not None]
    if not pairs:
        return None
    deltas = [b - a for a, b in pairs]
    lo, hi = bootstrap(deltas)
    text = f"{_signed(statistics.fmean(deltas))} ({_signed(lo)}…{_signed(hi)})"
    if target.key in SHARES:
        text += f" ↑{sum(1 for d in deltas if d > 0)} ↓{sum(1 for d in deltas if d < 0)}"
    return text


def _signed(v: float) -> str:
    return "0.00" if abs(v) < 0.005 else f"{v:+.2f}"


def text_changes(now: dict, old: dict, methods) -> list[str]:
    """Each method's change against the earlier run, sample by sample (the same benchmark)."""
    lines = ["| method | samples in both | " + " | ".join(t.title for t in TEXT_TARGETS) + " |",
             "|---|---|" + "---|" * len(TEXT_TARGETS)]
    for m in methods:
        if now.get(m) is None or old.get(m) is None or m in CONTROLS:
            continue
        rows, before = _ok_rows(now[m]), _ok_rows(old[m])
        both = len({r["id"] for r in rows} & {r["id"] for r in before})
        cells = [_paired(t, rows, before) or "–" for t in TEXT_TARGETS]
        lines.append(f"| {m} | {both} | " + " | ".join(cells) + " |")
    return lines


CHANGES_NOTE = ("What changed against the run before, sample by sample: the mean per-sample change, the 95 % "
                "bootstrap interval of it (a change whose interval holds 0 may be chance), and for the attribute "
                "how many samples turned to done (↑) and away from it (↓):")


def targets_section(now: dict, methods: dict, before: Optional[dict] = None) -> list[str]:
    """The targets' Markdown tables for the methods held to targets that have results in `now`
    ({kind: {method: results or None}}); nothing for a kind without any. With `before` (the same
    shape, an earlier run of the same benchmark), also the text edits' paired changes."""
    parts: list[str] = []
    drag = [m for m in methods.get("drag", ()) if m in DRAG_HELD and now.get("drag", {}).get(m)]
    text = [m for m in methods.get("text", ()) if m in TEXT_HELD and now.get("text", {}).get(m)]
    if drag:
        parts += ["", "Targets, drag (✓ met, ✗ not):", ""] + drag_targets(now["drag"], drag)
        if any(m not in CONTROLS for m in drag):
            parts += ["", INTERVALS_NOTE, ""] + drag_intervals(now["drag"], drag)
    if text:
        parts += ["", "Targets, text-guided edits, by prompt style (✓ met, ✗ not; DiffuseIT is held to the IoU "
                      "only):", ""] + text_targets(now["text"], text)
        if any(m not in CONTROLS for m in text):
            parts += ["", INTERVALS_NOTE, ""] + text_intervals(now["text"], text)
        old = (before or {}).get("text") or {}
        if any(old.get(m) is not None and m not in CONTROLS for m in text):
            parts += ["", CHANGES_NOTE, ""] + text_changes(now["text"], old, text)
    return parts
