"""ShapesBench: a synthetic benchmark in DragBench's and PIE-Bench's layouts whose answer is known.

    make_shapesbench(OUT, count=24, size=64, seed=0)

writes
- OUT/drag/<category>/<nnn>/: original_image.png, user_drag.png (the arrows drawn), meta_data.pkl
  ({"prompt", "points", "mask"}: points alternate handle, target as [x, y]; mask uint8 0/255), and
  the ground truth: target_image.png (the scene with the object moved), background.png and
  truth.json (object silhouettes before/after as run-length pairs, the true displacement);
- OUT/text/: mapping_file.json in PIE-Bench's schema, annotation_images/<type>/<id>.png, and
  ground_truth/<id>/ (target_image.png, background.png, truth.json);
- OUT/shapesbench.json: how it was made.

The scenes are hard in the ways photos are, within what the demo model knows: the object anywhere
(not only the training world's five places), sizes between the three named ones, a second shape
beside it, textured backgrounds, pictures that are not square, drags of 5-35 % of the picture's
long side in any direction (a quarter of them with two handles on the object), edits of colour,
shape and fill, and prompts that are full captions, short ("a red circle") or generic ("a shape").
Every sample is checked against the reader: its ground truth reads back as what it claims.
Each sample is drawn from its own seed, so a larger --count keeps the smaller one's samples."""
from __future__ import annotations

import json
import math
import pickle
import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image, ImageDraw

from core.errors import InvalidInput

from .backdrops import TEXTURES, contrast, render_backdrop
from .formats import (BACKGROUND_IMAGE, DRAG_IMAGE, DRAG_META, PIE_IMAGES, PIE_MAPPING, PIE_TRUTH, TARGET_IMAGE,
                      TRUTH_FILE, Truth, rle_encode)
from .metrics.truth import attribute_matches, centroid, iou, read_attributes, read_object, spec_to_json
from .reading import grow, nearest_position
from .shapesworld import (BACKGROUNDS, COLOURS, FILLS, SHAPES, SIZES, ShapeSpec, article, caption_of, draw_shape,
                          shape_mask)

VERSION = 1
MANIFEST = "shapesbench.json"
ASPECTS = ((1, 1), (3, 2), (2, 3), (4, 3), (3, 4), (5, 4), (4, 5))  # width : height
DRAG_CATEGORIES = ("plain", "textured", "two_shapes")
# (attribute, PIE-Bench editing_type_id, its folder)
TEXT_EDITS = (("colour", "6", "6_change_attribute_color"), ("shape", "1", "1_change_object"),
              ("fill", "7", "7_change_attribute_material"))
PROMPT_STYLES = ("full", "short", "generic")
DRAG_RANGE = (0.05, 0.35)   # drag length, share of the picture's long side
MIN_CONTRAST = 80.0         # RGB distance between a shape's colour and every background pixel
GAP = 4                     # px between the edited object (before and after) and the other shape


@dataclass
class BenchScene:
    width: int
    height: int
    background: str
    texture: str
    backdrop: np.ndarray               # float32 HxWx3
    shapes: list                       # [ShapeSpec]; shapes[0] is the one edited

    def render(self) -> tuple[np.ndarray, list]:
        """(RGB uint8, one silhouette per shape)."""
        img = Image.fromarray(self.backdrop.astype(np.uint8))
        masks = [draw_shape(img, s, None) for s in self.shapes]
        return np.asarray(img).copy(), masks

    def with_first(self, spec: ShapeSpec) -> "BenchScene":
        return replace(self, shapes=[spec] + list(self.shapes[1:]))

    def caption(self) -> str:
        return caption_of(self.shapes, self.background)


def picture_size(rng: random.Random, long_side: int) -> tuple[int, int]:
    aw, ah = rng.choice(ASPECTS)
    if aw >= ah:
        return long_side, max(16, round(long_side * ah / aw))
    return max(16, round(long_side * aw / ah)), long_side


def _located(spec: ShapeSpec, w: int, h: int) -> ShapeSpec:
    """The spec with its position named as the caption should say it (nearest of the five)."""
    return replace(spec, position=nearest_position(spec.centre, (w, h)))


def _radius(rng: random.Random, size_name: str, w: int, h: int) -> float:
    return SIZES[size_name] * max(w, h) / 2 * rng.uniform(0.85, 1.15)


def _colours(backdrop: np.ndarray, avoid=()) -> list:
    return [c for c in COLOURS if c not in avoid and contrast(c, backdrop) >= MIN_CONTRAST]


def _backdrop(rng: random.Random, w: int, h: int, texture: str) -> tuple[str, np.ndarray]:
    colour = rng.choice(BACKGROUNDS)
    return colour, render_backdrop(colour, texture, w, h, np.random.default_rng(rng.getrandbits(32)))


def _silhouette(spec: ShapeSpec, w: int, h: int) -> np.ndarray:
    return shape_mask(spec.shape, spec.centre[0], spec.centre[1], spec.radius, (w, h))


def _inside(spec: ShapeSpec, w: int, h: int, margin: float = 1.0) -> bool:
    (cx, cy), r = spec.centre, spec.radius
    return margin + r <= cx <= w - margin - r and margin + r <= cy <= h - margin - r


def _distractor(rng: random.Random, scene: BenchScene, keep_clear: np.ndarray) -> Optional[ShapeSpec]:
    """A second shape anywhere that stays GAP px clear of `keep_clear`."""
    w, h = scene.width, scene.height
    clear = grow(keep_clear, GAP)
    colours = _colours(scene.backdrop, avoid=(scene.shapes[0].colour,))
    for _ in range(60):
        size_name = rng.choice(["small", "medium"])
        r = _radius(rng, size_name, w, h)
        if 2 * r + 2 >= min(w, h):
            continue
        spec = ShapeSpec(rng.choice(SHAPES), rng.choice(colours), rng.choice(FILLS), size_name, "",
                         (rng.uniform(r + 1, w - r - 1), rng.uniform(r + 1, h - r - 1)), r)
        if not (_silhouette(spec, w, h) & clear).any():
            return _located(spec, w, h)
    return None


# ---- prompts ------------------------------------------------------------------------------------

def _short(spec: ShapeSpec, style: str) -> str:
    if style == "generic":
        return "a shape"
    return f"{article(spec.colour)} {spec.colour} {spec.shape}"


def drag_prompt(scene: BenchScene, style: str) -> str:
    return scene.caption() if style == "full" else _short(scene.shapes[0], style)


def _bracketed_caption(scene: BenchScene, attribute: str) -> str:
    """The full caption with the edited word of the first shape in [brackets] (the fill written out,
    "filled" included, when it is the edited attribute)."""
    s = scene.shapes[0]
    fill = f"[{s.fill}] " if attribute == "fill" else ("" if s.fill == "filled" else f"{s.fill} ")
    colour = f"[{s.colour}]" if attribute == "colour" else s.colour
    shape = f"[{s.shape}]" if attribute == "shape" else s.shape
    first = f"a {s.size} {fill}{colour} {shape} {s.position}"
    rest = caption_of(scene.shapes[1:], scene.background).rsplit(",", 1)[0] if len(scene.shapes) > 1 else ""
    return first + (f" and {rest}" if rest else "") + f", on a {scene.background} background"


def text_prompts(scene: BenchScene, target: BenchScene, attribute: str, style: str) -> tuple[str, str]:
    """(original_prompt, editing_prompt), the edited words in [brackets] as PIE-Bench writes them."""
    if style == "full":
        return _bracketed_caption(scene, attribute), _bracketed_caption(target, attribute)
    src, tgt = scene.shapes[0], target.shapes[0]

    def one(s: ShapeSpec) -> str:
        if attribute == "colour":
            noun = "shape" if style == "generic" else s.shape
            return f"{article(s.colour)} [{s.colour}] {noun}"
        if attribute == "shape":
            return f"{article(s.shape)} [{s.shape}]" if style == "generic" else \
                f"{article(s.colour)} {s.colour} [{s.shape}]"
        noun = "shape" if style == "generic" else s.shape
        return f"{article(s.fill)} [{s.fill}] {noun}"

    return one(src), one(tgt)


def instruction(attribute: str, src: ShapeSpec, tgt: ShapeSpec) -> str:
    if attribute == "colour":
        return f"make the {src.shape} {tgt.colour}"
    if attribute == "shape":
        return f"turn the {src.shape} into {article(tgt.shape)} {tgt.shape}"
    return f"make the {src.shape} {tgt.fill}"


# ---- drag samples -------------------------------------------------------------------------------

@dataclass
class DragCase:
    category: str
    scene: BenchScene
    moved: BenchScene
    displacement: tuple[int, int]
    points: list                        # [(hx, hy, tx, ty)]
    prompt: str
    style: str


def _handles(rng: random.Random, ink: np.ndarray, n: int, r: float) -> Optional[list]:
    ys, xs = np.nonzero(ink)
    if len(xs) < n:
        return None
    picks = []
    for _ in range(50):
        k = rng.randrange(len(xs))
        p = (int(xs[k]), int(ys[k]))
        if all(math.hypot(p[0] - q[0], p[1] - q[1]) >= r / 2 for q in picks):
            picks.append(p)
        if len(picks) == n:
            return picks
    return None


def drag_case(index: int, size: int, seed: int) -> DragCase:
    rng = random.Random(f"shapesbench-drag-{seed}-{index}")
    category = DRAG_CATEGORIES[index % len(DRAG_CATEGORIES)]
    style = PROMPT_STYLES[(index // len(DRAG_CATEGORIES)) % len(PROMPT_STYLES)]
    n_points = 2 if index % 4 == 3 else 1
    for _ in range(1000):
        w, h = picture_size(rng, size)
        texture = {"plain": "solid", "textured": rng.choice(TEXTURES[1:])}.get(category, rng.choice(TEXTURES))
        background, backdrop = _backdrop(rng, w, h, texture)
        size_name = rng.choice(list(SIZES))
        r = _radius(rng, size_name, w, h)
        length = rng.uniform(*DRAG_RANGE) * max(w, h)
        angle = rng.uniform(0, 2 * math.pi)
        dx, dy = round(length * math.cos(angle)), round(length * math.sin(angle))
        if math.hypot(dx, dy) < DRAG_RANGE[0] * max(w, h):
            continue
        lo_x, hi_x = max(r + 1, r + 1 - dx), min(w - r - 1, w - r - 1 - dx)
        lo_y, hi_y = max(r + 1, r + 1 - dy), min(h - r - 1, h - r - 1 - dy)
        if lo_x > hi_x or lo_y > hi_y:
            continue  # this drag does not fit this shape in this picture: draw again
        obj = ShapeSpec(rng.choice(SHAPES), rng.choice(_colours(backdrop)), rng.choice(FILLS), size_name, "",
                        (rng.uniform(lo_x, hi_x), rng.uniform(lo_y, hi_y)), r)
        obj = _located(obj, w, h)
        moved = _located(replace(obj, centre=(obj.centre[0] + dx, obj.centre[1] + dy)), w, h)
        scene = BenchScene(w, h, background, texture, backdrop, [obj])
        rgb, (sil,) = scene.render()
        ink = np.abs(rgb.astype(np.float32) - backdrop).sum(-1) > 0
        handles = _handles(rng, ink & sil, n_points, r)
        if handles is None:
            continue
        points = [(hx, hy, hx + dx, hy + dy) for hx, hy in handles]
        if not all(0 <= tx < w and 0 <= ty < h for _, _, tx, ty in points):
            continue
        if category == "two_shapes":
            other = _distractor(rng, scene, sil | _silhouette(moved, w, h))
            if other is None:
                continue
            scene = replace(scene, shapes=[obj, other])
        case = DragCase(category, scene, scene.with_first(moved), (dx, dy), points,
                        drag_prompt(scene, style), style)
        if _drag_truth_reads(case):
            return case
    raise RuntimeError(f"no drag sample {index} fits a {size}-px picture; use a larger --size")


def _drag_truth(case: DragCase) -> dict:
    s, m = case.scene, case.moved
    _, masks_before = s.render()
    _, masks_after = m.render()
    return {
        "kind": "drag", "version": VERSION, "category": case.category, "prompt_style": case.style,
        "size": [s.width, s.height], "background": {"colour": s.background, "texture": s.texture},
        "displacement": list(case.displacement), "points": [list(p) for p in case.points],
        "shapes_before": [spec_to_json(x) for x in s.shapes], "shapes_after": [spec_to_json(x) for x in m.shapes],
        "mask_before": rle_encode(masks_before[0]), "mask_after": rle_encode(masks_after[0]),
        "centroid_before": [round(v, 4) for v in centroid(masks_before[0])],
        "centroid_after": [round(v, 4) for v in centroid(masks_after[0])],
        "others_after": [rle_encode(x) for x in masks_after[1:]],
    }


def _drag_truth_reads(case: DragCase) -> bool:
    """The moved scene, read as a result, must show the object exactly where the truth says."""
    truth = Truth(_drag_truth(case), case.moved.render()[0], case.scene.backdrop)
    _, sil = read_object(truth.target, truth, "others_after")
    c = centroid(sil)
    want = truth.data["centroid_after"]
    _, masks = case.moved.render()
    return c is not None and math.hypot(c[0] - want[0], c[1] - want[1]) < 0.25 and iou(sil, masks[0]) > 0.98


def user_drag_image(rgb: np.ndarray, mask: np.ndarray, points: list) -> Image.Image:
    """The picture as DragBench's user_drag.png shows it: the mask lightened, each handle (red) joined
    to its target (blue)."""
    arr = rgb.astype(np.float32)
    arr[mask] = arr[mask] * 0.7 + 255 * 0.3
    img = Image.fromarray(arr.round().astype(np.uint8))
    d = ImageDraw.Draw(img)
    for hx, hy, tx, ty in points:
        d.line([(hx, hy), (tx, ty)], fill=(255, 255, 255), width=1)
        d.point([(hx, hy)], fill=(255, 0, 0))
        d.point([(tx, ty)], fill=(0, 0, 255))
    return img


def write_drag_sample(folder: Path, case: DragCase) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rgb, masks = case.scene.render()
    target, masks_after = case.moved.render()
    mask = grow(masks[0] | masks_after[0], 3)
    Image.fromarray(rgb).save(folder / DRAG_IMAGE)
    user_drag_image(rgb, mask, case.points).save(folder / "user_drag.png")
    meta = {"prompt": case.prompt,
            "points": [[int(v) for v in p[i:i + 2]] for p in case.points for i in (0, 2)],
            "mask": (mask * 255).astype(np.uint8)}
    (folder / DRAG_META).write_bytes(pickle.dumps(meta, protocol=4))  # DragBench's files are protocol 4
    Image.fromarray(target).save(folder / TARGET_IMAGE)
    Image.fromarray(case.scene.backdrop.astype(np.uint8)).save(folder / BACKGROUND_IMAGE)
    (folder / TRUTH_FILE).write_text(json.dumps(_drag_truth(case)))


# ---- text samples -------------------------------------------------------------------------------

@dataclass
class TextCase:
    sample_id: str
    attribute: str
    type_id: str
    type_dir: str
    scene: BenchScene
    target: BenchScene
    style: str


def _target_value(rng: random.Random, attribute: str, spec: ShapeSpec, backdrop: np.ndarray) -> Optional[str]:
    if attribute == "colour":
        options = _colours(backdrop, avoid=(spec.colour,))
    elif attribute == "shape":
        options = [s for s in SHAPES if s != spec.shape]
        if spec.fill == "outlined":  # an outlined ring is an outlined circle: not an edit one can see
            options = [s for s in options if {s, spec.shape} != {"circle", "ring"}]
    else:
        options = [f for f in FILLS if f != spec.fill]
    return rng.choice(options) if options else None


def text_case(index: int, size: int, seed: int) -> TextCase:
    rng = random.Random(f"shapesbench-text-{seed}-{index}")
    attribute, type_id, type_dir = TEXT_EDITS[index % len(TEXT_EDITS)]
    style = PROMPT_STYLES[(index // len(TEXT_EDITS)) % len(PROMPT_STYLES)]
    for _ in range(1000):
        w, h = picture_size(rng, size)
        texture = "solid" if rng.random() < 0.4 else rng.choice(TEXTURES[1:])
        background, backdrop = _backdrop(rng, w, h, texture)
        size_name = rng.choice(list(SIZES))
        r = _radius(rng, size_name, w, h)
        if 2 * r + 2 >= min(w, h):
            continue
        obj = _located(ShapeSpec(rng.choice(SHAPES), rng.choice(_colours(backdrop)), rng.choice(FILLS), size_name,
                                 "", (rng.uniform(r + 1, w - r - 1), rng.uniform(r + 1, h - r - 1)), r), w, h)
        value = _target_value(rng, attribute, obj, backdrop)
        if value is None:
            continue
        scene = BenchScene(w, h, background, texture, backdrop, [obj])
        edited = replace(obj, **{attribute: value})
        if rng.random() < 0.35:
            other = _distractor(rng, scene, _silhouette(obj, w, h) | _silhouette(edited, w, h))
            if other is None:
                continue
            scene = replace(scene, shapes=[obj, other])
        case = TextCase(f"{type_id}{index:011d}", attribute, type_id, type_dir, scene, scene.with_first(edited),
                        style)
        if _text_truth_reads(case):
            return case
    raise RuntimeError(f"no text sample {index} fits a {size}-px picture; use a larger --size")


def _text_truth(case: TextCase) -> dict:
    s, t = case.scene, case.target
    _, masks = s.render()
    _, masks_t = t.render()
    src, tgt = s.shapes[0], t.shapes[0]
    return {
        "kind": "text", "version": VERSION, "prompt_style": case.style,
        "size": [s.width, s.height], "background": {"colour": s.background, "texture": s.texture},
        "edit": {"attribute": case.attribute, "from": getattr(src, case.attribute), "to": getattr(tgt, case.attribute)},
        "source_shape": spec_to_json(src), "target_shape": spec_to_json(tgt),
        "shapes": [spec_to_json(x) for x in s.shapes],
        "mask_source": rle_encode(masks[0]), "mask_target": rle_encode(masks_t[0]),
        "centroid_target": [round(v, 4) for v in centroid(masks_t[0])],
        "others": [rle_encode(x) for x in masks[1:]],
    }


def _text_truth_reads(case: TextCase) -> bool:
    """The source render reads as the source, the target render as the target (every attribute)."""
    data = _text_truth(case)
    for scene in (case.scene, case.target):
        rgb, masks = scene.render()
        truth = Truth(data, rgb, scene.backdrop)
        ink, sil = read_object(rgb, truth, "others")
        spec = scene.shapes[0]
        read = read_attributes(rgb, ink, spec, scene.backdrop)
        if not all(attribute_matches(read, a, getattr(spec, a)) for a in ("colour", "shape", "fill")):
            return False
        if iou(sil, masks[0]) < 0.98:
            return False
    return True


def text_entry(case: TextCase, image_path: str, mask: np.ndarray) -> dict:
    original, editing = text_prompts(case.scene, case.target, case.attribute, case.style)
    src, tgt = case.scene.shapes[0], case.target.shapes[0]
    return {"image_path": image_path, "original_prompt": original, "editing_prompt": editing,
            "editing_instruction": instruction(case.attribute, src, tgt), "editing_type_id": case.type_id,
            "blended_word": f"{getattr(src, case.attribute)} {getattr(tgt, case.attribute)}",
            "mask": rle_encode(mask)}


def write_text_sample(root: Path, case: TextCase) -> dict:
    rgb, masks = case.scene.render()
    target, masks_t = case.target.render()
    rel = f"{case.type_dir}/{case.sample_id}.png"
    (root / PIE_IMAGES / case.type_dir).mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(root / PIE_IMAGES / rel)
    truth_dir = root / PIE_TRUTH / case.sample_id
    truth_dir.mkdir(parents=True, exist_ok=True)
    Image.fromarray(target).save(truth_dir / TARGET_IMAGE)
    Image.fromarray(case.scene.backdrop.astype(np.uint8)).save(truth_dir / BACKGROUND_IMAGE)
    (truth_dir / TRUTH_FILE).write_text(json.dumps(_text_truth(case)))
    return text_entry(case, rel, grow(masks[0] | masks_t[0], 2))


# ---- the benchmark ------------------------------------------------------------------------------

def make_shapesbench(out: Path, count: int = 24, size: int = 64, seed: int = 0, progress=None) -> dict:
    """Writes `count` drag and `count` text samples with pictures `size` px on their long side."""
    out = Path(out)
    if count < 1:
        raise InvalidInput("--count must be at least 1.")
    if size < 32:
        raise InvalidInput(f"--size {size} is too small for a scene: use 32 px or more.")
    if out.exists() and any(out.iterdir()):
        raise InvalidInput(f"{out} exists and is not empty: choose a new folder for the benchmark.")
    out.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        case = drag_case(i, size, seed)
        write_drag_sample(out / "drag" / case.category / f"{i:03d}", case)
        if progress:
            progress()
    text_root = out / "text"
    mapping = {}
    for i in range(count):
        case = text_case(i, size, seed)
        mapping[case.sample_id] = write_text_sample(text_root, case)
        if progress:
            progress()
    (text_root / PIE_MAPPING).write_text(json.dumps(mapping, indent=1))
    manifest = {"benchmark": "ShapesBench", "version": VERSION, "count": count, "size": size, "seed": seed,
                "drag": str(Path("drag")), "text": str(Path("text"))}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest
