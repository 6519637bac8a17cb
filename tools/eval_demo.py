"""How well the demo model draws ShapesWorld: prints JSON.

    python -m tools.eval_demo [--model demo] [--n 120] [--steps 20] [--guidance 5] [--grid out.png]

Held-out captions: single-shape scenes drawn from a seed the training pool did not use, minus any
caption that occurs in the pool (tools/train_demo.py's pool seed and size, read from the model's
training.json). For each caption, one image is generated (DDIM, classifier-free guidance) and read
against the scene's ground truth:
- foreground = pixels far (RGB distance > 40) from the caption's background (two-tone backgrounds
  included: the scene's own background is re-rendered without shapes);
- position: the foreground's centroid lies in the caption's position cell (nearest of the five
  anchor points);
- shape: the foreground is compared by IoU with the silhouettes of every shape class drawn at the
  foreground's centroid with the caption's size and fill; the nearest class must be the caption's
  (classes this fill draws alike, e.g. an outlined ring and an outlined circle, tie within 0.01 IoU);
- colour: the dominant named colour of the foreground inside the region where the shape should be
  (the ground-truth silhouette, grown by 3 px) is the caption's colour.
VAE: PSNR of encode -> decode on held-out scenes (uint8, 0..255).
Ceiling: the same analysis of the held-out scenes themselves after encode -> decode (no generation):
what a perfect UNet could score through this VAE, so a shortfall can be put on the VAE (and the
reading of thin strokes) or on the UNet.
"""
from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from evaluation.reading import (FG_DISTANCE, background_image, classify_shape, foreground,  # noqa: F401
                                grow, ink_mask, nearest_position)
from evaluation.shapesworld import dominant_colour, sample_scene

EVAL_SEED = 424242
VAE_SEED = 515151


def analyse(rgb: np.ndarray, scene) -> dict:
    spec = scene.shapes[0]
    bg = background_image(scene, rgb.shape[0])
    fg = foreground(rgb, bg)
    out = {"caption": scene.caption, "fg_pixels": int(fg.sum())}
    if fg.sum() < 4:
        return dict(out, colour_ok=False, shape_ok=False, position_ok=False, colour=None, shape=None, position=None)
    where = grow(scene.masks[0], 3)
    region = fg & where
    colour = dominant_colour(rgb, region if region.sum() >= 4 else scene.masks[0], bg)
    ys, xs = np.nonzero(fg)
    position = nearest_position((xs.mean(), ys.mean()))
    shape, ious = classify_shape(fg, spec, bg)
    # shapes that this fill draws alike (an outlined ring is an outlined circle) tie: either counts
    return dict(out, colour=colour, shape=shape, position=position, colour_ok=colour == spec.colour,
                shape_ok=ious[spec.shape] >= ious[shape] - 0.01, position_ok=position == spec.position,
                centroid=[round(float(xs.mean()), 1), round(float(ys.mean()), 1)])


def held_out_scenes(n: int, pool_seed: int, pool_size: int, seed: int = EVAL_SEED, anywhere: int = 0) -> list:
    from tools.train_demo import pool_captions

    seen = pool_captions(pool_size, pool_seed, anywhere)
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        s = sample_scene(rng, 64, n_shapes=1)
        if s.caption not in seen:
            out.append(s)
    return out


@torch.no_grad()
def generate(model, captions: list[str], steps: int, guidance: float, seed: int, batch: int = 40) -> np.ndarray:
    from diffusers import DDIMScheduler

    images = []
    size = model.native_size // model.vae_scale
    for i in range(0, len(captions), batch):
        caps = captions[i:i + batch]
        sched = DDIMScheduler.from_config(model.scheduler_config)
        sched.set_timesteps(steps)
        cond = model.encode_text(caps)
        uncond = model.encode_text([""] * len(caps))
        x = torch.randn(len(caps), model.latent_channels, size, size,
                        generator=torch.Generator().manual_seed(seed + i))
        for t in sched.timesteps:
            e_u, e_c = model.unet(torch.cat([x, x]).to(model.dtype), t, torch.cat([uncond.embeds, cond.embeds])).sample.float().chunk(2)
            x = sched.step(e_u + guidance * (e_c - e_u), t, x).prev_sample
        img = model.decode_latents(x)
        images.append(((img + 1) * 127.5).round().clamp(0, 255).byte().permute(0, 2, 3, 1).cpu().numpy())
    return np.concatenate(images)


@torch.no_grad()
def round_trip(model, images: np.ndarray, batch: int = 50) -> np.ndarray:
    """uint8 NHWC -> VAE encode -> decode -> uint8 NHWC."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    rec = torch.cat([model.decode_latents(model.encode_image(x[i:i + batch])) for i in range(0, len(x), batch)])
    return ((rec + 1) * 127.5).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()


def accuracy(rows: list[dict]) -> dict:
    return {k: round(float(np.mean([r[f"{k}_ok"] for r in rows])), 3) for k in ("colour", "shape", "position")}


@torch.no_grad()
def vae_psnr(model, n: int) -> float:
    rng = random.Random(VAE_SEED)
    imgs = np.stack([np.asarray(sample_scene(rng, 64).image) for _ in range(n)])
    rec = round_trip(model, imgs).astype(np.float32)
    mse = ((rec - imgs.astype(np.float32)) ** 2).mean()
    return round(float(10 * np.log10(255.0 ** 2 / mse)), 2)


def main(argv=None) -> None:
    from core.models import ModelSpec, load_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="demo")
    ap.add_argument("--n", type=int, default=120)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--guidance", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--vae-scenes", type=int, default=200)
    ap.add_argument("--grid", type=Path, default=None, help="also save the generated images as a grid PNG")
    ap.add_argument("--details", action="store_true", help="include every sample's analysis")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    model = load_model(ModelSpec(args.model, device="cpu"))
    meta = {}
    if model.root is not None and (Path(model.root) / "training.json").is_file():
        meta = json.loads((Path(model.root) / "training.json").read_text())
    pool = meta.get("pool", {"seed": 1000, "scenes": 16000})
    scenes = held_out_scenes(args.n, pool["seed"], pool["scenes"], anywhere=pool.get("anywhere", 0))
    t1 = time.time()
    imgs = generate(model, [s.caption for s in scenes], args.steps, args.guidance, args.seed)
    gen_s = time.time() - t1
    rows = [analyse(img, s) for img, s in zip(imgs, scenes)]
    rendered = np.stack([np.asarray(s.image) for s in scenes])
    ceiling = accuracy([analyse(img, s) for img, s in zip(round_trip(model, rendered), scenes)])
    by_fill = {}
    for r, s in zip(rows, scenes):
        f = by_fill.setdefault(s.shapes[0].fill, {"n": 0, "colour": 0, "shape": 0, "position": 0})
        f["n"] += 1
        for k in ("colour", "shape", "position"):
            f[k] += int(r[f"{k}_ok"])
    result = {
        "model": args.model, "unet_steps_trained": meta.get("unet", {}).get("steps", meta.get("unet_steps_so_far")),
        "held_out_captions": len(scenes), "sampler": f"DDIM {args.steps} steps, CFG {args.guidance}",
        **{f"{k}_accuracy": v for k, v in accuracy(rows).items()},
        "by_fill": {k: {m: (round(v[m] / v["n"], 3) if m != "n" else v["n"]) for m in v} for k, v in by_fill.items()},
        "ceiling_through_vae": ceiling,
        "vae_psnr_db": vae_psnr(model, args.vae_scenes),
        "seconds_per_image": round(gen_s / len(scenes), 3),
        "seconds": round(time.time() - t0, 1),
    }
    if args.details:
        result["samples"] = rows
    if args.grid:
        cols = 12
        rows_n = (len(imgs) + cols - 1) // cols
        grid = np.full((rows_n * 66, cols * 66, 3), 128, np.uint8)
        for i, im in enumerate(imgs):
            r, c = divmod(i, cols)
            grid[r * 66 + 1:r * 66 + 65, c * 66 + 1:c * 66 + 65] = im
        Image.fromarray(grid).save(args.grid)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
