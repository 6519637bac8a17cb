"""ShapesBench's ground-truth measures: read the edited object back from the result with the
ShapesWorld reader and compare it with the scene the edit should have produced.

The object is read against the scene's known background (background.png), leaving out the other
shape's true place (a distractor that should stay put); its silhouette is its foreground with the
holes filled (an outlined or striped shape counts whole) and the specks a method leaves elsewhere
removed. Positions are silhouette centroids, so a triangle, a star and a circle drawn at one centre
stand at one point."""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

from ..formats import Truth, rle_decode
from ..reading import classify_shape_and_fill, fill_holes, foreground, grow, without_specks
from ..shapesworld import FILLS, SHAPES, ShapeSpec, dominant_colour
from .pixels import psnr

MIN_OBJECT_PX = 4
TIE = 0.01  # shape or fill classes a fill draws alike (an outlined ring and an outlined circle) tie


def spec_from_json(d: dict) -> ShapeSpec:
    return ShapeSpec(d["shape"], d["colour"], d["fill"], d["size"], d["position"], tuple(d["centre"]),
                     float(d["radius"]))


def spec_to_json(s: ShapeSpec) -> dict:
    return {"shape": s.shape, "colour": s.colour, "fill": s.fill, "size": s.size, "position": s.position,
            "centre": [round(float(s.centre[0]), 3), round(float(s.centre[1]), 3)], "radius": round(float(s.radius), 3)}


def centroid(mask: np.ndarray) -> Optional[tuple[float, float]]:
    if mask.sum() == 0:
        return None
    ys, xs = np.nonzero(mask)
    return float(xs.mean()), float(ys.mean())


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def others_zone(truth: Truth, key: str) -> np.ndarray:
    """Where the other shapes (not the edited one) truly are, grown by 2 px."""
    h, w = truth.background.shape[:2]
    zone = np.zeros((h, w), bool)
    for rle in truth.data.get(key, []):
        zone |= rle_decode(rle, h, w)
    return grow(zone, 2) if zone.any() else zone


def read_object(rgb: np.ndarray, truth: Truth, zone_key: str) -> tuple[np.ndarray, np.ndarray]:
    """(ink, silhouette) of the edited object in `rgb`."""
    fg = foreground(rgb, truth.background) & ~others_zone(truth, zone_key)
    sil = without_specks(fill_holes(fg))
    return fg & sil, sil


def drag_truth(result: np.ndarray, truth: Truth) -> dict:
    """Where the dragged object went against where it should be. mean_distance_truth: the distance
    between its silhouette's centroid and the true one after the drag (the same as the distance from
    each handle, carried along with the object, to its target); null when no object is found."""
    d = truth.data
    h, w = result.shape[:2]
    _, sil = read_object(result, truth, "others_after")
    found = int(sil.sum()) >= MIN_OBJECT_PX
    c = centroid(sil) if found else None
    cx, cy = d["centroid_after"]
    return {
        "mean_distance_truth": math.hypot(c[0] - cx, c[1] - cy) if c else None,
        "object_found": found,
        "silhouette_iou": iou(sil, rle_decode(d["mask_after"], h, w)),
        "psnr_truth": psnr(result, truth.target),
        "prompt_style": d.get("prompt_style"),
    }


def _class_ok(ious: dict, wanted: str) -> bool:
    return ious.get(wanted, 0.0) >= max(ious.values()) - TIE


def read_attributes(rgb: np.ndarray, ink: np.ndarray, spec: ShapeSpec, background: np.ndarray) -> dict:
    """colour, shape and fill of the object's ink. Shape and fill are read together (the nearest of
    every shape drawn with every fill, at spec's size); shape_ious / fill_ious give, per class, the
    best IoU any reading with that class reaches, for the tie rule."""
    if ink.sum() < MIN_OBJECT_PX:
        return {"colour": None, "shape": None, "fill": None, "shape_ious": {}, "fill_ious": {}}
    joint = classify_shape_and_fill(ink, spec, background)
    shape, fill = max(joint, key=joint.get)
    shape_ious = {s: max(v for (s2, _), v in joint.items() if s2 == s) for s in SHAPES}
    fill_ious = {f: max(v for (_, f2), v in joint.items() if f2 == f) for f in FILLS}
    return {"colour": dominant_colour(rgb, ink, background), "shape": shape, "fill": fill,
            "shape_ious": shape_ious, "fill_ious": fill_ious}


def attribute_matches(read: dict, attribute: str, wanted: str) -> bool:
    if read[attribute] is None:
        return False
    if attribute == "colour":
        return read["colour"] == wanted
    return _class_ok(read[f"{attribute}_ious"], wanted)


def text_truth(result: np.ndarray, truth: Truth) -> dict:
    """Whether the edit changed the asked attribute of the object and kept it where it was.
    attribute_success: the target colour/shape/fill reads back; others_kept: the two attributes the
    edit did not ask about read as they were; centroid_shift: px between the object's silhouette
    centroid and the target's; silhouette_iou: against the target's silhouette; prompt_style: the
    sample's prompts are full captions, short or generic (the targets are read per style)."""
    d = truth.data
    h, w = result.shape[:2]
    target = spec_from_json(d["target_shape"])
    ink, sil = read_object(result, truth, "others")
    found = int(sil.sum()) >= MIN_OBJECT_PX
    c = centroid(sil) if found else None
    cx, cy = d["centroid_target"]
    read = read_attributes(result, ink, target, truth.background)
    edit = d["edit"]
    others = [a for a in ("colour", "shape", "fill") if a != edit["attribute"]]
    return {
        "centroid_shift": math.hypot(c[0] - cx, c[1] - cy) if c else None,
        "object_found": found,
        "silhouette_iou": iou(sil, rle_decode(d["mask_target"], h, w)),
        "attribute_success": attribute_matches(read, edit["attribute"], edit["to"]),
        "others_kept": all(attribute_matches(read, a, getattr(target, a)) for a in others),
        "read": {k: read[k] for k in ("colour", "shape", "fill")},
        "psnr_truth": psnr(result, truth.target),
        "prompt_style": d.get("prompt_style"),
    }

