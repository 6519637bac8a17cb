"""A small drag benchmark on ShapesWorld scenes whose answer is known, until `malleable-eval`'s
ShapesBench lands: one shape anywhere on a plain or two-tone picture (square or not), dragged 5-35 %
of the picture's long side in any direction from a point on its ink (a quarter of the samples with
two handles), with the editable mask the shape's before/after silhouettes grown by 3 px (as
ShapesBench's meta_data.pkl has it).

    python -m tools.drag_reach --method quick-drag --count 24
    python -m tools.drag_reach --method drag --count 24 --set drag_steps=80
    python -m tools.drag_reach --method identity

Per sample and as medians: reach = 1 - |c(result) - c(truth)| / |c(input) - c(truth)|, c the
centroid of the pixels read as the shape's colour (closer to it than to the backdrop under them),
so 1 is the shape where the truth has it and 0 is no move; IoU of that read with the truth's; PSNR
outside the shape's before and after silhouettes against the input. Prints JSON."""
from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from tools.shapesworld import BACKGROUNDS, COLOURS, FILLS, SHAPES, SIZES, ShapeSpec, draw_shape

DRAG_RANGE = (0.05, 0.35)
MASK_GROW = 3


@dataclass
class Sample:
    image: np.ndarray         # HxWx3 uint8, the input
    target: np.ndarray        # the same scene with the shape moved
    backdrop: np.ndarray      # the scene without the shape
    mask: np.ndarray          # HxW float 0/1, editable
    before: np.ndarray        # silhouettes (bool)
    after: np.ndarray
    colour: tuple
    points: list              # [(hx, hy, tx, ty)]
    prompt: str


def _render(w, h, bg, two_tone, spec=None):
    side = max(w, h)
    arr = np.empty((side, side, 3), np.float32)
    arr[:] = bg
    if two_tone:
        arr[h // 2:] = bg * 0.8 + 20
    img = Image.fromarray(arr.round().clip(0, 255).astype(np.uint8))
    sil = np.zeros((side, side), bool)
    if spec is not None:
        sil = draw_shape(img, spec, bg)
    return np.asarray(img)[:h, :w].copy(), sil[:h, :w]


def grow(mask: np.ndarray, px: int) -> np.ndarray:
    t = torch.from_numpy(mask.astype(np.float32))[None, None]
    return (torch.nn.functional.max_pool2d(t, 2 * px + 1, 1, px)[0, 0] > 0).numpy()


def make_sample(index: int, size: int, seed: int) -> Sample:
    rng = random.Random(f"drag-reach-{seed}-{index}")
    while True:
        w, h = (size, size) if index % 3 else (size, round(size * rng.choice((0.625, 0.75))))
        if index % 6 == 3:
            w, h = h, w
        background = rng.choice(BACKGROUNDS)
        bg = np.array(COLOURS[background], np.float32)
        two_tone = rng.random() < 0.3
        size_name = rng.choice(list(SIZES))
        r = SIZES[size_name] * min(w, h) / 2 * rng.uniform(0.8, 1.1)
        length = rng.uniform(*DRAG_RANGE) * max(w, h)
        angle = rng.uniform(0, 2 * math.pi)
        dx, dy = round(length * math.cos(angle)), round(length * math.sin(angle))
        lo_x, hi_x = max(r + 1, r + 1 - dx), min(w - r - 1, w - r - 1 - dx)
        lo_y, hi_y = max(r + 1, r + 1 - dy), min(h - r - 1, h - r - 1 - dy)
        if lo_x > hi_x or lo_y > hi_y or math.hypot(dx, dy) < 2:
            continue
        colour = rng.choice([c for c in COLOURS if c != background])
        shape, fill = rng.choice(SHAPES), rng.choice(FILLS)
        cx, cy = rng.uniform(lo_x, hi_x), rng.uniform(lo_y, hi_y)
        spec = ShapeSpec(shape, colour, fill, size_name, "", (cx, cy), r)
        moved = ShapeSpec(shape, colour, fill, size_name, "", (cx + dx, cy + dy), r)
        image, before = _render(w, h, bg, two_tone, spec)
        target, after = _render(w, h, bg, two_tone, moved)
        backdrop, _ = _render(w, h, bg, two_tone)
        ink = np.abs(image.astype(np.int16) - backdrop).sum(-1) > 0
        ys, xs = np.nonzero(ink & before)
        n = 2 if index % 4 == 3 else 1
        if len(xs) < n:
            continue
        picks = [rng.randrange(len(xs)) for _ in range(n)]
        points = [(int(xs[k]), int(ys[k]), int(xs[k]) + dx, int(ys[k]) + dy) for k in picks]
        if not all(0 <= tx < w and 0 <= ty < h for _, _, tx, ty in points):
            continue
        fill_word = "" if fill == "filled" else f"{fill} "
        prompt = f"a {size_name} {fill_word}{colour} {shape}, on a {background} background"
        mask = grow(before | after, MASK_GROW).astype(np.float32)
        return Sample(image, target, backdrop, mask, before, after, COLOURS[colour], points, prompt)


def read_shape(rgb: np.ndarray, s: Sample) -> np.ndarray:
    """Pixels closer to the shape's colour than to the backdrop under them (bool HxW)."""
    x = rgb.astype(np.float32)
    to_ink = np.abs(x - np.array(s.colour, np.float32)).sum(-1)
    to_back = np.abs(x - s.backdrop.astype(np.float32)).sum(-1)
    return to_ink < to_back


def centroid(m: np.ndarray):
    ys, xs = np.nonzero(m)
    return (float(xs.mean()), float(ys.mean())) if len(xs) else None


def psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float | None:
    d = (a.astype(np.float64) - b.astype(np.float64))[where]
    mse = float((d ** 2).mean()) if d.size else 0.0
    return None if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def score(result: np.ndarray, s: Sample) -> dict:
    c_in, c_truth = centroid(read_shape(s.image, s)), centroid(read_shape(s.target, s))
    got = read_shape(result, s)
    c_out = centroid(got)
    initial = math.dist(c_in, c_truth)
    final = math.dist(c_out, c_truth) if c_out is not None else initial
    truth = read_shape(s.target, s)
    iou = float((got & truth).sum() / max(1, (got | truth).sum()))
    outside = ~(s.before | s.after)
    return dict(reach=1.0 - final / initial, initial_px=initial, final_px=final, iou=iou,
                psnr_outside=psnr(result, s.image, outside))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", default="quick-drag", help="A drag method, or 'identity'.")
    ap.add_argument("--count", type=int, default=24)
    ap.add_argument("--size", type=int, default=64, help="Long side of the pictures in pixels.")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-mask", action="store_true", help="Run without the editable mask.")
    ap.add_argument("--no-prompt", action="store_true", help="Run with an empty prompt.")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="A method parameter.")
    ap.add_argument("--save", help="Write input | result | truth strips to this folder.")
    args = ap.parse_args(argv)

    from core.engine import EditRequest, Engine
    from core.models import ModelSpec

    engine = Engine()
    extra = dict(kv.split("=", 1) for kv in args.set)
    rows = []
    for k in range(args.count):
        s = make_sample(k, args.size, args.seed)
        started = time.perf_counter()
        passes = {}
        if args.method == "identity":
            result = s.image
        else:
            params = dict(points=[list(p) for p in s.points], prompt="" if args.no_prompt else s.prompt, **extra)
            res = engine.run(EditRequest(args.method, s.image, params, mask=None if args.no_mask else s.mask,
                                         model=ModelSpec("demo", device="cpu")))
            result = np.asarray(res.image.convert("RGB"))
            passes = dict(res.passes)
        row = dict(sample=k, size=list(s.image.shape[1::-1]), points=s.points, **score(result, s),
                   seconds=round(time.perf_counter() - started, 2), unet=passes.get("unet", 0),
                   unet_grad=passes.get("unet_grad", 0))
        rows.append(row)
        print(f"{k}: reach {row['reach']:.2f} iou {row['iou']:.2f} psnr {row['psnr_outside']}", file=sys.stderr)
        if args.save:
            from pathlib import Path

            Path(args.save).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.concatenate([s.image, result, s.target], axis=1)).save(f"{args.save}/{k:03d}.png")
    finite = [r["psnr_outside"] for r in rows if r["psnr_outside"] is not None]
    summary = dict(method=args.method, count=len(rows), size=args.size, mask=not args.no_mask, params=extra,
                   median_reach=float(np.median([r["reach"] for r in rows])),
                   mean_reach=float(np.mean([r["reach"] for r in rows])),
                   median_iou=float(np.median([r["iou"] for r in rows])),
                   median_psnr_outside=float(np.median(finite)) if finite else None,
                   identical_outside=len(rows) - len(finite),
                   median_seconds=float(np.median([r["seconds"] for r in rows])))
    report = dict(summary=summary, samples=rows)
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
